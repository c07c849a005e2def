"""Evaluation of fine-tuned classifiers: metrics, calibration, confusion matrices, train/test overlap."""
