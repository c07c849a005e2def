"""Explanations of single predictions (word occlusion) with faithfulness scores."""
