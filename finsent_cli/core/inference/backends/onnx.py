"""Backends ``onnx`` and ``onnx-int8``: the graph that ``finsent export MODEL --onnx [--int8]`` wrote, run by
onnxruntime on the CPU.

Loading reads ``MODEL/onnx/export.json`` (``core.inference.export``), refuses a graph exported from other
weights than the folder holds (the fingerprint recorded at export), and builds the tokenizer from the
export's copy: the PyTorch model is never loaded. onnxruntime uses as many threads as PyTorch
(``torch.get_num_threads()``, which ``predict --threads`` sets).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from finsent_cli.core.inference.backends import Network
from finsent_cli.core.inference.export import INPUTS, OUTPUT, export_command, read_export, require
from finsent_cli.errors import FinsentError


def new_session(graph: Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session for ``graph``, with ``threads`` intra-op threads (default: PyTorch's).

    Raises:
        FinsentError: onnxruntime is missing (naming the extra), or the graph does not load.
    """
    require("onnxruntime", what="--backend onnx")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1  # one graph at a time: parallelism is inside the matmuls
    options.log_severity_level = 3  # errors only: onnxruntime warns about initializers it folds away
    try:
        return ort.InferenceSession(str(graph), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own pybind classes for a bad graph
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise FinsentError(f"{graph}: onnxruntime cannot load it ({first}); export again: {export_command(graph.parent.parent)}") from None


def run_session(session: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """``(B, C)`` float32 logits of an exported graph for ``(B, T)`` ids and mask (a ``Network.logits_fn``)."""
    feeds = {INPUTS[0]: input_ids.cpu().numpy(), INPUTS[1]: attention_mask.cpu().numpy()}
    try:
        return torch.from_numpy(session.run([OUTPUT], feeds)[0])
    except Exception as exc:  # noqa: BLE001 - onnxruntime's pybind errors share no public base class
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise FinsentError(f"onnxruntime failed on a batch of shape {tuple(input_ids.shape)}: {first}") from None


class OnnxBackend:
    """See the module docstring; ``name`` (``onnx``, ``onnx-int8``) picks the graph
    (:data:`~finsent_cli.core.inference.export.GRAPHS`)."""

    cpu_only = True

    def __init__(self, name: str) -> None:
        self.name = name

    def load(self, folder: Path, meta: dict[str, Any], device: torch.device) -> Network:
        require("onnxruntime", what=f"--backend {self.name}")
        from transformers import AutoTokenizer

        from finsent_cli.core.models.registry import quiet_transformers

        graph, record = read_export(folder, self.name)
        quiet_transformers()
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(graph.parent))
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise FinsentError(f"{graph.parent}: cannot load the export's tokenizer ({first}); export again: {export_command(folder)}") from None
        id2label = {int(k): v for k, v in record["id2label"].items()}
        return Network(new_session(graph), tokenizer, run_session, id2label, int(record["max_length"]))


BACKEND = OnnxBackend("onnx")
