"""The generic training engine: one accelerate loop, resumable state, checkpoints, schedules, data order."""
