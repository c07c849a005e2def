"""The one loader of sentiment models: any run, model or adapter folder -> a :class:`Classifier`.

It accepts what ``finsent finetune`` writes (see "Run folders and model folders" in the README): a model
folder, a LoRA adapter folder, or a run folder (its ``best/``, else ``last/``), and any Hugging Face
sequence classifier. The backend (``core.inference.backends``: PyTorch, int8, or an exported ONNX graph)
loads the network; for PyTorch the folder's model kind (``finsent.json``, or inferred for older folders,
see ``core.models.registry.kind_of_folder``) does. This module only dispatches, maps the labels, applies
the calibration, and turns failures into one readable error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from finsent_cli.core.inference.backends import get_backend
from finsent_cli.core.inference.classifier import Classifier, map_labels, pick_device
from finsent_cli.core.runs import read_meta, resolve_model_folder
from finsent_cli.errors import FinsentError


def open_model_folder(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """The model folder behind ``path`` and its ``finsent.json``, checked to hold a sentiment classifier.

    Raises:
        FinsentError: missing folder, not a model, or a model of another task (a pretrained T5).
    """
    folder = resolve_model_folder(path)
    meta = read_meta(folder)
    task = meta.get("task", "classification")
    if task != "classification":
        raise FinsentError(f"{folder}: a '{task}' model, not a sentiment classifier; fine-tune it first")
    return folder, meta


def load_classifier(
    path: str | Path,
    device: str = "cpu",
    label_map: dict[str, str] | None = None,
    *,
    calibrated: bool = True,
    backend: str = "torch",
) -> Classifier:
    """Load a model folder, LoRA adapter folder, or run folder for inference.

    Args:
        path: the folder.
        device: ``cpu``, ``cuda``, ``cuda:1`` or ``auto`` (CUDA when available; the CPU for the CPU-only
            backends).
        label_map: maps generic model label names (``LABEL_0``) to finsent labels; ``finsent.json`` may
            hold one under ``label_map`` too.
        calibrated: apply the temperature that fine-tuning fitted on its validation split
            (``temperature`` in ``finsent.json``); off gives the network's raw probabilities.
        backend: what runs the network: ``torch``, ``int8``, ``onnx`` or ``onnx-int8``
            (``core.inference.backends``).

    Returns:
        The classifier, ready for inference on ``device``.

    Raises:
        FinsentError: an unknown backend or a device it cannot use (exit code 2); missing folder, not a
            model, not a classifier, unknown kind, unloadable weights, labels that are not
            negative/neutral/positive, or a folder the backend cannot run (no export, say).
    """
    runner = get_backend(backend)  # a typo in --backend fails before anything is read
    folder, meta = open_model_folder(path)
    dev = pick_device("cpu" if runner.cpu_only and device == "auto" else device)
    if runner.cpu_only and dev.type != "cpu":
        raise FinsentError(f"--backend {backend} runs on the CPU only; use --device cpu, or --backend torch on {device}", exit_code=2)
    net = runner.load(folder, meta, dev)
    id2label = map_labels(net.id2label, label_map or meta.get("label_map"))
    return Classifier(
        net.model, net.tokenizer, id2label, net.max_length, meta, folder, dev, logits_fn=net.logits_fn,
        temperature=_temperature(meta, folder) if calibrated else 1.0, backend=backend,
    )  # fmt: skip


def _temperature(meta: dict[str, Any], folder: Path) -> float:
    value = meta.get("temperature", 1.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1000:
        raise FinsentError(f"{folder}/finsent.json: temperature must be a positive number, got {value!r}")
    return float(value)
