"""`finsent select`: pick the unlabelled texts most worth labelling next, as a batch for annotators.

Reads the pool with the readers of ``predict`` (``core.predict.inputs``), drops empty lines and texts the
model was trained on (its run's ``train_hashes.json``), scores the rest in one forward pass (probabilities,
and embeddings when a component needs them), combines the scores of ``core.select.scores`` by the
recipe's weights and fills the batch greedily without duplicates.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from finsent_cli.config.select import SelectRecipe
from finsent_cli.core.progress import NullReporter, Reporter, counted
from finsent_cli.errors import FinsentError

COLUMNS = ("text", "line", "score", "uncertainty", "rarity", "outlier", "label", "confidence")
"""The CSV columns: ``line`` is the text's line in the pool file; a component that weighs 0 is left empty."""


@dataclass
class Picked:
    """One text of the batch."""

    text: str
    line: int  # its (first) line in the pool, counting from 1
    score: float  # the combined score in [0, 1]
    components: dict[str, float]  # the raw score of each component computed
    label: str  # the model's guess
    confidence: float  # its probability


@dataclass
class SelectResult:
    """The batch, best first, and what was read and dropped on the way."""

    rows: list[Picked]
    model: Path
    read: int  # non-empty pool texts
    empty: int  # empty lines skipped
    in_training: int  # dropped: already in the model's training data
    duplicates: int  # skipped while filling the batch: a duplicate or near-duplicate of a picked text
    weights: dict[str, float] = field(default_factory=dict)


def run_select(
    model: str | Path,
    pool: str | Path,
    budget: int,
    cfg: SelectRecipe | None = None,
    reporter: Reporter | None = None,
    *,
    input_format: str = "auto",
    text_column: str = "text",
    device: str = "cpu",
) -> SelectResult:
    """Score every text of ``pool`` with ``model`` and pick the ``budget`` most worth labelling.

    Args:
        model: a run, model or LoRA adapter folder.
        pool: the unlabelled texts: .txt (one a line), .csv/.tsv or .jsonl (``text_column``), .gz too, or
            ``-`` for stdin.
        budget: how many texts to pick.
        cfg: weights and settings (default: :class:`SelectRecipe`'s defaults).
        reporter: progress and log lines.
        input_format: ``auto`` (from the suffix) or one of ``core.predict.inputs.INPUT_FORMATS``.
        text_column: the text column of a CSV/TSV, or field of JSONL.
        device: where the model runs.

    Returns:
        The batch, best first (fewer than ``budget`` texts only when duplicates exhaust the pool).

    Raises:
        FinsentError: budget below 1 or above the pool, an unreadable or non-UTF-8 pool, a missing
            column, no model in ``model``, or a model that reads (target, text) pairs.
    """
    import numpy as np

    from finsent_cli.core.data.clean import text_hash
    from finsent_cli.core.eval.run import find_train_hashes
    from finsent_cli.core.inference.loading import load_classifier
    from finsent_cli.core.predict.inputs import read_inputs
    from finsent_cli.core.select import scores
    from finsent_cli.labels import LABELS

    cfg = cfg or SelectRecipe()
    reporter = reporter or NullReporter()
    if budget < 1:
        raise FinsentError(f"--budget must be at least 1, got {budget}", exit_code=2)
    inputs = read_inputs(pool, input_format, column=text_column, field=text_column)
    if inputs.replaced_lines:
        first = next(r.line for r in inputs.records if "\ufffd" in r.text)
        raise FinsentError(
            f"{inputs.source}: {counted(inputs.replaced_lines, 'line')} not valid UTF-8 (first: line {first}); "
            "re-encode the file as UTF-8"
        )
    records = [r for r in inputs.records if r.text.strip()]
    empty = len(inputs.records) - len(records)
    _check_budget(budget, len(records), inputs.source, empty, 0)  # before the model loads (seconds)
    clf = load_classifier(model, device)
    clf.check_targets(False)
    trained = find_train_hashes(model) or set()
    hashes = [text_hash(r.text) for r in records]
    keep = [i for i, h in enumerate(hashes) if h not in trained]
    in_training = len(records) - len(keep)
    records, hashes = [records[i] for i in keep], [hashes[i] for i in keep]
    if in_training:
        reporter.log(f"dropped {counted(in_training, 'text')} already in the model's training data")
    _check_budget(budget, len(records), inputs.source, empty, in_training)
    texts = [r.text for r in records]
    ids, _ = clf.encode(texts)
    embeddings = None
    with reporter.task("scoring the pool", total=len(ids)) as task:
        if cfg.needs_embeddings:
            from finsent_cli.core.inference.embed import probs_and_embeddings

            probs, embeddings = probs_and_embeddings(clf, ids, cfg.batch_size, task)
        else:
            probs = clf.probs_from_ids(ids, cfg.batch_size, task)
    weights = {name: w for name, w in cfg.weights.items() if w > 0}
    components: dict[str, np.ndarray] = {}
    if "uncertainty" in weights:
        components["uncertainty"] = scores.uncertainty(probs, cfg.uncertainty.measure)
    if "rarity" in weights:
        try:
            components["rarity"] = scores.rarity(texts, clf.tokenizer)
        except ValueError as exc:
            raise FinsentError(f"{clf.path}: {exc}", exit_code=2) from None
    if "outlier" in weights:
        assert embeddings is not None
        with reporter.task(f"k-means ({cfg.outlier.clusters} clusters)", total=None):
            components["outlier"] = scores.outliers(embeddings, cfg.outlier.clusters, cfg.seed)
    combined = scores.combine(components, weights)
    picked, duplicates = scores.pick_diverse(
        combined, budget, hashes if cfg.dedup.by_text else None, embeddings, cfg.dedup.cosine
    )
    if len(picked) < budget:
        reporter.warn(
            f"only {counted(len(picked), 'text')} left once duplicates were skipped (asked for {budget}); "
            "raise dedup.cosine or set dedup.by_text=false for more"
        )
    rows = [
        Picked(
            text=texts[i],
            line=records[i].line,
            score=float(combined[i]),
            components={name: float(values[i]) for name, values in components.items()},
            label=LABELS[int(np.argmax(probs[i]))],
            confidence=float(np.max(probs[i])),
        )
        for i in picked
    ]
    return SelectResult(
        rows, clf.path or Path(model), len(records) + in_training, empty, in_training, duplicates, weights
    )


def _check_budget(budget: int, candidates: int, source: str, empty: int, in_training: int) -> None:
    if budget > candidates:
        dropped = f", {in_training} in the model's training data" if in_training else ""
        raise FinsentError(
            f"--budget {budget} is more than the {counted(candidates, 'candidate text')} of {source} "
            f"({counted(empty, 'empty line')} skipped{dropped})",
            exit_code=2,
        )


def to_csv(result: SelectResult, digits: int = 4) -> str:
    """The batch as CSV text with a header (:data:`COLUMNS`), best first."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in result.rows:
        parts = [r.components.get(name) for name in ("uncertainty", "rarity", "outlier")]
        shown = ["" if v is None else round(v, digits) for v in parts]
        writer.writerow([r.text, r.line, round(r.score, digits), *shown, r.label, round(r.confidence, digits)])
    return buf.getvalue()
