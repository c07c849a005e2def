"""An exported ONNX graph on disk and in onnxruntime: what ``finsent export MODEL --onnx`` writes
(``core.inference.export``) and the backends ``onnx`` and ``onnx-int8`` read (``core.inference.backends.onnx``).

Both sides share the folder's layout (:data:`EXPORT_DIR`, :data:`RECORD`, :data:`GRAPHS`), the graph's
input and output names, the check that the ONNX packages are installed, reading the record back against
the folder's weights, and running a graph in an onnxruntime CPU session (the exporter's parity check runs
the graph the way the backend will).
"""

from __future__ import annotations

import json
import shlex
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finsent_cli.core.runs import model_fingerprint
from finsent_cli.errors import FinsentError
from finsent_cli.extras import install_hint

if TYPE_CHECKING:  # torch loads only when a graph runs: the exporter's module stays light to import
    import torch

EXPORT_DIR = "onnx"
"""The export's folder inside the model folder."""
RECORD = "export.json"
GRAPHS = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}
"""Backend name -> its graph file in :data:`EXPORT_DIR`."""
FORMAT = 1
"""Version of :data:`RECORD`'s layout."""
INPUTS = ("input_ids", "attention_mask")
OUTPUT = "logits"
ONNX_EXTRA = install_hint("onnx")


def export_command(folder: str | Path, *, int8: bool = False) -> str:
    """The command that (re)writes ``folder``'s export."""
    return f"finsent export {shlex.quote(str(folder))} --onnx" + (" --int8" if int8 else "")


def require(*modules: str, what: str) -> None:
    """Import ``modules`` or fail with the extra to install.

    Raises:
        FinsentError: one is missing, naming all missing ones and the install hint of the onnx extra.
    """
    import importlib

    missing = []
    for name in modules:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # onnxscript's import pokes at torch.jit
                importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise FinsentError(f"{what} needs the package{'s' if len(missing) > 1 else ''} {', '.join(missing)}: {ONNX_EXTRA}")


# ---------------------------------------------------------------------------------------------- sessions


def new_session(graph: Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session for ``graph``, with ``threads`` intra-op threads (default: PyTorch's).

    Raises:
        FinsentError: onnxruntime is missing (naming the extra), or the graph does not load.
    """
    require("onnxruntime", what="--backend onnx")
    import onnxruntime as ort
    import torch

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
    import torch

    feeds = {INPUTS[0]: input_ids.cpu().numpy(), INPUTS[1]: attention_mask.cpu().numpy()}
    try:
        return torch.from_numpy(session.run([OUTPUT], feeds)[0])
    except Exception as exc:  # noqa: BLE001 - onnxruntime's pybind errors share no public base class
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise FinsentError(f"onnxruntime failed on a batch of shape {tuple(input_ids.shape)}: {first}") from None


# ---------------------------------------------------------------------------------------------- reading


def read_export(folder: Path, backend: str) -> tuple[Path, dict[str, Any]]:
    """The graph of ``backend`` in ``folder``'s export and the export's record, checked against the folder.

    Args:
        folder: the model folder.
        backend: ``onnx`` or ``onnx-int8``.

    Returns:
        The graph file and the record.

    Raises:
        FinsentError: no export, no graph for this backend, an unreadable record, or an export made from
            other weights than the folder holds now; each names the ``finsent export`` command to run.
    """
    int8 = backend == "onnx-int8"
    out = folder / EXPORT_DIR
    redo = export_command(folder, int8=int8)
    if not (out / RECORD).is_file():
        raise FinsentError(f"{folder}: no ONNX export for --backend {backend} (no {EXPORT_DIR}/{RECORD}); write it first: {redo}")
    try:
        record = json.loads((out / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise FinsentError(f"{out / RECORD}: unreadable ({exc.__class__.__name__}); export again: {redo}") from None
    fields = (("graphs", dict), ("id2label", dict), ("max_length", int))
    if not isinstance(record, dict) or record.get("format") != FORMAT or any(not isinstance(record.get(k), t) for k, t in fields):
        raise FinsentError(f"{out / RECORD}: not an export record of this finsent (format {FORMAT}); export again: {redo}")
    if backend not in record["graphs"]:
        raise FinsentError(f"{out}: no {'int8' if int8 else 'fp32'} graph for --backend {backend}; export it: {redo}")
    graph = out / GRAPHS[backend]
    if not graph.is_file():
        raise FinsentError(f"{graph}: missing (export.json lists it); export again: {redo}")
    if record.get("fingerprint") != model_fingerprint(folder):
        raise FinsentError(
            f"{graph}: exported from other weights than {folder} holds now (its weights, configs, tokenizer or "
            f"finsent.json changed since the export); export again: {redo}"
        )
    return graph, record
