"""Scale-out on Ray: a pool of model actors over Ray Data, for when one machine is not enough.

:class:`Predictor` is the unit of work: it loads a model folder once (per Ray actor) and maps a batch of
records (columns ``line``, ``text`` and, for target-conditioned models, ``target``) to the columns of
``finsent predict`` with the same code as the local engine. Use it from Python on any Ray Dataset::

    import ray
    from finsent_cli.core.predict.ray_engine import Predictor

    ray.init(address="ray://head:10001")  # or nothing: a local Ray
    ds = ray.data.read_json("s3://bucket/news/*.jsonl")  # a column "text" (and "line")
    out = ds.map_batches(Predictor, fn_constructor_kwargs={"model": "/shared/models/best"},
                         concurrency=8, batch_size=512, batch_format="pandas")

``finsent predict ... --engine ray`` does the same for a file: finsent reads the input (same line
numbers, same handling of bad bytes and empty lines) and sends it chunk by chunk through
``map_batches``; the rows come back in input order and go through the same resumable output. The
model folder must be readable at the same path on every node (a shared file system).
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any

from finsent_cli.core.predict.inputs import InputRecord
from finsent_cli.core.predict.rows import PredictOptions, predict_records
from finsent_cli.errors import FinsentError
from finsent_cli.extras import install_hint

DETAILS_COLUMN = "_details"
"""Per document: the record's ``--details`` rows, as JSON (a batch's columns must be one value per record)."""


def import_ray() -> Any:
    """The ``ray`` module with Ray Data.

    Raises:
        FinsentError: Ray is not installed (naming the extra that installs it).
    """
    try:
        import ray
        import ray.data
        import ray.exceptions
    except ImportError:
        raise FinsentError(f"--engine ray needs Ray: {install_hint('ray')}", exit_code=2) from None
    return ray


class Predictor:
    """A model loaded once, mapping batches of records to ``finsent predict``'s columns (see the module docstring).

    Args:
        model: a model, run or adapter folder (as ``--model``).
        options: a :class:`~finsent_cli.core.predict.rows.PredictOptions` or a dict of its fields.
        threads: torch threads in this worker (default 1: Ray gives each actor one CPU).
    """

    def __init__(self, model: str, options: Any = None, threads: int | None = None) -> None:
        import torch

        from finsent_cli.core.inference.loading import load_classifier

        self.options = options if isinstance(options, PredictOptions) else PredictOptions(**(options or {}))
        torch.set_num_threads(threads or self.options.threads or 1)
        self.clf = load_classifier(model, device=self.options.device, backend=self.options.backend)
        self.clf.check_targets(self.options.with_targets)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        texts = [str(t) for t in _column(batch, "text")]
        lines = [int(x) for x in _column(batch, "line")] if "line" in batch else list(range(1, len(texts) + 1))
        targets = [None if t is None else str(t) for t in _column(batch, "target")] if "target" in batch else [None] * len(texts)
        if self.options.target is not None:
            targets = [self.options.target] * len(texts)
        records = [InputRecord(line, text, target) for line, text, target in zip(lines, texts, targets)]
        rows, details = predict_records(self.clf, records, self.options)
        out: dict[str, list[Any]] = {col: [row[col] for row in rows] for col in self.options.columns()}
        if self.options.per == "document":
            by_line: dict[int, list[dict[str, Any]]] = {}
            for d in details:
                by_line.setdefault(d["line"], []).append(d)
            out[DETAILS_COLUMN] = [json.dumps(by_line.get(row["line"], []), ensure_ascii=False) for row in rows]
        return out


def _column(batch: Any, name: str) -> list[Any]:
    col = batch[name]
    return col.tolist() if hasattr(col, "tolist") else list(col)


class RayEngine:
    """``--engine ray``: each chunk of records goes through ``map_batches(Predictor)`` on a Ray cluster.

    Args:
        model: the model folder (readable at this path on every node).
        options: the run's ``PredictOptions`` (``workers``: actors; ``ray_address``: the cluster, else
            ``$RAY_ADDRESS``, else a local Ray started for this run).
    """

    def __init__(self, model: str, options: Any) -> None:
        self.ray = import_ray()
        self.model, self.options = str(model), options
        if not self.ray.is_initialized():
            address = options.ray_address or os.environ.get("RAY_ADDRESS") or None
            kwargs: dict[str, Any] = {
                "address": address, "include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING,
            }  # fmt: skip
            if address is None:
                kwargs["num_cpus"] = options.workers or os.cpu_count() or 1
            try:
                self.ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise FinsentError(f"--engine ray: cannot start or reach Ray at {address or 'a local instance'} ({str(exc).splitlines()[0]})") from None
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # finsent reports progress; Ray's lines would garble it
        context = self.ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        self.workers = options.workers or max(1, int(self.ray.available_resources().get("CPU", 1)))

    def predict(self, records: list[InputRecord]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Rows and ``--details`` rows of ``records``, in input order."""
        opts = self.options
        items = [{"line": r.line, "text": r.text, **({"target": r.target} if opts.with_targets else {})} for r in records]
        per_worker = max(1, -(-len(items) // self.workers))
        ds = self.ray.data.from_items(items, override_num_blocks=min(len(items), self.workers * 4))
        fields = {k: getattr(opts, k) for k in ("batch_size", "batch_tokens", "per", "aggregate", "backend", "device", "target", "target_column")}
        try:
            out = ds.map_batches(
                Predictor, fn_constructor_kwargs={"model": self.model, "options": fields, "threads": opts.threads or 1},
                compute=self.ray.data.ActorPoolStrategy(size=self.workers), batch_size=min(per_worker, 1024),
                batch_format="numpy", num_cpus=1,
            ).take_all()  # fmt: skip
        except self.ray.exceptions.RayError as exc:  # a worker could not load the model, an actor died
            first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise FinsentError(f"--engine ray: the workers failed ({first[:300]}); is {self.model} readable on every node?") from None
        columns = opts.columns()
        rows = [{col: _plain(row[col]) for col in columns} for row in out]
        details = [d for row in out for d in json.loads(row[DETAILS_COLUMN])] if opts.per == "document" else []
        return rows, details


def _plain(value: Any) -> Any:
    """A numpy scalar from a Ray batch as the Python value the local engine writes (NaN/None as None)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
