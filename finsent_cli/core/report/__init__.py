"""`finsent report`: pictures of a run (training curves, confusion matrix, reliability diagram, per-class
scores, a map of the validation sentences) as PNG files and one self-contained HTML page.

``run.run_report`` is the command's plain-Python twin; ``figures`` draws (data in, Figure out) and ``page``
writes the HTML. Nothing here is imported by ``finsent --help``: matplotlib and scikit-learn load on use.
"""
