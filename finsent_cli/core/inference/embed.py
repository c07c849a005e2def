"""Sentence embeddings of a loaded classifier: what its output layer reads.

Active learning (``finsent select``: outliers, near-duplicates) and the run report (a t-SNE map of the
validation sentences) need one vector per text in the space the model classifies in. Every classifying
model kind ends in a linear layer with one output per class (a BERT-style ``classifier``, MPNet's
``out_proj``, the T5 and Mamba heads), so a forward hook on the Linear layers with ``C`` outputs records
the input of the last one called in each forward pass: the pooled (and, for two-layer heads, projected)
representation, with no per-kind code. One pass gives the probabilities and the embeddings together.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from finsent_cli.core.inference.classifier import Classifier, plan_batches
from finsent_cli.core.progress import Task
from finsent_cli.errors import FinsentError


def _output_layers(model: torch.nn.Module, n_classes: int) -> list[torch.nn.Linear]:
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == n_classes]


def probs_and_embeddings(
    clf: Classifier, ids: Sequence[Sequence[int]], batch_size: int | None = 32, task: Task | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities and the output layer's input for already-encoded texts, rows in input order.

    Args:
        clf: a classifier on the PyTorch backend (``load_classifier(..., backend="torch")``).
        ids: token ids per text (``clf.encode``).
        batch_size: most texts per forward pass.
        task: progress, advanced by the texts done.

    Returns:
        ``(N, 3)`` probabilities (finsent label order, the folder's temperature applied) and ``(N, D)``
        float32 embeddings.

    Raises:
        FinsentError: the model is not a PyTorch module, or has no linear output layer with one output
            per class (a text-to-text T5 reads its classes off the vocabulary).
    """
    if not isinstance(clf.model, torch.nn.Module):
        raise FinsentError(f"{clf.path or 'the model'}: embeddings need the PyTorch backend, not {clf.backend}")
    n_classes = len(clf.id2label)
    layers = _output_layers(clf.model, n_classes)
    if not layers:
        raise FinsentError(
            f"{clf.path or 'the model'}: no linear output layer with {n_classes} outputs to read embeddings from "
            f"(model kind {clf.meta.get('kind', 'unknown')})"
        )
    seen: list[torch.Tensor] = []

    def record(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        seen.append(inputs[0])

    handles = [layer.register_forward_pre_hook(record) for layer in layers]
    probs = np.zeros((len(ids), len(clf.id2label)), dtype=np.float32)
    vectors: np.ndarray | None = None
    try:
        for chunk in plan_batches([len(x) for x in ids], batch_size):
            seen.clear()
            logits = clf._logits([ids[i] for i in chunk])  # (B, 3) in finsent order
            probs[chunk] = torch.softmax(logits / clf.temperature, dim=-1).cpu().numpy()
            # the last call is the output projection; a sequence-shaped input (B, T, D) reads its first position
            hidden = seen[-1]
            hidden = hidden[:, 0] if hidden.dim() == 3 else hidden  # (B, D)
            if vectors is None:
                vectors = np.zeros((len(ids), hidden.shape[-1]), dtype=np.float32)
            vectors[chunk] = hidden.float().cpu().numpy()
            if task is not None:
                task.advance(len(chunk))
    finally:
        for handle in handles:
            handle.remove()
    if vectors is None:
        vectors = np.zeros((0, 0), dtype=np.float32)
    return probs, vectors
