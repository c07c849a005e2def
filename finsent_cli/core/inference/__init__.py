"""Running trained models: the :class:`~finsent_cli.core.inference.classifier.Classifier` and the one loader."""
