"""Kind ``t5_text2text``: finsent's (pretrained) T5 fine-tuned to write the label word, text-to-text.

A recipe writes ``kind: t5`` with ``head: text2text`` (or ``kind: t5_text2text``). After Raffel et al.
2020 (arXiv 1910.10683, section 2.4): the encoder reads ``prefix + text`` ("sentiment: Profit rose ..."),
the decoder is trained with teacher forcing to write ``negative``, ``neutral`` or ``positive`` followed by
EOS, and classification scores the three label words (``FinT5ForConditionalGeneration.score_targets``
with the slim decoder cache) instead of generating freely. Token ids fed to the model never hold the
prefix: the network prepends it (``core.models.t5.heads.T5TextToText``), so eval, predict and explain
tokenise raw text as for any kind. The model folder is a plain T5 folder that
``transformers.T5ForConditionalGeneration`` loads; ``finsent.json`` keeps the prefix and label words.

``max_length`` in the recipe counts every encoder token, the prefix included; a saved folder's
``finsent.json`` records it as ``max_input_length`` and, as ``max_length``, the text's share of it (what
inference truncates texts to), so that predict and eval cut texts exactly where training did.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from finsent_cli.config.models import TEXT2TEXT_PREFIX, T5Text2TextCfg
from finsent_cli.core.data.collate import pad_collate
from finsent_cli.core.data.examples import tokenize_rows
from finsent_cli.core.models.t5 import load_t5
from finsent_cli.core.models.t5.backbone import Backbone, T5FinetuneKind
from finsent_cli.core.models.t5.heads import T5TextToText
from finsent_cli.errors import FinsentError
from finsent_cli.labels import LABELS

MIN_TEXT_TOKENS = 2  # a word and EOS


def verbalizer(
    tokenizer: Any, prefix: str, label_words: list[str] | tuple[str, ...] = LABELS
) -> tuple[list[int], list[list[int]]]:
    """Token ids of the prefix and of each label word's target.

    Args:
        tokenizer: the model's tokenizer.
        prefix: the task prefix (tokenised without EOS).
        label_words: one word per label, in label order.

    Returns:
        ``(prefix_ids, label_ids)``; each target is the word's ids followed by EOS.

    Raises:
        FinsentError: two label words tokenise alike, so scoring could not tell them apart.
    """
    prefix_ids = list(tokenizer(prefix, add_special_tokens=False)["input_ids"]) if prefix else []
    words = tokenizer(list(label_words), add_special_tokens=False)["input_ids"]
    label_ids = [list(ids) + [tokenizer.eos_token_id] for ids in words]
    if len({tuple(ids) for ids in label_ids}) != len(label_ids):
        raise FinsentError(f"model.backbone: its tokenizer cannot tell the label words {', '.join(label_words)} apart")
    return prefix_ids, label_ids


def text_budget(max_length: int, prefix_ids: list[int]) -> int:
    """Tokens left to the text (EOS included) once the prefix is in.

    Raises:
        FinsentError: naming ``model.max_length`` when the prefix leaves too little room.
    """
    budget = max_length - len(prefix_ids)
    if budget < MIN_TEXT_TOKENS:
        raise FinsentError(
            f"model.max_length: {max_length} leaves no room for the text after the {len(prefix_ids)}-token prefix"
        )
    return budget


class T5Text2TextKind(T5FinetuneKind):
    """See the module docstring."""

    name = "t5_text2text"
    pair_inputs = False  # the prompt holds the text alone

    def wrap(self, backbone: Backbone, cfg: T5Text2TextCfg) -> torch.nn.Module:
        prefix_ids, label_ids = verbalizer(backbone.tokenizer, cfg.prefix)
        text_budget(cfg.max_length, prefix_ids)  # fail at build, not at the first batch
        return T5TextToText(backbone.t5, prefix_ids, label_ids)

    def head_meta(self, cfg: T5Text2TextCfg) -> dict[str, Any]:
        return {"prefix": cfg.prefix, "label_words": list(LABELS), "max_input_length": cfg.max_length}

    def load_model(self, folder: Path, meta: dict[str, Any], tokenizer: Any) -> torch.nn.Module:
        prefix_ids, label_ids = verbalizer(
            tokenizer, meta.get("prefix", TEXT2TEXT_PREFIX), meta.get("label_words", LABELS)
        )
        return T5TextToText(load_t5(folder), prefix_ids, label_ids)

    def save(self, model: torch.nn.Module, tokenizer: Any, folder: Path, meta: dict[str, Any]) -> None:
        budget = text_budget(int(meta.get("max_input_length", meta["max_length"])), model.prefix_ids.tolist())
        super().save(model, tokenizer, folder, {**meta, "max_length": budget})

    # ------------------------------------------------------------------ training data
    def features(self, tokenizer: Any, rows: list[dict[str, Any]], cfg: T5Text2TextCfg) -> list[dict[str, Any]]:
        """Text ids cut to the text's share of ``max_length``, the class id, and the label word's target ids."""
        prefix_ids, label_ids = verbalizer(tokenizer, cfg.prefix)
        feats = tokenize_rows(tokenizer, rows, text_budget(cfg.max_length, prefix_ids))
        return [{**f, "target_ids": label_ids[f["label"]]} for f in feats]

    def collate(self, features: list[dict[str, Any]], tokenizer: Any) -> dict[str, torch.Tensor]:
        """``input_ids`` / ``attention_mask`` (B, S) padded with the pad id, ``labels`` (B,) class ids and
        ``target_ids`` (B, T) padded with -100 (ignored by the loss)."""
        batch = pad_collate(features, tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        batch["target_ids"] = pad_collate([{"input_ids": f["target_ids"]} for f in features], -100)["input_ids"]
        return batch

    def loss(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor], weights: torch.Tensor | None
    ) -> torch.Tensor:
        """Mean sequence cross-entropy of the label words; with class weights, the weighted mean
        (sum of w[y] * loss / sum of w[y], as ``torch.nn.functional.cross_entropy`` weighs classes)."""
        # called through the module (not .forward of an attribute) so that a DDP wrapper syncs gradients
        per_example = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            labels=batch["target_ids"],
            reduction="none",
        )
        if weights is None:
            return per_example.mean()
        w = weights.to(per_example.device)[batch["labels"]]  # (B,)
        return (w * per_example).sum() / w.sum()

    def class_logits(
        self, model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """(B, 3) log-probabilities of the three label words."""
        return model.class_logits(input_ids, attention_mask)


KIND = T5Text2TextKind()
