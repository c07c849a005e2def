"""Backend ``int8``: the PyTorch network with dynamically quantised int8 Linear layers, on the CPU.

Dynamic quantisation (PyTorch's ``torch.ao.quantization.quantize_dynamic``; the integer arithmetic of Jacob
et al. 2018, "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference")
stores each Linear weight in int8 with one scale per output channel and quantises the activations on the
fly, batch by batch: no calibration data, 4x smaller Linear weights, about 3x faster on one CPU core for
MiniLM. Probabilities move by about 0.02 on average; texts near a decision boundary may flip (3% of the
PhraseBank 50agree test set for the fine-tuned MiniLM, at the same accuracy).

What is quantised: the Linear layers of the pretrained encoder (``base_model`` of a Hugging Face model)
when the network has one apart from itself, else every Linear layer. Heads and fusion modules are small and
stay fp32 (finsent's Mamba fusion modules read their own weights' dtype, which a quantised layer no longer
has).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from finsent_cli.core.inference.backends import Network
from finsent_cli.core.inference.backends.eager import load_network
from finsent_cli.errors import FinsentError

PROBE_TEXT = "Operating profit rose to EUR 13.1 mn"


def has_4bit_weights(model: torch.nn.Module) -> bool:
    """Whether ``model`` holds bitsandbytes 4-bit layers (a QLoRA folder over its quantised base)."""
    return any(type(m).__module__.split(".")[0] == "bitsandbytes" for m in model.modules())


def quantize(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with the Linear layers of its encoder (see the module docstring) dynamically quantised
    to int8, in place."""
    base = getattr(model, "base_model", None)
    target = base if isinstance(base, torch.nn.Module) and base is not model else model
    with warnings.catch_warnings():
        # torch >= 2.10 points eager-mode quantisation users at torchao; the eager API still ships and works
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        # one scale per output channel: on MiniLM, per tensor flips 5% of the labels, per channel 3%
        per_channel = {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}
        quantized = torch.ao.quantization.quantize_dynamic(target, per_channel, dtype=torch.qint8, inplace=True)
    return model if target is not model else quantized


class Int8Backend:
    """See the module docstring."""

    name = "int8"
    cpu_only = True

    def load(self, folder: Path, meta: dict[str, Any], device: torch.device) -> Network:
        net = load_network(folder, meta, device)
        if has_4bit_weights(net.model):
            raise FinsentError(
                f"{folder}: a QLoRA folder, its base already in 4 bits; use --backend torch (or merge it into "
                "a full-precision folder first: finsent finetune --merge MODEL --output DIR)"
            )
        net.model = quantize(net.model)
        _probe(net, folder)
        return net


def _probe(net: Network, folder: Path) -> None:
    """One short forward pass, so that a network whose code reads its Linear weights directly (which a
    quantised layer replaces) fails here, with one line, rather than in the middle of a dataset."""
    enc = net.tokenizer([PROBE_TEXT], return_tensors="pt")
    try:
        with torch.inference_mode():
            net.logits_fn(net.model, enc["input_ids"], enc["attention_mask"])
    except (AttributeError, RuntimeError, TypeError, NotImplementedError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise FinsentError(
            f"{folder}: --backend int8 cannot run this model (its code reads Linear weights that dynamic "
            f"quantisation replaces: {type(exc).__name__}: {first}); use --backend torch"
        ) from None


BACKEND = Int8Backend()
