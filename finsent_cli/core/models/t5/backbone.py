"""What the two T5 fine-tuning kinds (``t5_cls``, ``t5_text2text``) share: finding and loading the backbone
T5 and its tokenizer, the portable metadata, and the build / save / load skeleton of a model kind.

The backbone is a ``finsent pretrain`` run folder (its ``best/``, else ``last/``), a finsent T5 model
folder, or any Hugging Face T5 folder (``config.json`` with ``model_type: t5``, weights, tokenizer);
Raffel et al. 2020 (arXiv 1910.10683) for the model. ``init: random`` keeps the backbone's config and
tokenizer but starts from a fresh T5 initialisation, the baseline that shows what pretraining buys.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from finsent_cli.core.io import atomic_write_json
from finsent_cli.core.models.hub import ALIASES
from finsent_cli.core.models.registry import quiet_transformers
from finsent_cli.core.runs import META_FILE, resolve_model_folder
from finsent_cli.errors import FinsentError
from finsent_cli.labels import LABELS

from .checkpoint import T5LoadError, load_t5
from .model import FinT5ForConditionalGeneration

RUN_SUBFOLDERS = ("best", "last")
"""The model folders inside a run folder; a backbone inside one is named after the run."""


@dataclass
class Backbone:
    """A loaded backbone.

    Attributes:
        t5: the encoder-decoder in train mode (pretrained weights, or fresh ones with ``init: random``).
        tokenizer: its tokenizer (``AutoTokenizer`` of the folder).
        folder: the model folder it came from.
    """

    t5: FinT5ForConditionalGeneration
    tokenizer: Any
    folder: Path


def _not_t5(spec: str, reason: str) -> FinsentError:
    return FinsentError(
        f"model.backbone: {spec} is not a T5 folder ({reason}); give a finsent pretrain run folder "
        "(finsent pretrain writes one), a finsent T5 folder or a Hugging Face T5 folder"
    )


def _model_folder(spec: str) -> Path:
    """The model folder that the recipe's ``backbone`` names (a run folder's ``best/``, else ``last/``)."""
    if spec in ALIASES:  # `minilm`, `mpnet`: real encoders, not T5 ones (and mpnet is 400 MB to extract)
        raise _not_t5(spec, f"the offline encoder alias '{spec}'")
    path = Path(spec).expanduser()
    if not path.exists():
        raise _not_t5(spec, "not found")
    if not path.is_dir():
        raise _not_t5(spec, "a file, not a folder")
    try:
        return resolve_model_folder(path)
    except FinsentError:
        raise _not_t5(spec, "no config.json, and no best/ or last/ model folder inside") from None


def _reason(exc: Exception, folder: Path) -> str:
    """The first line of a load error without the folder path that the recipe key already names."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    for lead in (f"{folder}/", f"{folder}: ", f"{folder} "):
        text = text.removeprefix(lead)
    return text


def t5_tokenizer(folder: Path, key: str, spec: str | Path | None = None) -> Any:
    """A T5 tokenizer (EOS and pad tokens) from a folder, every failure one error naming the recipe key.

    Args:
        folder: the folder holding the tokenizer.
        key: the recipe key that named it (``model.backbone``, ``data.tokenizer``).
        spec: the folder as the recipe names it (default: ``folder``).

    Returns:
        A ``transformers`` tokenizer.

    Raises:
        FinsentError: no loadable tokenizer (a damaged ``tokenizer.json`` included: the tokenizers library
            raises a bare ``Exception`` then), or no EOS or pad token (T5 inputs and targets end with EOS).
    """
    from transformers import AutoTokenizer

    quiet_transformers()
    spec = spec if spec is not None else folder
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except Exception as exc:  # noqa: BLE001 - any failure of a user's folder is one line, never a traceback
        raise FinsentError(f"{key}: cannot load a tokenizer from {spec}: {_reason(exc, folder)}") from None
    if tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:
        raise FinsentError(f"{key}: the tokenizer of {spec} has no EOS or pad token (a T5 tokenizer has both)")
    return tokenizer


def load_tokenizer(folder: Path, spec: str, vocab_size: int) -> Any:
    """The backbone folder's tokenizer, checked against the model.

    Args:
        folder: the model folder.
        spec: the folder as the recipe names it (for messages).
        vocab_size: rows of the model's embedding.

    Returns:
        A ``transformers`` tokenizer.

    Raises:
        FinsentError: naming ``model.backbone``: see :func:`t5_tokenizer`; or more tokens than the
            embedding has rows.
    """
    tokenizer = t5_tokenizer(folder, "model.backbone", spec)
    if len(tokenizer) > vocab_size:
        raise FinsentError(
            f"model.backbone: the tokenizer has {len(tokenizer)} tokens but the model's vocabulary is {vocab_size} "
            f"({spec}: were the tokenizer and the model saved together?)"
        )
    return tokenizer


def load_backbone(spec: str, init: str = "pretrained", dropout: float | None = None) -> Backbone:
    """Load the backbone named by a recipe's ``model.backbone``.

    Args:
        spec: a pretrain run folder, a finsent T5 folder or a Hugging Face T5 folder.
        init: ``"pretrained"`` (its weights) or ``"random"`` (its config, fresh T5 initialisation).
        dropout: the model's ``dropout_rate`` from now on; None keeps the config's.

    Returns:
        The backbone, in train mode.

    Raises:
        FinsentError: naming ``model.backbone`` (not a T5 folder, tokenizer problems) or ``model.init``.
    """
    if init not in ("pretrained", "random"):
        raise FinsentError(f"model.init: {init!r} is not pretrained or random")
    folder = _model_folder(spec)
    try:
        t5 = load_t5(folder)
    except T5LoadError as exc:
        raise _not_t5(spec, _reason(exc, folder)) from None
    tokenizer = load_tokenizer(folder, spec, t5.config.vocab_size)
    cfg = t5.config if dropout is None else t5.config.replace(dropout_rate=dropout)
    if init == "random":
        t5 = FinT5ForConditionalGeneration(cfg)
    elif cfg != t5.config:
        # dropout rates are fixed when the modules are built: rebuild with the new rate, keep the weights
        rebuilt = FinT5ForConditionalGeneration(cfg)
        rebuilt.load_state_dict(t5.state_dict())
        t5 = rebuilt
    return Backbone(t5.train(), tokenizer, folder)


def backbone_name(spec: str) -> str:
    """How ``finsent.json`` names the backbone: the folder's name, or the run's name for a run folder or
    its ``best/`` / ``last/`` (never a path of this machine, so a model folder can be copied anywhere)."""
    path = Path(spec).expanduser()
    if path.name in ("", ".", ".."):
        path = path.resolve()
    return path.parent.resolve().name if path.name in RUN_SUBFOLDERS else path.name


class T5FinetuneKind:
    """The build / meta / save / load half of the T5 kinds; each kind adds ``name``, :meth:`wrap`,
    :meth:`head_meta`, :meth:`load_model`, and its features, collate, loss and class logits.

    Model folders hold the weights (``model.save(folder)``), ``config.json`` with ``id2label``, the
    tokenizer and ``finsent.json``; they load from the folder alone, without the backbone.
    """

    name: str
    trainable = True

    # ------------------------------------------------------------------ what a kind adds
    def wrap(self, backbone: Backbone, cfg: Any) -> torch.nn.Module:
        """The kind's network around a loaded backbone."""
        raise NotImplementedError

    def head_meta(self, cfg: Any) -> dict[str, Any]:
        """The kind's own entries of ``finsent.json``."""
        raise NotImplementedError

    def load_model(self, folder: Path, meta: dict[str, Any], tokenizer: Any) -> torch.nn.Module:
        """The kind's network from a model folder."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared
    def build(self, cfg: Any, *, resume: Path | None = None) -> tuple[torch.nn.Module, Any]:
        """``(model in train mode, tokenizer)`` from the backbone, or from a checkpoint folder when resuming
        (which needs no backbone: the checkpoint is a complete model folder).

        Raises:
            FinsentError: naming the recipe key (``model.backbone``, ``model.init``, ...).
        """
        if resume is not None:
            return self.load(resume, self.meta(cfg), trainable=True)
        backbone = load_backbone(cfg.backbone, cfg.init, cfg.backbone_dropout)
        return self.wrap(backbone, cfg).train(), backbone.tokenizer

    def meta(self, cfg: Any) -> dict[str, Any]:
        """``finsent.json`` of a model built from ``cfg``: names, no paths."""
        common = {
            "kind": self.name, "task": "classification", "adapter": "none", "base_model": backbone_name(cfg.backbone),
            "init": cfg.init, "max_length": cfg.max_length, "backbone_dropout": cfg.backbone_dropout,
            "labels": list(LABELS),
        }  # fmt: skip
        return {**common, **self.head_meta(cfg)}

    def save(self, model: torch.nn.Module, tokenizer: Any, folder: Path, meta: dict[str, Any]) -> None:
        """Weights and ``config.json`` (the network's ``save``), the tokenizer and ``finsent.json``."""
        model.save(folder)
        tokenizer.save_pretrained(str(folder))
        atomic_write_json(Path(folder) / META_FILE, meta)

    def load(
        self, folder: Path, meta: dict[str, Any], *, trainable: bool = False, full_precision: bool = False
    ) -> tuple[torch.nn.Module, Any]:
        """``(model, tokenizer)`` from a model folder this kind saved; train mode when ``trainable``.

        Raises:
            T5LoadError (a ValueError): weights missing or not fitting ``config.json``.
            OSError: no loadable tokenizer in the folder (the inference loader turns both into one line).
        """
        from transformers import AutoTokenizer

        quiet_transformers()
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        return self.load_model(Path(folder), meta, tokenizer).train(trainable), tokenizer

    def claims(self, config: dict[str, Any], meta: dict[str, Any]) -> bool:
        """Never: T5 kinds came after folders recorded their kind."""
        return False
