"""The one place where an inference backend plugs in: what computes a model folder's class logits.

A backend turns a model folder into a :class:`Network`: the thing that computes ``(B, C)`` logits from
``(input_ids, attention_mask)``, its tokenizer, its label names and its longest input. The
:class:`~finsent_cli.core.inference.classifier.Classifier` built around it keeps everything else
(tokenisation, length-sorted batching, the mapping onto finsent's label order, the temperature), so every
backend answers through the same code. Each backend is one module exposing ``BACKEND``; :data:`BACKENDS`
maps the names of ``--backend`` to those modules, imported only when asked for.

- ``torch``: the model kind's own network in PyTorch (``eager``), on CPU or GPU.
- ``int8``: the same with dynamically quantised int8 Linear layers (PyTorch, CPU).
- ``onnx``: the fp32 graph that ``finsent export MODEL --onnx`` wrote, run by onnxruntime (CPU).
- ``onnx-int8``: its int8 graph (``finsent export MODEL --onnx --int8``), run by onnxruntime (CPU).

Adding a backend: one module exposing ``BACKEND`` (a :class:`Backend`) and a line in :data:`BACKENDS`.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from finsent_cli.errors import FinsentError

BACKENDS: dict[str, str] = {
    "torch": "finsent_cli.core.inference.backends.eager",
    "int8": "finsent_cli.core.inference.backends.int8",
    "onnx": "finsent_cli.core.inference.backends.onnx",
    "onnx-int8": "finsent_cli.core.inference.backends.onnx_int8",
}
"""Backend name (``--backend``) -> module holding its ``BACKEND``."""

@dataclass
class Network:
    """What a backend loaded from a model folder.

    Attributes:
        model: whatever ``logits_fn`` runs (an ``nn.Module``, an onnxruntime session).
        tokenizer: the folder's tokenizer.
        logits_fn: ``(model, input_ids, attention_mask) -> (B, C)`` logits, columns in ``id2label`` order;
            the inputs are ``(B, T)`` int64 tensors on the classifier's device.
        id2label: the network's own output index -> label name (mapped onto finsent's by the loader).
        max_length: longest input in tokens, special tokens included.
    """

    model: Any
    tokenizer: Any
    logits_fn: Callable[[Any, Any, Any], Any]
    id2label: dict[Any, Any]
    max_length: int


class Backend(Protocol):
    """What a backend provides to ``core.inference.loading``."""

    name: str
    cpu_only: bool
    """True for backends that run on the CPU only (``--device auto`` then means the CPU)."""

    def load(self, folder: Path, meta: dict[str, Any], device: Any) -> Network:
        """The network of a model folder (``meta``: its ``finsent.json``) on ``device`` (a ``torch.device``).

        Raises:
            FinsentError: the folder cannot run on this backend, naming the folder and what to do.
        """


def get_backend(name: str) -> Backend:
    """The backend registered under ``name``.

    Raises:
        FinsentError: no such backend (exit code 2, with the closest registered name).
    """
    if name not in BACKENDS:
        close = difflib.get_close_matches(name, list(BACKENDS), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"use {', '.join(BACKENDS)}"
        raise FinsentError(f"--backend: unknown backend '{name}' ({hint})", exit_code=2)
    return importlib.import_module(BACKENDS[name]).BACKEND  # type: ignore[no-any-return]
