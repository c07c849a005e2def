"""Sentiment heads on finsent's T5: an encoder classifier and the text-to-text verbaliser.

Two ways to make a (pretrained) T5 a three-way classifier:

- :class:`T5EncoderClassifier` keeps the encoder only (the decoder is dropped), pools its output and adds a
  linear layer, as ``transformers.T5ForSequenceClassification`` does with the encoder alone.
- :class:`T5TextToText` keeps the whole encoder-decoder and casts classification as text-to-text, as in
  Raffel et al. 2020 ("Exploring the Limits of Transfer Learning with a Unified Text-to-Text Transformer",
  arXiv 1910.10683, section 2.4): the input is ``prefix + text`` and the target is the label word
  (``negative`` / ``neutral`` / ``positive``). Instead of generating freely and parsing the output, it
  scores the three label words (constrained decoding with the slim cache, ``score_targets``), so every
  input gets exactly one of the three classes and calibrated-looking scores.

Both save Hugging Face folders: the encoder classifier as a ``T5EncoderModel`` folder whose extra
``classifier.*`` tensors transformers ignores, the text-to-text model as a plain T5 folder
(``save_t5``). Both add ``id2label`` / ``label2id`` to ``config.json`` so any reader sees the label order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

from finsent_cli.core.io import atomic_write_text
from finsent_cli.labels import ID2LABEL, LABEL2ID, LABELS

from .checkpoint import T5LoadError, read_t5_config, save_t5, write_t5_folder
from .config import FinT5Config
from .model import FinT5ForConditionalGeneration, T5Stack

POOLINGS = ("mean", "first")
WEIGHTS_FILE = "model.safetensors"


def _with_labels(config: dict[str, Any]) -> dict[str, Any]:
    """``config.json`` contents with finsent's label order added."""
    return {**config, "id2label": {str(i): label for i, label in ID2LABEL.items()}, "label2id": dict(LABEL2ID)}


class T5EncoderClassifier(nn.Module):
    """The T5 encoder, pooled, plus dropout and a linear layer: ``(B, S)`` ids -> ``(B, 3)`` logits.

    Args:
        cfg: the T5 config (its ``dropout_rate`` is the encoder's dropout).
        pooling: ``"mean"`` (masked mean over real tokens) or ``"first"`` (the first token's state; T5 has
            no [CLS] token, so mean is the default).
        dropout: dropout before the linear layer.
        num_labels: output classes.
        shared: an existing token embedding to use (``from_t5``); a new one when None.
        encoder: an existing encoder stack to use (``from_t5``); a new one when None.

    Raises:
        ValueError: an unknown pooling.
    """

    def __init__(
        self,
        cfg: FinT5Config,
        pooling: str = "mean",
        dropout: float = 0.1,
        num_labels: int = len(LABELS),
        *,
        shared: nn.Embedding | None = None,
        encoder: T5Stack | None = None,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
        self.config = cfg
        self.pooling = pooling
        self.shared = shared if shared is not None else nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.encoder = encoder if encoder is not None else T5Stack(cfg, is_decoder=False)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(cfg.d_model, num_labels)
        # after transformers' T5ClassificationHead: std d_model^-0.5 keeps the initial logits O(1) on the
        # RMS-normalised encoder output
        nn.init.normal_(self.classifier.weight, std=cfg.initializer_factor * cfg.d_model**-0.5)
        nn.init.zeros_(self.classifier.bias)

    @classmethod
    def from_t5(
        cls, t5: FinT5ForConditionalGeneration, pooling: str = "mean", dropout: float = 0.1
    ) -> T5EncoderClassifier:
        """The classifier over ``t5``'s embedding and encoder (the same modules, not copies); the decoder
        and LM head are left behind.

        Args:
            t5: the encoder-decoder (pretrained or freshly initialised).
            pooling: see the class.
            dropout: see the class.

        Returns:
            The classifier, in ``t5``'s train/eval mode.
        """
        return cls(t5.config, pooling, dropout, shared=t5.shared, encoder=t5.encoder).train(t5.training)

    @classmethod
    def random(cls, cfg: FinT5Config, pooling: str = "mean", dropout: float = 0.1) -> T5EncoderClassifier:
        """A freshly initialised classifier with T5's initialisation (built through the full model, so the
        encoder starts exactly as a new T5's would)."""
        return cls.from_t5(FinT5ForConditionalGeneration(cfg), pooling, dropout)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Class logits.

        Args:
            input_ids: (B, S) token ids, right-padded.
            attention_mask: (B, S) 1 for tokens, 0 for padding (None: no padding).

        Returns:
            (B, num_labels) logits.
        """
        h = self.encoder(self.shared(input_ids), attention_mask)  # (B, S, d_model)
        if self.pooling == "first":
            pooled = h[:, 0]  # (B, d_model)
        elif attention_mask is None:
            pooled = h.mean(dim=1)  # (B, d_model)
        else:
            m = attention_mask.to(h.dtype)[..., None]  # (B, S, 1)
            pooled = (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)  # (B, d_model)
        return self.classifier(self.dropout(pooled))

    def save(self, folder: str | Path) -> Path:
        """Write a ``T5EncoderModel`` folder: ``config.json`` (+ labels and pooling) and ``model.safetensors``
        (Hugging Face T5 key names plus ``classifier.weight`` / ``classifier.bias``), each atomically.

        Returns:
            The folder.
        """
        config = {
            **self.config.to_hf_dict(), "architectures": ["T5EncoderModel"], "dtype": str(self.shared.weight.dtype).removeprefix("torch."),
            "finsent_pooling": self.pooling, "finsent_dropout": self.dropout.p,
        }  # fmt: skip
        return write_t5_folder(folder, _with_labels(config), self.state_dict())

    @classmethod
    def load(cls, folder: str | Path) -> T5EncoderClassifier:
        """Read a folder written by :meth:`save`.

        Returns:
            The classifier in eval mode (float32, CPU).

        Raises:
            T5LoadError (a ValueError): no or a non-T5 ``config.json``, no weights, or weights that do not
                fit the config.
        """
        path = Path(folder)
        data = read_t5_config(path)
        try:
            cfg = FinT5Config.from_hf_dict(data)
        except ValueError as err:
            raise T5LoadError(f"{path / 'config.json'}: {err}") from err
        if not (path / WEIGHTS_FILE).is_file():
            raise T5LoadError(f"{path}: {WEIGHTS_FILE} is missing")
        model = cls(cfg, data.get("finsent_pooling", "mean"), float(data.get("finsent_dropout", 0.1)))
        try:
            model.load_state_dict(load_file(str(path / WEIGHTS_FILE)))
        except RuntimeError as err:  # missing, unexpected or misshapen keys
            raise T5LoadError(f"{path}: weights do not fit config.json: {str(err).splitlines()[0]}") from err
        return model.float().eval()


class T5TextToText(nn.Module):
    """A T5 that classifies by writing the label word: ``prefix + text -> "positive" </s>``.

    The model prepends the prefix itself, so callers pass token ids of the raw text (as for any model
    kind) and the tokenizer never sees the prefix.

    Args:
        t5: the encoder-decoder (``self.t5``; saving it is ``save_t5``).
        prefix_ids: token ids of the task prefix (``sentiment:``), without EOS; may be empty.
        label_ids: per class, in label order, the label word's token ids followed by EOS.

    Raises:
        ValueError: not one non-empty target per class.
    """

    def __init__(self, t5: FinT5ForConditionalGeneration, prefix_ids: list[int], label_ids: list[list[int]]) -> None:
        super().__init__()
        if len(label_ids) != len(LABELS) or any(not ids for ids in label_ids):
            raise ValueError(f"need one non-empty target per label ({', '.join(LABELS)}), got {label_ids}")
        self.t5 = t5
        # a buffer so that .to(device) moves it; not persistent: the state dict stays exactly the T5's
        self.register_buffer("prefix_ids", torch.tensor(prefix_ids, dtype=torch.long), persistent=False)
        self.label_ids = [list(ids) for ids in label_ids]

    def with_prefix(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Prepend the prefix to every row of a right-padded batch.

        Args:
            input_ids: (B, S) text ids.
            attention_mask: (B, S) 1 for tokens, 0 for padding.

        Returns:
            (B, P + S) ids and mask; the padding stays on the right.
        """
        B = input_ids.shape[0]
        prefix = self.prefix_ids.to(input_ids.device)[None].expand(B, -1)  # (B, P)
        ids = torch.cat([prefix, input_ids], dim=1)  # (B, P + S)
        mask = torch.cat([torch.ones_like(prefix, dtype=attention_mask.dtype), attention_mask], dim=1)  # (B, P + S)
        return ids, mask

    def forward(self, input_ids: Tensor, attention_mask: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
        """Teacher-forced loss of the label words.

        Each example's loss is the summed token cross-entropy of its target, -log p(label word + EOS | input):
        the very quantity :meth:`class_logits` compares across labels, so training and scoring agree.

        Args:
            input_ids: (B, S) text ids (no prefix).
            attention_mask: (B, S) padding mask.
            labels: (B, T) target ids (label word + EOS), -100 where padded.
            reduction: ``"mean"`` over examples or ``"none"``.

        Returns:
            A scalar, or (B,) per-example losses.

        Raises:
            ValueError: an unknown reduction.
        """
        if reduction not in ("mean", "none"):
            raise ValueError(f"unknown reduction {reduction!r}; use 'mean' or 'none'")
        ids, mask = self.with_prefix(input_ids, attention_mask)
        # decoder inputs given, no labels: the T5's own token-mean loss would be computed and thrown away
        logits = self.t5(ids, mask, decoder_input_ids=self.t5.shift_right(labels)).logits  # (B, T, V)
        # cross_entropy wants the classes in dim 1: (B, V, T) logits against (B, T) targets
        tok = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=-100, reduction="none")  # (B, T)
        per_example = tok.sum(dim=1)  # (B,)
        return per_example.mean() if reduction == "mean" else per_example

    def class_logits(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Log-probability of each label word (+ EOS) after ``prefix + text``: constrained scoring, not
        free generation. No gradients (``score_targets`` runs under ``no_grad``).

        Args:
            input_ids: (B, S) text ids (no prefix).
            attention_mask: (B, S) padding mask.

        Returns:
            (B, 3) float32 log-probabilities, columns in label order; softmax renormalises them over the labels.
        """
        ids, mask = self.with_prefix(input_ids, attention_mask)
        # non-square W_K: no note per batch; an ONNX export traces the full cache (the slim one is looked up
        # by the weights' memory address, which torch.export cannot follow; both compute the same scores)
        # scoring a few label words is where slim always won (1.08x-1.54x, docs/benchmarks.md "Slim or
        # full"), and a fixed cache keeps --backend int8's probe a fixed answer
        slim = self.t5.config.slim_self_attention_ok and not torch.compiler.is_exporting()
        cache = "slim" if slim else "full"
        return self.t5.score_targets(ids, mask, self.label_ids, cache=cache)

    def save(self, folder: str | Path) -> Path:
        """Write the T5 folder (``save_t5``) with ``id2label`` / ``label2id`` added to ``config.json``.

        Returns:
            The folder.
        """
        out = save_t5(self.t5, folder)
        atomic_write_text(out / "config.json", json.dumps(_with_labels(read_t5_config(out)), indent=2, sort_keys=True) + "\n")
        return out
