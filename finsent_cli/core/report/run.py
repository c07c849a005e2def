"""`finsent report`: pictures of a run, as PNG files and one self-contained HTML page.

Setup (which model, which training log, which validation data) -> one forward pass over the validation
sentences (probabilities and embeddings together, ``core.inference.embed``) -> metrics -> figures -> page.
A run folder brings its own validation split (``data.valid`` of its ``recipe.yaml``, or the ``valid``
split of its prepared ``data.dir``) and its training log (``metrics.jsonl``); ``data`` overrides the split
and is required for a model folder without a run around it, which gets no training curves.

The sentence map is t-SNE (van der Maaten & Hinton 2008) of the embeddings after PCA to 50 dimensions
(the preprocessing the t-SNE paper and scikit-learn's guide advise: it removes noise and makes the
neighbour search cheap), with a fixed seed; above :data:`TSNE_MAX_POINTS` sentences, or with
``map="pca"``, it is the first two principal components instead (t-SNE's cost grows with N log N and its
picture of a few thousand points is already a blur).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from finsent_cli.core.io import OUTPUT_MARKERS, atomic_dir, atomic_write_bytes, atomic_write_json, atomic_write_text
from finsent_cli.core.models import builtin
from finsent_cli.core.progress import NullReporter, Reporter, counted
from finsent_cli.core.runs import METRICS_FILE, is_model_folder, resolve_model_folder
from finsent_cli.errors import FinsentError
from finsent_cli.labels import LABEL2ID, LABELS

MAPS = ("tsne", "pca")
TSNE_MAX_POINTS = 5000
"""More validation sentences than this get a PCA map: t-SNE would take minutes and show a blur."""
PCA_DIMS = 50
SEED = 0
CONFIDENT_ERRORS = 10
RECIPE_FILE = "recipe.yaml"
PAGE = "report.html"
SUMMARY = "report.json"  # also what marks the folder as a finsent output that a later report may replace


@dataclass
class History:
    """What ``metrics.jsonl`` says about training: ``train`` and ``eval`` events, the final validation
    metrics, the best step, and the lines that could not be read."""

    train: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    final_valid: dict[str, Any] | None = None
    best_step: int | None = None
    skipped: list[int] = field(default_factory=list)  # 1-based numbers of broken lines


@dataclass
class ReportData:
    """The labelled sentences the report scores."""

    name: str  # for the page: the file, or the run's recipe key
    texts: list[str]
    labels: np.ndarray  # (N,) class ids
    targets: list[str] | None = None


@dataclass
class ReportResult:
    """What :func:`run_report` wrote and the numbers on the page."""

    output: Path
    page: Path
    figures: list[Path]
    summary: dict[str, Any]
    notes: list[str]


def read_history(path: Path) -> History:
    """Parse a run's ``metrics.jsonl``; a line that is not a JSON object is skipped (and listed in ``skipped``).

    Returns:
        The events; the best step is the ``final`` validation event's ``best_step``, else the last ``eval``
        event marked ``best``.
    """
    hist = History()
    with path.open(encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = None
            if not isinstance(event, dict):
                hist.skipped.append(n)
                continue
            kind = event.get("event")
            if kind == "train" and isinstance(event.get("step"), int):
                hist.train.append(event)
            elif kind == "eval" and isinstance(event.get("step"), int):
                hist.evals.append(event)
                if event.get("best"):
                    hist.best_step = event["step"]
            elif kind == "final" and event.get("split") == "valid":
                hist.final_valid = event
    if hist.final_valid is not None and isinstance(hist.final_valid.get("best_step"), int):
        hist.best_step = hist.final_valid["best_step"]
    return hist


def locate(path: str | Path) -> tuple[Path | None, Path]:
    """The run folder (None for a bare model folder or a built-in model's name) and the model folder behind
    ``path``.

    A run folder holds ``recipe.yaml`` or ``metrics.jsonl`` beside ``best/`` or ``last/``; a model folder
    inside one (``RUN/best``) brings its run along.

    Raises:
        FinsentError: ``path`` is missing, a file, or neither a run nor a model folder.
    """
    if builtin.classify(path) != "path":  # a built-in model's name (or one line saying it is none)
        return None, resolve_model_folder(path)
    p = Path(path).expanduser()
    if not p.exists():
        raise FinsentError(f"{p}: not found; give a run folder (what finsent finetune writes) or a model folder")
    if not p.is_dir():
        raise FinsentError(f"{p}: is a file; give a run folder (what finsent finetune writes) or a model folder")

    def is_run(d: Path) -> bool:
        return (d / RECIPE_FILE).is_file() or (d / METRICS_FILE).is_file()

    if is_model_folder(p):
        return (p.parent if is_run(p.parent) else None), p
    if not is_run(p):
        raise FinsentError(
            f"{p}: neither a run folder (no {RECIPE_FILE} or {METRICS_FILE}) nor a model folder (no config.json or adapter_config.json)"
        )
    return p, resolve_model_folder(p)


def run_data(run_dir: Path) -> ReportData:
    """The validation split that a run's ``recipe.yaml`` names (its ``data.valid``, or the ``valid`` split of
    its prepared ``data.dir``), read as fine-tuning read it (``load_examples``).

    Raises:
        FinsentError: no readable recipe, a data section that no longer validates (moved files), or bad data.
    """
    import pydantic

    from finsent_cli.config.finetune import FinetuneData
    from finsent_cli.core.data.examples import load_examples

    recipe = run_dir / RECIPE_FILE
    if not recipe.is_file():
        raise FinsentError(f"{run_dir}: no {RECIPE_FILE} to say what the validation data is; pass --data FILE")
    try:
        tree = yaml.safe_load(recipe.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        raise FinsentError(f"{recipe}: not a readable recipe; pass --data FILE") from None
    section = tree.get("data") if isinstance(tree, dict) else None
    if not isinstance(section, dict):
        raise FinsentError(f"{recipe}: no data section; pass --data FILE")
    # only the data section: a distillation recipe (teacher, corpus) has the same one
    try:
        data = FinetuneData.model_validate(section)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in ("data", *err["loc"]))
        raise FinsentError(f"{recipe}: {where}: {err['msg'].removeprefix('Value error, ')}; pass --data FILE") from None
    train = tree.get("train")
    seed = train.get("seed", 0) if isinstance(train, dict) else 0  # picks subsets of training sources only
    rows = load_examples(data, seed)["valid"]
    if not rows:
        raise FinsentError(f"{recipe}: the validation split is empty; pass --data FILE")
    name = str(data.dir / "valid") if data.dir is not None else ", ".join(str(s.path) for s in data.sources("valid"))
    targets = [str(r["target"]) for r in rows] if data.target_column else None
    return ReportData(name, [r["text"] for r in rows], np.array([LABEL2ID[r["label"]] for r in rows]), targets)


def project(vectors: np.ndarray, method: str = "tsne", seed: int = SEED) -> tuple[np.ndarray, str]:
    """Two coordinates per embedding, and a title that says how they were made.

    Args:
        vectors: ``(N, D)`` embeddings.
        method: ``tsne`` (PCA to 50 dimensions, then t-SNE; PCA alone above :data:`TSNE_MAX_POINTS`) or ``pca``.
        seed: the random state of PCA's solver and t-SNE.

    Returns:
        ``(N, 2)`` points and the map's title.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = np.asarray(vectors, dtype=np.float64)
    n, d = x.shape
    if n < 3 or d < 2:  # nothing to project: a line of points
        pts = np.zeros((n, 2))
        pts[:, : min(d, 2)] = x[:, : min(d, 2)]
        return pts, f"embeddings ({n} sentences, no projection)"
    if method == "pca" or n > TSNE_MAX_POINTS or n < 5:
        pca = PCA(n_components=2, random_state=seed).fit(x)
        share = pca.explained_variance_ratio_.sum()
        why = (
            ""
            if method == "pca"
            else f", more than {TSNE_MAX_POINTS:,} sentences"
            if n > TSNE_MAX_POINTS
            else ", too few sentences for t-SNE"
        )
        return pca.transform(x), f"PCA of the sentence embeddings ({share:.0%} of the variance{why})"
    reduced = PCA(n_components=min(PCA_DIMS, n, d), random_state=seed).fit_transform(x) if d > PCA_DIMS else x
    perplexity = float(min(30.0, (n - 1) / 3))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    pts = tsne.fit_transform(reduced)
    pre = f"PCA to {reduced.shape[1]} dims, " if d > PCA_DIMS else ""
    return pts, f"t-SNE of the sentence embeddings ({pre}perplexity {perplexity:.0f}, seed {seed})"


def confident_errors(data: ReportData, probs: np.ndarray, k: int = CONFIDENT_ERRORS) -> list[dict[str, Any]]:
    """The ``k`` wrong predictions with the highest confidence: text, gold, predicted, confidence."""
    pred, conf = probs.argmax(axis=1), probs.max(axis=1)
    wrong = np.flatnonzero(pred != data.labels)
    order = wrong[np.argsort(-conf[wrong], kind="stable")][:k]
    return [
        {"text": data.texts[i], **({"target": data.targets[i]} if data.targets else {}), "gold": LABELS[int(data.labels[i])],
         "predicted": LABELS[int(pred[i])], "confidence": float(conf[i])}
        for i in order
    ]  # fmt: skip


def run_report(
    run: str | Path,
    output: str | Path,
    *,
    data: str | Path | None = None,
    map: str = "tsne",
    reporter: Reporter | None = None,
    text_column: str = "text",
    label_column: str = "label",
    label_map: dict[str, str] | None = None,
    input_format: str = "auto",
    target_column: str | None = None,
    batch_size: int = 64,
    device: str = "cpu",
) -> ReportResult:
    """Write the figures (PNG), ``report.html`` and ``report.json`` of a run or model folder into ``output``.

    Args:
        run: a run folder (``recipe.yaml``, ``metrics.jsonl``, ``best/``) or a model folder.
        output: the folder to write; replaced as a whole when it holds an earlier report.
        data: a labelled CSV/TSV/JSONL/Parquet file (or a prepared folder: its ``valid`` split) to report
            on instead of the run's validation split; required for a model folder outside a run.
        map: the sentence map: ``tsne`` or ``pca`` (see the module docstring).
        reporter: progress and warnings.
        text_column: text column of ``data``.
        label_column: label column of ``data``.
        label_map: raw label -> finsent label for ``data``.
        input_format: format of ``data`` (``auto``: from the suffix).
        target_column: target column of ``data``, for a target-conditioned model.
        batch_size: sentences per forward pass.
        device: inference device.

    Returns:
        The folder, the page, the figures and the summary numbers.

    Raises:
        FinsentError: a missing or unrecognised folder, no data, unknown labels, a target-conditioned model
            without targets, or an output that is a file or a folder finsent did not write.
    """
    reporter = reporter or NullReporter()
    if map not in MAPS:
        raise FinsentError(f"--map: unknown map {map!r} (one of {', '.join(MAPS)})", exit_code=2)
    run_dir, model_dir = locate(run)  # a typo fails before the seconds of importing torch
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise FinsentError(f"{output}: is a file, expected an output folder", exit_code=2)
    if output.is_dir() and any(output.iterdir()) and not any((output / m).exists() for m in OUTPUT_MARKERS):
        # atomic_dir refuses it too, but only after the model ran: say it first
        raise FinsentError(
            f"{output}: exists and is not a finsent output folder; remove it or choose another output path", exit_code=2
        )

    from finsent_cli.core.eval.metrics import apply_temperature, classification_metrics, reliability_bins
    from finsent_cli.core.eval.run import load_eval_data
    from finsent_cli.core.inference.embed import probs_and_embeddings
    from finsent_cli.core.inference.loading import load_classifier
    from finsent_cli.core.report import figures
    from finsent_cli.core.report.page import render_page

    notes: list[str] = []  # what the page cannot show and why; each is also a warning

    def note(message: str) -> None:
        notes.append(message)
        reporter.warn(message)

    # setup: training log, data, model
    history = None
    if run_dir is not None and (run_dir / METRICS_FILE).is_file():
        history = read_history(run_dir / METRICS_FILE)
        if history.skipped:
            shown = ", ".join(str(v) for v in history.skipped[:5]) + (" ..." if len(history.skipped) > 5 else "")
            note(
                f"{run_dir / METRICS_FILE}: skipped {counted(len(history.skipped), 'broken line')} (line {shown}), not JSON objects"
            )
    else:
        note(
            f"no {METRICS_FILE} beside the model ({'a model folder without its run' if run_dir is None else run_dir}): no training curves"
        )
    if data is not None:
        split = "valid" if Path(data).is_dir() else None
        loaded = load_eval_data(data, split, text_column, label_column, label_map, input_format, target_column)
        report_data = ReportData(str(data), loaded.texts, np.asarray(loaded.labels), loaded.targets)
    elif run_dir is not None:
        report_data = run_data(run_dir)
    else:
        raise FinsentError(
            f"{model_dir}: a model folder without a run around it; pass --data FILE (a labelled CSV or JSONL) to report on"
        )
    reporter.log(f"loading model {model_dir}")
    clf = load_classifier(model_dir, device=device)
    if clf.target_conditioned and report_data.targets is None:
        raise FinsentError(
            f"{model_dir}: a target-conditioned model (sentiment toward a named company); pass --data FILE --target-column COL"
        )
    clf.check_targets(report_data.targets is not None)
    temperature = clf.temperature if clf.temperature != 1.0 else None

    # one pass: probabilities (the folder's temperature applied) and the output layer's input
    n = len(report_data.texts)
    ids, truncated = clf.encode(report_data.texts, report_data.targets)
    if any(truncated):
        reporter.warn(f"{sum(truncated)} of {n} texts were cut to {clf.max_length} tokens")
    vectors = None
    with reporter.task(f"scoring {counted(n, 'sentence')}", total=n) as task:
        try:
            probs, vectors = probs_and_embeddings(clf, ids, batch_size, task)
        except FinsentError as exc:  # a text-to-text T5 has no output layer to read: scores, but no map
            note(f"no sentence map: {exc.message}")
            probs = clf.probs_from_ids(ids, batch_size, task)
    probs = np.asarray(probs, dtype=np.float64)
    # softmax(log p * T) undoes the division of the logits by T (log p differs from logits/T by a per-row constant)
    raw = apply_temperature(probs, 1.0 / temperature) if temperature is not None else probs
    gold = report_data.labels
    metrics = classification_metrics(gold, probs)
    pred = probs.argmax(axis=1)

    # figures
    pictures: dict[str, Any] = {}
    if history is not None and (history.train or history.evals):
        tr, ev = history.train, history.evals
        pictures["curves"] = figures.training_curves(
            [e["step"] for e in tr], [e.get("loss", np.nan) for e in tr], [e.get("lr", np.nan) for e in tr],
            [e["step"] for e in ev], {k: [e.get(k, np.nan) for e in ev] for k in ("macro_f1", "accuracy", "loss")},
            history.best_step,
        )  # fmt: skip
    elif history is not None:
        note(f"{METRICS_FILE} holds no train or eval events: no training curves")
    pictures["confusion"] = figures.confusion_matrices(np.asarray(metrics["confusion"]))
    bins = reliability_bins(probs, gold)
    raw_bins = reliability_bins(raw, gold) if temperature is not None else None
    pictures["reliability"] = figures.reliability_diagram(bins, raw_bins, temperature)
    pictures["per_class"] = figures.per_class_scores(metrics["per_class"])
    map_title = None
    if vectors is not None:
        reporter.log(f"{'t-SNE' if map == 'tsne' and n <= TSNE_MAX_POINTS else 'PCA'} map of {counted(n, 'sentence')}")
        points, map_title = project(vectors, map)
        pictures["map"] = figures.embedding_map(points, gold, pred, map_title)
    pngs = {name: figures.png_bytes(fig) for name, fig in pictures.items()}

    summary = {
        "model": str(model_dir), "run": str(run_dir) if run_dir is not None else None, "kind": clf.meta.get("kind"),
        "data": report_data.name, "n": metrics["n"], "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
        "weighted_f1": metrics["weighted_f1"], "ece": metrics["ece"], "ece_uncalibrated": bins.ece if raw_bins is None else raw_bins.ece,
        "temperature": temperature, "best_step": history.best_step if history is not None else None,
        "per_class": metrics["per_class"], "confusion": metrics["confusion"], "truncated": sum(truncated), "map": map_title,
    }  # fmt: skip
    errors = confident_errors(report_data, probs)
    page = render_page(summary, pngs, errors, notes)

    # write: the whole folder at once, replacing an earlier report but never a folder of someone else's files
    with atomic_dir(output) as tmp:
        for name, blob in pngs.items():
            atomic_write_bytes(tmp / f"{name}.png", blob)
        atomic_write_text(tmp / PAGE, page)
        atomic_write_json(
            tmp / SUMMARY,
            {**summary, "figures": [f"{name}.png" for name in pngs], "notes": notes, "confident_errors": errors},
        )
    return ReportResult(output, output / PAGE, [output / f"{name}.png" for name in pngs], summary, notes)
