"""``finsent export MODEL --onnx [--int8]``: a model folder's network as an ONNX graph for onnxruntime.

The export goes into the model folder, beside its weights and tokenizer, as ``onnx/``. A built-in model
(``finsent export news --onnx``) is never written into: finsent's installed files stay as its manifest
records them, so its model files are copied to ``./exports/NAME/`` (:data:`BUILTIN_EXPORTS`; an earlier
copy is reused) and the export goes there. The folder ``onnx/`` holds:

- ``model.onnx``: the fp32 graph. Inputs ``input_ids`` and ``attention_mask``, ``(batch, sequence)`` int64,
  both axes dynamic; output ``logits``, ``(batch, C)`` float32, columns in the model's ``id2label`` order
  (label mapping and temperature stay outside the graph, in the shared ``Classifier``).
- ``model.int8.onnx`` (``--int8``): the same graph with onnxruntime's dynamic quantisation (8-bit weights,
  activations quantised on the fly), run by ``--backend onnx-int8``.
- ``export.json``: the record: the fingerprint of the folder's weights and configs at export
  (``core.runs.model_fingerprint``, checked at every load: a graph of other weights is refused), the
  graphs, the opset and tool versions, the model's labels and longest input, and the parity check.
- a copy of the tokenizer, so that the folder ``onnx/`` runs without the PyTorch model.

The graph is what PyTorch's exporter (``torch.onnx.export(..., dynamo=True)``: ``torch.export`` tracing,
ONNX Script conversion) makes of the model kind's ``class_logits``, LoRA adapters merged. Before anything
is written, the graph runs in onnxruntime on a few fixed headlines and must give PyTorch's probabilities
within :data:`FP32_TOLERANCE`; the int8 graph's difference is recorded.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shlex
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finsent_cli.core.inference.onnx_graph import (
    EXPORT_DIR,
    FORMAT,
    GRAPHS,
    INPUTS,
    OUTPUT,
    RECORD,
    new_session,
    require,
    run_session,
)
from finsent_cli.core.models import builtin
from finsent_cli.core.progress import NullReporter, Reporter
from finsent_cli.core.runs import model_fingerprint
from finsent_cli.errors import FinsentError

FP32_TOLERANCE = 1e-4
"""Largest |probability difference| between the fp32 graph and PyTorch on the check batches (float32
kernels sum in another order: 1e-7 to 1e-6 in practice)."""
EXTERNAL_DATA_BYTES = 1_500_000_000
"""Above this many bytes of weights the graph keeps them in ``model.onnx.data`` (protobuf's 2 GB limit)."""
PROBE_TEXTS = (
    "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn in the corresponding period in 2007.",
    "Shares of the company fell 8 % after a profit warning.",
    "The company is based in Helsinki.",
    "Net sales decreased.",
    "The board proposes a dividend of EUR 0.50 per share, up from EUR 0.40 a year earlier, and plans to buy back shares.",
    "Pre-tax loss widened to EUR 2.2 mn.",
    "Orders",
    "The new plant will employ 120 people and start production in the first quarter of next year.",
)
"""Fixed headlines of varied length (one word to two lines) for the parity check."""
BUILTIN_EXPORTS = Path("exports")
"""Where a built-in model is copied to be exported (``exports/NAME``, relative to the working folder)."""

# ---------------------------------------------------------------------------------------------- export


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote."""

    folder: Path
    """The model folder."""
    graphs: dict[str, Path] = field(default_factory=dict)
    """Backend name -> graph file."""
    record: dict[str, Any] = field(default_factory=dict)
    """The content of ``export.json``."""


def export_onnx(path: str | Path, *, int8: bool = False, reporter: Reporter | None = None) -> ExportResult:
    """Export a model folder's network to ``MODEL/onnx/`` (see the module docstring), replacing an
    earlier export; nothing is written unless the whole export and its check succeed.

    Args:
        path: a model, adapter or run folder (a run folder exports its ``best/``, else ``last/``), or a
            built-in model's name (exported in a copy: :func:`writable_copy`).
        int8: also write the int8 graph.
        reporter: progress lines.

    Returns:
        The folder (for a built-in, its copy), the graphs written and the record.

    Raises:
        FinsentError: the ONNX tools are missing (naming the extra), the folder is no classifier or cannot
            be loaded, its kind cannot be traced (4-bit QLoRA weights, say, with what to do instead), an
            ``onnx/`` folder that finsent did not write is in the way, or the graph disagrees with PyTorch.
    """
    require("onnx", "onnxscript", "onnxruntime", what="finsent export --onnx")
    import torch

    from finsent_cli.core.inference.backends.eager import load_network
    from finsent_cli.core.inference.backends.int8 import has_4bit_weights
    from finsent_cli.core.inference.loading import open_model_folder
    from finsent_cli.core.io import atomic_dir, atomic_write_json
    from finsent_cli.core.models.registry import kind_of_folder

    reporter = reporter or NullReporter()
    folder, meta = open_model_folder(path)
    folder = writable_copy(folder, reporter)
    out = folder / EXPORT_DIR
    if out.is_dir() and any(out.iterdir()) and not (out / RECORD).is_file():
        raise FinsentError(f"{out}: exists and was not written by finsent export; move it away to export here", exit_code=2)
    kind = kind_of_folder(folder, meta)
    fingerprint = model_fingerprint(folder)  # before loading: the weights the graph is made of
    net = load_network(folder, meta, torch.device("cpu"))
    if has_4bit_weights(net.model):
        raise FinsentError(
            f"{folder}: a QLoRA folder runs its base in bitsandbytes 4-bit layers, which ONNX cannot hold; merge "
            f"it into a full-precision folder and export that: finsent finetune --merge {shlex.quote(str(folder))} "
            "--output DIR, then finsent export DIR --onnx"
        )
    net.model.float()  # a folder saved in half precision still gives the fp32 graph that CPUs run well
    batches = _check_batches(net)
    with torch.inference_mode():
        want = [torch.softmax(net.logits_fn(net.model, *b).float(), dim=-1).numpy() for b in batches]  # (N, C) each
    external = _weight_bytes(net.model) > EXTERNAL_DATA_BYTES
    with atomic_dir(out, only_outputs=False) as tmp:
        reporter.log(f"export: tracing {folder} (kind {kind}) with torch.onnx")
        opset = _export_graph(net, *batches[0], tmp / GRAPHS["onnx"], external, folder, kind)
        check = {"onnx": _check(tmp / GRAPHS["onnx"], batches, want, folder)}
        if check["onnx"]["max_abs_prob_diff"] > FP32_TOLERANCE:
            raise FinsentError(
                f"{folder}: the exported graph disagrees with PyTorch on the check texts (largest probability "
                f"difference {check['onnx']['max_abs_prob_diff']:.2g}, over {FP32_TOLERANCE:g}); nothing written"
            )
        if int8:
            reporter.log("export: quantising the graph to int8 with onnxruntime")
            _quantize(tmp / GRAPHS["onnx"], tmp / GRAPHS["onnx-int8"], external)
            check["onnx-int8"] = _check(tmp / GRAPHS["onnx-int8"], batches, want, folder)
        net.tokenizer.save_pretrained(str(tmp))
        graphs = {name: GRAPHS[name] for name in check}
        record = {
            "format": FORMAT, "fingerprint": fingerprint,
            "model": {"kind": kind, "adapter": meta.get("adapter"), "base_model": meta.get("base_model")},
            "graphs": graphs, "inputs": list(INPUTS), "output": OUTPUT,
            "id2label": {str(k): v for k, v in net.id2label.items()}, "max_length": net.max_length,
            "opset": opset, "exporter": "torch.onnx.export(dynamo=True)", "versions": _versions(),
            "check": check,
        }  # fmt: skip
        atomic_write_json(tmp / RECORD, record)
    return ExportResult(folder, {name: out / file for name, file in graphs.items()}, record)


def writable_copy(folder: Path, reporter: Reporter | None = None) -> Path:
    """``folder`` itself, or for a built-in's installed folder its copy in ``exports/NAME`` (made now, or
    an earlier one whose model files still match the manifest): the export never writes into finsent's
    installed package, whose files the manifest records.

    Raises:
        FinsentError: ``exports/NAME`` exists and is not a copy of that built-in (nothing is replaced).
    """
    import shutil

    from finsent_cli.core.io import atomic_dir

    name = builtin.installed_name(folder)
    if name is None:
        return folder
    target = BUILTIN_EXPORTS / name
    if target.exists():
        if not builtin.same_files(target, name):
            raise FinsentError(
                f"{target}: exists and is not a copy of the built-in model {name}; move it away to export {name} "
                "(finsent writes a built-in's export into a copy there, never into its installed folder)",
                exit_code=2,
            )
        (reporter or NullReporter()).log(f"export: {name} is a built-in model; exporting its copy in {target}")
        return target
    with atomic_dir(target, overwrite=False) as tmp:
        for src in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
            shutil.copyfile(src, tmp / src.name)  # the model files, its card and licence: not an earlier onnx/
    if not builtin.same_files(target, name):
        raise FinsentError(f"{target}: this copy of the built-in {name} does not match its manifest; reinstall finsent")
    (reporter or NullReporter()).log(
        f"export: {name} is a built-in model; copied it to {target} (finsent's installed files stay as they are)"
    )
    return target


def _logits_module(net: Any) -> Any:
    """``net`` as an ``nn.Module`` whose ``forward(input_ids, attention_mask)`` is its float32 class logits."""
    import torch

    class ClassLogits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = net.model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return net.logits_fn(self.model, input_ids, attention_mask).float()  # (B, C)

    return ClassLogits().eval()


def _export_graph(net: Any, ids: Any, mask: Any, target: Path, external: bool, folder: Path, kind: str) -> int:
    """Trace and convert; returns the graph's ONNX opset.

    Raises:
        FinsentError: the model cannot be traced or converted, with the exporter's reason.
    """
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    batch = torch.export.Dim("batch", min=1)
    sequence = torch.export.Dim("sequence", min=1, max=max(net.max_length, int(ids.shape[1])))
    shapes = {"input_ids": {0: batch, 1: sequence}, "attention_mask": {0: batch, 1: sequence}}
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the exporter logs a line per optional op library it lacks (torchvision)
    try:
        # The math attention kernel: on CPU, torch.export otherwise records the fused kernel's (B, T, H, Dh)
        # output layout, and the exporter's own decomposition of attention then fails to view it (T5).
        with warnings.catch_warnings(), sdpa_kernel(SDPBackend.MATH), _one_chunk_scans(net.model, sequence.max):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                _logits_module(net), (ids, mask), dynamic_shapes=shapes, input_names=list(INPUTS),
                output_names=[OUTPUT], dynamo=True, external_data=external, verbose=False,
            )  # fmt: skip
            program.save(str(target), external_data=external)
    except torch.onnx.OnnxExporterError as exc:
        raise FinsentError(
            f"{folder}: cannot export this model (kind {kind}) to ONNX: {_exporter_reason(exc)}; use --backend torch"
        ) from None
    finally:
        quiet.setLevel(level)
    return next((int(o.version) for o in program.model_proto.opset_import if o.domain in ("", "ai.onnx")), 0)


@contextlib.contextmanager
def _one_chunk_scans(model: Any, longest: int) -> Iterator[None]:
    """Mamba-2 mixers scan in chunks of ``min(chunk_size, T)`` positions and branch on the chunk count in
    Python, which ``torch.export`` would freeze at the example's length (the graph then fails on longer
    inputs). With one chunk as long as the longest input the scan computes the same function
    (``core.models.mamba.ops.ssd_scan_torch``) without a branch on ``T``: the quadratic form over the whole
    sequence, which at finsent's lengths costs what attention does."""
    from finsent_cli.core.models.mamba import Mamba2Mixer

    mixers = [m for m in model.modules() if isinstance(m, Mamba2Mixer)]
    saved = [m.chunk_size for m in mixers]
    for m in mixers:
        m.chunk_size = max(m.chunk_size, longest)
    try:
        yield
    finally:
        for m, size in zip(mixers, saved):
            m.chunk_size = size


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _exporter_reason(exc: Exception) -> str:
    """The one line of an exporter error that says what failed (its messages are pages long)."""
    text = _ANSI.sub("", str(exc))
    if "## Exception summary" in text:
        text = text.split("## Exception summary", 1)[1]
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    line = re.sub(r"^<class '(?:[\w]+\.)*(\w+)'>", r"\1", line)
    # the first sentence; the rest is advice for PyTorch developers
    line = re.split(r"(?<!\be\.g)\.\s", line, maxsplit=1)[0].removesuffix(".")
    return line if len(line) <= 200 else line[:197] + "..."


def _quantize(source: Path, target: Path, external: bool) -> None:
    """onnxruntime's dynamic quantisation: 8-bit weights (one scale per output channel), uint8 activations
    quantised per batch.

    Weights are unsigned (u8u8): with signed weights onnxruntime 1.32's u8s8 kernels on an AVX2 CPU without
    VNNI flipped a quarter of a test model's labels (margins > 0.3) that u8u8 keeps; on the shipped default
    model u8u8 agrees with torch on 97.7% of PhraseBank 50agree test labels (s8: 97.6%; largest probability
    difference 0.23 against 0.30).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet = logging.getLogger()
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the quantiser logs advice through the root logger
    try:
        quantize_dynamic(source, target, weight_type=QuantType.QUInt8, per_channel=True, use_external_data_format=external)
    finally:
        quiet.setLevel(level)


def _check_batches(net: Any) -> list[tuple[Any, Any]]:
    """Right-padded ``(N, T)`` batches that cover the shapes the graph will see: all of :data:`PROBE_TEXTS`
    (the tracing example), the shortest alone (a batch of one), and inputs of ``max_length``,
    ``max_length - 1`` and about half of it tokens beside a short one (mostly padding). A graph that froze
    a length-dependent branch of the model's code at the example's length fails or disagrees on one."""
    from finsent_cli.core.data.collate import pad_collate

    pad = net.tokenizer.pad_token_id

    def batch(rows: list[list[int]]) -> tuple[Any, Any]:
        b = pad_collate([{"input_ids": ids} for ids in rows], pad if pad is not None else 0)
        return b["input_ids"], b["attention_mask"]  # (N, T) each

    probes = net.tokenizer(list(PROBE_TEXTS), truncation=True, max_length=net.max_length)["input_ids"]
    shortest = min(probes, key=len)
    longest = " ".join([max(PROBE_TEXTS, key=len)] * (net.max_length // 8 + 1))  # tokens past max_length
    full = net.tokenizer([longest], truncation=True, max_length=net.max_length)["input_ids"][0]

    def cut(n: int) -> list[int]:  # n ids: the first n - 1 and the closing special token
        return full[: max(n, 2) - 1] + full[-1:]

    return [batch(probes), batch([shortest]), batch([full, shortest]), batch([cut(len(full) - 1)]), batch([cut(len(full) // 2 + 1), shortest])]


def _check(graph: Path, batches: list[tuple[Any, Any]], want: list[Any], folder: Path) -> dict[str, float | int]:
    """The graph's probabilities on ``batches`` against PyTorch's ``want``.

    Raises:
        FinsentError: onnxruntime cannot run the graph on one of them (a shape frozen at tracing).
    """
    import numpy as np
    import torch

    session = new_session(graph)
    got = []
    for ids, mask in batches:
        try:
            got.append(torch.softmax(run_session(session, ids, mask), dim=-1).numpy())
        except FinsentError as exc:
            raise FinsentError(
                f"{folder}: the exported graph does not run on a batch of shape {tuple(ids.shape)} (torch.export "
                f"froze a length that the model's code branches on; {exc.message.split(': ', 1)[-1][:120]}); nothing "
                "written; use --backend torch"
            ) from None
    diff = max(float(np.abs(g - w).max()) for g, w in zip(got, want))
    same = sum(int((g.argmax(1) == w.argmax(1)).sum()) for g, w in zip(got, want))
    return {"texts": sum(len(w) for w in want), "max_abs_prob_diff": diff, "same_label": same}


def _weight_bytes(model: Any) -> int:
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import onnxscript
    import torch

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxscript": onnxscript.__version__, "onnxruntime": onnxruntime.__version__}
