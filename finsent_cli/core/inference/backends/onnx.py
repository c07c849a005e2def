"""Backends ``onnx`` and ``onnx-int8``: the graph that ``finsent export MODEL --onnx [--int8]`` wrote, run by
onnxruntime on the CPU.

Loading reads ``MODEL/onnx/export.json`` (``core.inference.onnx_graph``), refuses a graph exported from other
weights than the folder holds (the fingerprint recorded at export), and builds the tokenizer from the
export's copy: the PyTorch model is never loaded. onnxruntime uses as many threads as PyTorch
(``torch.get_num_threads()``, which ``predict --threads`` sets).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from finsent_cli.core.inference.backends import Network
from finsent_cli.core.inference.onnx_graph import export_command, new_session, read_export, require, run_session
from finsent_cli.errors import FinsentError


class OnnxBackend:
    """See the module docstring; ``name`` (``onnx``, ``onnx-int8``) picks the graph
    (:data:`~finsent_cli.core.inference.onnx_graph.GRAPHS`)."""

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
