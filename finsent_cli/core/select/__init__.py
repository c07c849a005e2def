"""Active learning: score unlabelled texts and pick a diverse batch worth labelling (``finsent select``)."""
