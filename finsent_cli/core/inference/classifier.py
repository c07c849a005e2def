"""A loaded sentiment classifier and how it runs fast on CPU or GPU.

:class:`Classifier` wraps any model kind's network (``core.models.registry``): its class logits come
from the kind, and the model's own label names are mapped onto finsent's ``negative | neutral |
positive`` order, so a model that stores them in a different order (``0 = positive``) still yields
probabilities in finsent order. Loading a folder into one is ``core.inference.loading``.

Inference sorts texts by token length and pads each batch only to its longest member (dynamic padding),
which on short headlines is several times faster than padding everything to ``max_length``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finsent_cli.core.data.collate import pad_collate
from finsent_cli.core.inference.score import signed_score
from finsent_cli.core.models.registry import forward_logits
from finsent_cli.core.progress import Task
from finsent_cli.errors import FinsentError
from finsent_cli.labels import LABELS


def map_labels(id2label: dict[Any, Any], label_map: dict[str, str] | None = None) -> dict[int, str]:
    """Map a model's ``id2label`` onto finsent labels.

    Names are matched case-insensitively. Generic names (``LABEL_0``) say nothing about sentiment, so
    they are accepted only through an explicit ``label_map`` keyed by name or by id.

    Args:
        id2label: the model config's mapping from output index to label name.
        label_map: optional ``{model name or id: finsent label}``.

    Returns:
        ``{output index: finsent label}`` covering all three labels.

    Raises:
        FinsentError: not three labels, or names that do not map onto negative/neutral/positive.
    """
    lm = {str(k).strip().lower(): str(v).strip().lower() for k, v in (label_map or {}).items()}
    names = ", ".join(str(v) for _, v in sorted((int(k), v) for k, v in id2label.items()))
    out: dict[int, str] = {}
    for idx, name in id2label.items():
        key = str(name).strip().lower()
        out[int(idx)] = lm.get(key) or lm.get(str(idx)) or key
    if len(out) != 3 or sorted(out.values()) != sorted(LABELS):
        hint = "" if lm else ' (map them in finsent.json: "label_map": {"LABEL_0": "negative", ...})'
        raise FinsentError(f"model labels {names} are not negative/neutral/positive{hint}")
    return out


@dataclass
class Classifier:
    """A loaded sentiment classifier.

    Attributes:
        model: what ``logits_fn`` runs: the network in eval mode (``model(input_ids=, attention_mask=)``
            returns logits, or an output with ``.logits``, of shape ``(B, 3)``), or a backend's runner (an
            onnxruntime session, see ``core.inference.backends``).
        tokenizer: its tokenizer (a fast one: explain needs offsets).
        id2label: model output index -> finsent label.
        max_length: longest input in tokens, special tokens included; longer texts are truncated.
        meta: the folder's ``finsent.json``.
        path: the model folder.
        device: where the model runs.
        logits_fn: ``(model, input_ids, attention_mask) -> (B, C)`` logits: the model kind's
            ``class_logits`` (a plain sequence classifier's ``model(...).logits`` by default).
        temperature: the logits are divided by it before the softmax (the folder's fitted calibration,
            ``temperature`` in ``finsent.json``; 1.0 leaves them as they are).
        backend: the backend that loaded ``model`` (``torch``, ``int8``, ``onnx``, ``onnx-int8``).
    """

    model: Any
    tokenizer: Any
    id2label: dict[int, str]
    max_length: int
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    logits_fn: Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor] = forward_logits
    temperature: float = 1.0
    backend: str = "torch"

    def __post_init__(self) -> None:
        label2idx = {label: idx for idx, label in self.id2label.items()}
        self._order = [label2idx[label] for label in LABELS]  # model column for each finsent label
        pad = self.tokenizer.pad_token_id
        self._pad_id = pad if pad is not None else (self.tokenizer.eos_token_id or 0)

    @property
    def target_conditioned(self) -> bool:
        """Whether the model reads (target, text) pairs: sentiment toward a named company."""
        return bool(self.meta.get("targets"))

    def check_targets(self, given: bool) -> None:
        """Refuse targets for a sentence model and their absence for a target-conditioned one.

        Raises:
            FinsentError: the mismatch, naming the model folder and the fix.
        """
        where = self.path or "the model"
        if self.target_conditioned and not given:
            raise FinsentError(f"{where}: a target-conditioned model (sentiment toward a named company); give --target NAME or --target-column COL (eval: --target-column)")
        if given and not self.target_conditioned:
            raise FinsentError(f"{where}: a sentence-level model, trained without targets; drop --target / --target-column, or train with data.target_column")

    def encode(self, texts: Sequence[str], targets: Sequence[str] | None = None) -> tuple[list[list[int]], list[bool]]:
        """Token ids with special tokens, cut to ``max_length``; with ``targets``, the pairs (target, text),
        of which only the text is cut.

        Returns:
            The ids per text and whether each text was truncated.
        """
        if not texts:
            return [], []
        # One token of headroom shows which texts overflow without a second tokenisation pass.
        pair = {"text": list(targets), "text_pair": list(texts), "truncation": "only_second"} if targets is not None else {"text": list(texts), "truncation": True}
        enc = self.tokenizer(**pair, max_length=self.max_length + 1, return_special_tokens_mask=True)
        ids_out, truncated = [], []
        for ids, special in zip(enc["input_ids"], enc["special_tokens_mask"]):
            cut = len(ids) > self.max_length
            if cut:
                last_content = max(i for i, s in enumerate(special) if not s)
                ids = ids[:last_content] + ids[last_content + 1 :]
            ids_out.append(list(ids))
            truncated.append(cut)
        return ids_out, truncated

    @torch.inference_mode()
    def _logits(self, batch: Sequence[Sequence[int]]) -> torch.Tensor:
        padded = pad_collate([{"input_ids": ids} for ids in batch], self._pad_id)  # (B, T) each
        logits = self.logits_fn(self.model, padded["input_ids"].to(self.device), padded["attention_mask"].to(self.device))
        return logits.float()[:, self._order]  # (B, 3) in finsent order

    def _batched(
        self, ids: Sequence[Sequence[int]], batch_size: int | None, task: Task | None, *, probs: bool, batch_tokens: int | None = None,
        pass_cost: float | None = None,
    ) -> np.ndarray:  # fmt: skip
        """Logits, or probabilities at :attr:`temperature`, in length-sorted batches; rows in input order."""
        out = np.zeros((len(ids), len(LABELS)), dtype=np.float32)
        lengths = [len(x) for x in ids]
        plan = plan_batches(lengths, batch_size, batch_tokens) if pass_cost is None else plan_passes(lengths, pass_cost, batch_size, batch_tokens)
        for chunk in plan:
            logits = self._logits([ids[i] for i in chunk])  # (B, 3)
            out[chunk] = (torch.softmax(logits / self.temperature, dim=-1) if probs else logits).cpu().numpy()
            if task is not None:
                task.advance(len(chunk))
        return out

    def probs_from_ids(
        self, ids: Sequence[Sequence[int]], batch_size: int | None = 32, task: Task | None = None, batch_tokens: int | None = None,
        pass_cost: float | None = None,
    ) -> np.ndarray:  # fmt: skip
        """Class probabilities for already-encoded inputs.

        Args:
            ids: token ids per input (special tokens included).
            batch_size: most inputs per forward pass; ``None`` runs everything in one pass.
            task: progress task advanced by the number of inputs done.
            batch_tokens: most padded tokens per forward pass (see :func:`plan_batches`).
            pass_cost: what one forward pass costs beyond its tokens, in padded tokens (see
                :func:`pass_cost`); given, the passes are cut by :func:`plan_passes` (the least total cost)
                instead of filled up to ``batch_size``.

        Returns:
            ``(N, 3)`` float array, columns negative/neutral/positive, rows in input order.
        """
        return self._batched(ids, batch_size, task, probs=True, batch_tokens=batch_tokens, pass_cost=pass_cost)

    def logits_from_ids(
        self, ids: Sequence[Sequence[int]], batch_size: int | None = 32, task: Task | None = None
    ) -> np.ndarray:
        """The network's raw class logits (no temperature) for already-encoded inputs, in length-sorted
        batches: ``(N, 3)``, columns negative/neutral/positive, rows in input order (what a distillation
        teacher gives its student)."""
        return self._batched(ids, batch_size, task, probs=False)

    def predict(
        self, texts: Sequence[str], batch_size: int = 32, task: Task | None = None, targets: Sequence[str] | None = None
    ) -> tuple[np.ndarray, list[bool]]:
        """Probabilities and truncation flags for raw texts (toward ``targets``, one per text, for a
        target-conditioned model).

        Returns:
            ``(N, 3)`` probabilities in finsent label order and a truncated flag per text.

        Raises:
            FinsentError: targets for a sentence model, or none for a target-conditioned one.
        """
        self.check_targets(targets is not None)
        ids, truncated = self.encode(texts, targets)
        return self.probs_from_ids(ids, batch_size, task), truncated

    def predict_proba(
        self, texts: Sequence[str], batch_size: int = 32, task: Task | None = None, targets: Sequence[str] | None = None
    ) -> np.ndarray:
        """``(N, 3)`` class probabilities (negative, neutral, positive) for ``texts``, in input order."""
        return self.predict(texts, batch_size, task, targets)[0]

    def predict_scores(
        self, texts: Sequence[str], batch_size: int = 32, task: Task | None = None, targets: Sequence[str] | None = None
    ) -> np.ndarray:
        """``(N,)`` signed sentiment scores ``p_positive - p_negative`` in [-1, 1] (``core.inference.score``) of the
        calibrated probabilities of :meth:`predict_proba`, in input order: the number to sum per ticker and day."""
        return signed_score(self.predict_proba(texts, batch_size, task, targets))  # type: ignore[no-any-return]


def plan_batches(lengths: Sequence[int], batch_size: int | None, batch_tokens: int | None = None) -> list[list[int]]:
    """Batches of input indices, longest inputs first (an out-of-memory shows up at once), each padded only
    to its longest member (dynamic padding).

    A batch closes at ``batch_size`` inputs, or earlier when its padded size (inputs x longest) would pass
    ``batch_tokens``, so short headlines go many to a batch and long paragraphs few (a batch always takes
    at least one input). ``None`` lifts either limit.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = lengths[current[0]] if current else lengths[i]
        full = batch_size is not None and len(current) >= batch_size
        over = batch_tokens is not None and (len(current) + 1) * max(longest, 1) > batch_tokens
        if current and (full or over):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def plan_passes(
    lengths: Sequence[int], pass_cost: float, batch_size: int | None = None, batch_tokens: int | None = None
) -> list[list[int]]:
    """Forward passes of input indices that cost the least in all: each pass costs ``pass_cost`` plus its
    padded tokens (inputs x longest), within the limits of :func:`plan_batches`.

    A pass pads every input to its longest, so a few texts of mixed lengths (a micro-batch of concurrent
    requests) waste much of one pass on padding, while each further pass costs a fixed ``pass_cost`` (on a
    CPU mostly reading the weights once more). The cheapest cut of the length-sorted inputs into contiguous
    passes is found exactly by dynamic programming over the split points (``O(n x batch_size)``).

    Returns:
        Passes of indices, longest inputs first (as :func:`plan_batches`).
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    n = len(order)
    size = [max(lengths[i], 1) for i in order]  # non-increasing: a pass [j, i) pads to size[j]
    best = [0.0] + [math.inf] * n  # best[i]: the cheapest cost of the first i inputs
    cut = [0] * (n + 1)
    for i in range(1, n + 1):
        for j in range(i - 1, -1, -1):
            count = i - j
            if count > 1 and ((batch_size is not None and count > batch_size) or (batch_tokens is not None and count * size[j] > batch_tokens)):
                break  # a longer pass [j', i) with j' < j only grows
            cost = best[j] + pass_cost + count * size[j]
            if cost <= best[i]:  # a tie: the longer pass (fewer passes)
                best[i], cut[i] = cost, j
    passes: list[list[int]] = []
    i = n
    while i > 0:
        passes.append(order[cut[i] : i])
        i = cut[i]
    return passes[::-1]


def pass_cost(clf: Classifier, length: int = 32, big: int = 8, repeats: int = 5) -> float:
    """What one forward pass of ``clf`` costs beyond its tokens, in padded tokens, measured now: the median
    time of passes of 1 and of ``big`` inputs of ``length`` tokens gives ``time = fixed + per_token x tokens``,
    and the answer is ``fixed / per_token`` (about 40 for MiniLM on one CPU thread). Also warms the model up.
    """
    ids = [[(clf._pad_id + 1) % max(len(clf.tokenizer), 2)] * length]  # any token but padding
    # on a CPU the process's time, over all its threads (torch's or onnxruntime's pool included): other
    # processes on the machine do not blur it, and the server measures before it takes requests
    clock = time.process_time if clf.device.type == "cpu" else time.perf_counter

    def seconds(batch: list[list[int]]) -> float:
        times = []
        for _ in range(repeats):
            started = clock()
            clf.probs_from_ids(batch, None)  # returns numpy: on a GPU, after the pass is done
            times.append(clock() - started)
        return float(np.median(times))

    seconds(ids)  # the first passes are slow (allocation, kernels picked)
    one, many = seconds(ids), seconds(ids * big)
    per_token = max((many - one) / ((big - 1) * length), 1e-9)
    return float(min(max((one - per_token * length) / per_token, 0.0), 4 * length * big))


def pick_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else is checked.

    Raises:
        FinsentError: an unknown device name, or CUDA asked for but unavailable.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise FinsentError(f"unknown device '{device}' (use cpu, cuda, cuda:N or auto)", exit_code=2) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FinsentError(f"device '{device}' asked for, but no CUDA GPU is available; use --device cpu", exit_code=2)
    return dev
