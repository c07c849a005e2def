"""Parameter-efficient fine-tuning adapters (peft): LoRA today, QLoRA to come."""
