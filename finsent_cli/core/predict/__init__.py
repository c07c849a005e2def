"""Batch prediction: input readers, output writers and the model resolution order."""
