"""The one place where an adapter kind plugs in: how much of a classifier trains, and what its folder holds.

An adapter kind decides how the base classifier of kind ``hf_encoder`` is built (full precision or
quantised, with or without a fusion module between encoder and head), what trains (everything, low-rank
updates, or a module on a frozen encoder), what a model folder holds, and how it loads back. Each kind is
one module exposing ``ADAPTER``; :data:`ADAPTERS` maps the names that recipes (``model.adapter.kind``) and
``finsent.json`` (``"adapter"``) use to those modules, imported only when asked for. The model kind calls
:func:`get_adapter` and never branches on the adapter.

Adding an adapter kind: one module exposing ``ADAPTER``, its schema in ``finsent_cli.config.models``
(``ADAPTER_SCHEMAS``), a line in :data:`ADAPTERS`, and a recipe.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch

from finsent_cli.errors import FinsentError

ADAPTERS: dict[str, str] = {
    "none": "finsent_cli.core.models.hf_encoder.full",
    "lora": "finsent_cli.core.peft.lora",
    "qlora": "finsent_cli.core.peft.qlora",
    "mamba": "finsent_cli.core.models.mamba.fusion",
    "gamba": "finsent_cli.core.models.mamba.gamba",
}
"""Adapter kind -> module holding its ``ADAPTER``."""

BaseBuilder = Callable[..., torch.nn.Module]
"""``base(**options)``: the base classifier of a model folder, built as :meth:`Adapter.base_options` says."""


class Adapter(Protocol):
    """What an adapter kind provides to the model kind ``hf_encoder``."""

    name: str
    mergeable: bool
    """Whether ``--merge`` folds it into a plain full-precision model folder."""

    def base_options(self, cfg: Any) -> dict[str, Any]:
        """Keyword arguments for building the base classifier (``quantization``, ``fusion``).

        Raises:
            FinsentError: the adapter cannot run here (bitsandbytes missing, kernels required but absent).
        """

    def attach(self, model: torch.nn.Module, cfg: Any) -> torch.nn.Module:
        """The trainable model: ``model`` wrapped or with parts frozen."""

    def save(self, model: torch.nn.Module, folder: Path) -> None:
        """Write the model's weights into ``folder`` (tokenizer and ``finsent.json`` are the model kind's)."""

    def load(
        self, folder: Path, cfg: Any, base: BaseBuilder, *, trainable: bool, full_precision: bool
    ) -> torch.nn.Module:
        """The model of a folder this adapter saved. ``cfg`` is its validated settings (None for folders
        that predate recorded settings); ``base`` builds the base classifier; ``trainable`` keeps it ready
        to train (resuming); ``full_precision`` asks for a plain fp32 model (``--merge``)."""


def get_adapter(name: str) -> Adapter:
    """The adapter kind registered under ``name``.

    Raises:
        FinsentError: no such kind (with the closest registered name).
    """
    if name not in ADAPTERS:
        close = difflib.get_close_matches(name, list(ADAPTERS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(ADAPTERS)})"
        raise FinsentError(f"unknown adapter kind '{name}'{hint}")
    return importlib.import_module(ADAPTERS[name]).ADAPTER


def adapter_settings(name: str, recorded: dict[str, Any] | None) -> Any:
    """The validated settings that a model folder's ``finsent.json`` recorded (``adapter_config``), or None."""
    from finsent_cli.config.models import ADAPTER_SCHEMAS

    if not recorded:
        return None
    return ADAPTER_SCHEMAS[name].model_validate({**recorded, "kind": name})


def fusion_module(settings: dict[str, Any], hidden_size: int) -> torch.nn.Module:
    """The fusion module that ``FinsentClassifierConfig.fusion`` describes (``{"kind": ..., **settings}``)."""
    settings = dict(settings)
    adapter = get_adapter(str(settings.pop("kind")))
    return adapter.module(hidden_size, settings)  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------ fusion kinds

FUSION_WEIGHTS = "fusion_adapter.safetensors"
"""The trained part of a fusion adapter (module, head); the frozen encoder is the base model's."""


class FusionAdapter:
    """Adapter kinds that put a module between a frozen encoder and the head (``mamba``, ``gamba``).

    Only the module and the head train. A folder holds ``config.json`` (the classifier's, fusion settings
    included), :data:`FUSION_WEIGHTS` with the trained tensors, the tokenizer and ``finsent.json`` naming
    the base model; ``--merge`` writes a complete folder that loads without the base.

    Args:
        name: the adapter kind.
        factory: ``factory(hidden_size, **settings)`` builds the module.
        check: called with the settings before building (the kernel check of the Mamba kinds).
    """

    mergeable = True

    def __init__(
        self, name: str, factory: Callable[..., torch.nn.Module], check: Callable[[Any], None] | None = None
    ) -> None:
        self.name = name
        self.factory = factory
        self.check = check

    def module(self, hidden_size: int, settings: dict[str, Any]) -> torch.nn.Module:
        """The fusion module for an encoder of ``hidden_size``.

        Raises:
            FinsentError: settings that do not fit this encoder (a ``head_dim`` or ``attention_heads`` that
                does not divide its width), naming the key.
        """
        try:
            return self.factory(hidden_size, **settings)
        except ValueError as exc:  # the modules check their shapes; the recipe key is what the user can change
            message = str(exc)
            key = next((k for k in ("head_dim", "attention_heads", "ngroups", "scan") if message.startswith(k)), None)
            where = f"model.adapter.{key}" if key else "model.adapter"
            raise FinsentError(f"{where}: {message} (the encoder's hidden size is {hidden_size})", exit_code=2) from None

    def base_options(self, cfg: Any) -> dict[str, Any]:
        if self.check is not None:
            self.check(cfg)
        return {"fusion": cfg.model_dump(mode="json")}

    def attach(self, model: torch.nn.Module, cfg: Any) -> torch.nn.Module:
        model.backbone.requires_grad_(False)
        model.config.frozen_backbone = True
        return model

    def save(self, model: torch.nn.Module, folder: Path) -> None:
        from safetensors.torch import save_file

        trained = {k: v.detach().contiguous() for k, v in model.state_dict().items() if not k.startswith("backbone.")}
        save_file(trained, str(Path(folder) / FUSION_WEIGHTS), metadata={"format": "pt"})
        model.config.save_pretrained(folder)  # no code or auto_map: without the base's encoder only finsent loads it

    def load(
        self, folder: Path, cfg: Any, base: BaseBuilder, *, trainable: bool, full_precision: bool
    ) -> torch.nn.Module:
        from safetensors.torch import load_file

        if cfg is None:
            raise FinsentError(f"{folder}: a {self.name} adapter folder must record its adapter_config in finsent.json")
        if not trainable and getattr(cfg, "kernels", None) == "required":
            # `required` is a demand on the training run's machine; the PyTorch scan computes the same
            # function, so eval, predict and --merge run the folder anywhere (a merged folder records auto).
            cfg = cfg.model_copy(update={"kernels": "auto"})
        model = self.attach(base(**self.base_options(cfg)), cfg)
        trained = load_file(str(Path(folder) / FUSION_WEIGHTS))
        missing, unexpected = model.load_state_dict(trained, strict=False)
        missing = [k for k in missing if not k.startswith("backbone.")]
        if missing or unexpected:
            raise FinsentError(
                f"{folder / FUSION_WEIGHTS}: does not fit the {self.name} adapter of finsent.json "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        return model


# ------------------------------------------------------------------------------------------ reports


def _logical_numel(p: torch.Tensor) -> int:
    """Elements of a weight as the model sees it (bitsandbytes packs two 4-bit values per stored byte)."""
    state = getattr(p, "quant_state", None)
    shape = getattr(state, "shape", None)
    return int(torch.Size(shape).numel()) if shape is not None else p.numel()


def parameter_report(model: torch.nn.Module) -> dict[str, int]:
    """Counts and sizes of a model being trained.

    Returns:
        ``trainable`` and ``total`` parameters (4-bit weights counted unpacked), ``base_bytes``: what the
        frozen base weights take in memory as stored (quantised or not), ``base_fp32_bytes``: what they
        would take in fp32.
    """
    trainable = total = base_bytes = base_fp32 = 0
    for p in model.parameters():
        n = _logical_numel(p)
        total += n
        if p.requires_grad:
            trainable += n
        else:
            base_bytes += p.numel() * p.element_size()
            base_fp32 += n * 4
    return {"trainable": trainable, "total": total, "base_bytes": base_bytes, "base_fp32_bytes": base_fp32}
