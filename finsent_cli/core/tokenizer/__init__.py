"""SentencePiece tokenizers with T5's layout, saved for ``transformers.AutoTokenizer``."""

from finsent_cli.core.tokenizer.train import TokenizerResult, build_hf_tokenizer, train_tokenizer

__all__ = ["TokenizerResult", "build_hf_tokenizer", "train_tokenizer"]
