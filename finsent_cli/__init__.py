"""finsent: financial-news sentiment models from raw text to an explained prediction."""

__version__ = "0.1.0"
