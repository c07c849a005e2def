"""QLoRA (Dettmers et al. 2023, "QLoRA: Efficient Finetuning of Quantized LLMs", arXiv 2305.14314).

The adapter kind ``qlora``: the base encoder's linear layers are loaded in 4 bits (NF4 or FP4, optionally
double-quantised) by ``transformers`` + ``bitsandbytes``, prepared with peft's
``prepare_model_for_kbit_training`` and wrapped with LoRA (``core.peft.lora``); the classification head
stays full precision and trains in full. bitsandbytes 0.50 quantises on CPU as well as on CUDA.

A folder holds the peft adapter (as ``lora`` does) and ``finsent.json`` records the quantisation, so
``eval`` / ``predict`` / ``explain`` rebuild the same 4-bit base the adapter was trained against, and
``--merge`` folds the adapter into the full-precision base instead (a plain model folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from finsent_cli.core.models.registry import quiet_transformers
from finsent_cli.core.peft.lora import apply_lora, load_lora, save_adapter
from finsent_cli.errors import FinsentError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _cannot(reason: str) -> FinsentError:
    return FinsentError(
        f"model.adapter.kind: qlora needs bitsandbytes to quantise the base model, which it cannot do here "
        f"({reason}); train without quantisation instead: finsent finetune RECIPE model.adapter.kind=lora"
    )


def bnb_config(cfg: Any) -> Any:
    """The ``BitsAndBytesConfig`` of a recipe's ``model.adapter`` (``config.models.QLoraCfg``).

    Raises:
        FinsentError: bitsandbytes is missing or cannot load (suggesting ``adapter: lora``).
    """
    quiet_transformers()  # before bitsandbytes is imported: it logs at import time
    try:
        import bitsandbytes
    except Exception as exc:  # noqa: BLE001 - a broken native library raises anything at import
        raise _cannot(f"import bitsandbytes failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    from transformers import BitsAndBytesConfig
    from transformers.utils import import_utils

    if not import_utils.is_bitsandbytes_available():
        found = getattr(bitsandbytes, "__version__", "unknown")
        raise _cannot(f"transformers needs bitsandbytes >= {import_utils.BITSANDBYTES_MIN_VERSION}, found {found}")
    from transformers import integrations

    try:  # a bitsandbytes build without a backend for this machine's devices
        integrations.validate_bnb_backend_availability(raise_exception=True)
    except RuntimeError as exc:
        raise _cannot(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__) from None
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type=cfg.quant_type, bnb_4bit_use_double_quant=cfg.double_quant,
        bnb_4bit_compute_dtype=DTYPES[cfg.compute_dtype],
    )  # fmt: skip


def keep_one_weight_layout(model: torch.nn.Module) -> int:
    """Turn off bitsandbytes' AVX512-BF16 repacking of 4-bit weights on every ``Linear4bit`` of ``model``.

    On a CPU with avx512_bf16, bitsandbytes 0.50 repacks a layer's weight the first time it runs in eval
    mode without gradients, and keeps it packed. The packed matmul is not differentiable, so training after
    the first validation pass would stop sending gradients through the base; it also fails outright on
    layers narrower than one quantisation block (a tiny test model), and computes in bf16, so eval numbers
    would differ from one CPU to the next. One layout everywhere: the one the adapter was trained on.

    Returns:
        the number of layers changed (0 on a model without 4-bit layers).
    """
    changed = 0
    for module in model.modules():
        if getattr(module, "support_avx512bf16_for_cpu", False):
            module.support_avx512bf16_for_cpu = False
            changed += 1
    return changed


def device_map() -> dict[str, Any]:
    """Where the quantised weights live: the GPU when there is one (bitsandbytes quantises on placement)."""
    return {"": torch.cuda.current_device()} if torch.cuda.is_available() else {"": "cpu"}


class QLoraAdapter:
    """See the module docstring."""

    name = "qlora"
    mergeable = True

    def base_options(self, cfg: Any) -> dict[str, Any]:
        return {"quantization": (bnb_config(cfg), device_map())}

    def attach(self, model: torch.nn.Module, cfg: Any) -> torch.nn.Module:
        from peft import prepare_model_for_kbit_training

        # Freezes the base and upcasts its non-quantised parameters (norms, embeddings) to fp32. Gradient
        # checkpointing is enabled on the encoder here, non-reentrant: the wrapper is not a transformers
        # model peft recognises as quantised.
        keep_one_weight_layout(model)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        if cfg.gradient_checkpointing:
            model.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return apply_lora(model, cfg, modules_to_save=["classifier"])

    def save(self, model: torch.nn.Module, folder: Path) -> None:
        save_adapter(model, folder)

    def load(self, folder: Path, cfg: Any, base: Any, *, trainable: bool, full_precision: bool) -> torch.nn.Module:
        if cfg is None:
            raise FinsentError(f"{folder}: a qlora adapter folder must record its adapter_config in finsent.json")
        if full_precision:  # --merge: the adapter folded into the fp32 base, a plain model
            return load_lora(base(), folder, trainable=False)
        from peft import PeftModel, prepare_model_for_kbit_training

        quantised = base(**self.base_options(cfg))
        keep_one_weight_layout(quantised)
        if trainable:
            quantised = prepare_model_for_kbit_training(quantised, use_gradient_checkpointing=False)
            if cfg.gradient_checkpointing:
                quantised.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        # Not merged: folding into 4-bit weights would re-quantise them; inference runs base + adapter.
        return PeftModel.from_pretrained(quantised, str(folder), is_trainable=trainable)


ADAPTER = QLoraAdapter()
