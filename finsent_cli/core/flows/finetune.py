"""`finsent finetune`: fine-tune a model kind into a negative / neutral / positive classifier.

Setup (data, the model kind's network and tokenizer) -> resume or start -> the generic loop in
``core.training.loop`` -> reload ``best/`` and write the misclassified validation examples and the final
metrics. The run folder layout is described in the README ("Run folders and model folders"); which
network is trained is the model kind's business (``core.models.registry``), not this flow's.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import warnings
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finsent_cli.config.finetune import FinetuneRecipe
from finsent_cli.config.loader import recipe_to_yaml, upgraded_recipe, write_resolved_recipe
from finsent_cli.core.data.clean import text_hash
from finsent_cli.core.data.examples import class_weights, load_examples
from finsent_cli.core.eval.metrics import (
    apply_temperature,
    calibrate,
    expected_calibration_error,
    training_metrics,
)
from finsent_cli.core.inference.classifier import Classifier
from finsent_cli.core.io import atomic_write_json, atomic_write_text
from finsent_cli.core.models.adapters import parameter_report
from finsent_cli.core.models.registry import ModelKind, get_kind
from finsent_cli.core.progress import NullReporter, Reporter
from finsent_cli.core.runs import (
    DATA_FILE,
    META_FILE,
    TRAIN_HASHES,
    check_resumable,
    check_run_dir,
    check_same_data,
    point_latest,
    prepare_run_dir,
    read_meta,
)
from finsent_cli.core.training.checkpoint import latest_checkpoint
from finsent_cli.core.training.loop import METRICS_FILE, TrainJob, make_accelerator, train
from finsent_cli.errors import FinsentError, FinsentNote
from finsent_cli.labels import ID2LABEL, LABELS

AUGMENT_FILE = "augment.json"
"""What ``augment:`` did to the training split (settings, counts, examples), in the run folder."""


@dataclasses.dataclass
class FinetuneResult:
    """What a fine-tuning run produced."""

    run_dir: Path
    best_dir: Path
    last_dir: Path
    best_step: int | None
    steps: int
    stop_reason: str | None
    seconds: float
    resumed_from: Path | None
    moved_aside: Path | None  # where --fresh moved the previous run
    final: dict[str, dict[str, float]]  # split -> metrics of best/
    misclassified: int
    params: dict[str, int]  # trainable / total parameters, base sizes (core.models.adapters.parameter_report)
    temperature: float | None = None  # fitted on valid, applied and stored in best/ (None: raw probabilities)
    calibration: dict[str, Any] | None = None  # best/'s calibration record: the decision and why (None: calibration: none)


@dataclasses.dataclass
class FinetuneSetup:
    """What the flow has built when it asks its objective for the training set (see :func:`supervised`)."""

    cfg: FinetuneRecipe
    kind: ModelKind
    tokenizer: Any
    splits: dict[str, list[dict[str, Any]]]  # rows per split: text, label (, target, source)
    features: dict[str, list[dict[str, Any]]]  # the kind's tokenised examples per split
    weights: torch.Tensor | None  # class weights of the cross-entropy
    accelerator: Any
    reporter: Reporter


@dataclasses.dataclass
class TrainingSet:
    """What the loop trains on, as an objective decides: examples, batching, loss; ``meta`` adds to the model
    folders' ``finsent.json``; ``reference`` holds scores to print beside the model's (a teacher's, say).
    Built before ``--fresh`` moves the previous run aside, so a refusal leaves it in place."""

    examples: list[dict[str, Any]]
    collate: Any  # list of examples -> dict of tensors
    loss_fn: Any  # (model, batch) -> scalar loss
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    reference: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    texts: list[str] = dataclasses.field(default_factory=list)
    """Unlabelled texts trained on, beside the labelled ones (recorded in ``train_hashes.json``)."""
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    """What identifies the examples (counts, hashes): written to ``data.json``; a resumed run must match it."""
    data_key: str = "data"
    """The recipe key that a mismatch of :attr:`data` names."""


def supervised(setup: FinetuneSetup) -> TrainingSet:
    """The plain objective: the labelled training examples and the model kind's own loss."""
    kind, tokenizer, weights = setup.kind, setup.tokenizer, setup.weights
    return TrainingSet(
        examples=setup.features["train"], collate=lambda fs: kind.collate(fs, tokenizer),
        loss_fn=lambda m, batch: kind.loss(m, batch, weights),
    )  # fmt: skip


def write_misclassified(path: Path, rows: list[dict[str, Any]], probs: np.ndarray) -> int:
    """Write wrong validation predictions (text, gold, predicted, confidence), most confident first."""
    pred, conf = probs.argmax(axis=-1), probs.max(axis=-1)
    predicted = [LABELS[int(p)] for p in pred]
    wrong = [(float(conf[i]), r["text"], r["label"], predicted[i]) for i, r in enumerate(rows) if predicted[i] != r["label"]]
    wrong.sort(key=lambda w: -w[0])
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["text", "gold", "predicted", "confidence"])
    writer.writerows([[text, gold, p, f"{c:.4f}"] for c, text, gold, p in wrong])
    atomic_write_text(path, buf.getvalue())
    return len(wrong)


def _scorer(kind: ModelKind, tokenizer: Any, max_length: int, batch_size: int, device: Any):
    """``(model, features) -> (N, 3) probabilities``: the inference :class:`Classifier` around the model
    being trained, in eval mode for the call (training mode is restored by the loop's next step)."""

    def probs(model: torch.nn.Module, features: list[dict[str, Any]]) -> np.ndarray:
        model.eval()
        clf = Classifier(model, tokenizer, dict(ID2LABEL), max_length, device=device, logits_fn=kind.class_logits)
        return clf.probs_from_ids([f["input_ids"] for f in features], batch_size)

    return probs


def run_finetune(
    cfg: FinetuneRecipe,
    reporter: Reporter | None = None,
    *,
    fresh: bool = False,
    latest_dir: Path | None = None,
    objective: Callable[[FinetuneSetup], TrainingSet] = supervised,
    on_evaluate: Callable[[int, dict[str, float]], None] | None = None,
) -> FinetuneResult:
    """Fine-tune per ``cfg``; resume from the newest checkpoint in ``cfg.output_dir`` unless ``fresh``.

    Args:
        cfg: the validated recipe.
        reporter: progress and log lines.
        fresh: start over; an existing run folder is moved aside (never deleted).
        latest_dir: where the ``latest`` link to the finished run goes (default: beside the run folder).
        objective: what the model trains on and how (default :func:`supervised`; ``core.flows.distill``
            adds a teacher's soft targets).
        on_evaluate: called after each validation during training (see ``TrainJob.on_evaluate``; ``finsent
            tune`` reports to its pruner there and may raise ``optuna.TrialPruned``, which propagates).

    Returns:
        Folders, counters and the metrics of ``best/`` on each split.

    Raises:
        FinsentError: bad data, backbone not loadable, a non-run output folder, or a recipe that
            changed since the run in ``output_dir`` started.
        KeyboardInterrupt: Ctrl-C, after the step in progress was saved as a checkpoint.
    """
    from accelerate.utils import set_seed

    reporter = reporter or NullReporter()
    run_dir = Path(cfg.output_dir)
    kind = get_kind(cfg.model.kind)
    check_run_dir(run_dir)
    if cfg.data.target_column and not getattr(kind, "pair_inputs", False):
        raise FinsentError(f"data.target_column: model kind {kind.name} reads the text alone, not (target, text) pairs; use hf_encoder or t5_cls")
    files = [cfg.data.dir] if cfg.data.dir else [s.path for split in ("train", "valid") for s in cfg.data.sources(split)]
    reporter.log(f"reading data: {', '.join(map(str, files))}")
    splits = load_examples(cfg.data, cfg.train.seed)
    for name in ("train", "valid", "test"):
        if cfg.data.multi_source(name):
            counts = Counter(r["source"] for r in splits[name])  # in first-seen order
            reporter.log(f"{name}: " + ", ".join(f"{s} {n:,}" for s, n in counts.items()) + " examples")

    accelerator = make_accelerator(cfg.train, run_dir)
    main = accelerator.is_main_process
    resume = None if fresh else latest_checkpoint(run_dir)
    if resume is not None:
        check_resumable(run_dir, recipe_to_yaml(cfg), upgrade=partial(upgraded_recipe, schema=type(cfg)))
    reporter.log(f"loading {cfg.model.kind} model {cfg.model.backbone}" + (f" from {resume.name}" if resume else ""))
    set_seed(cfg.train.seed)
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always", FinsentNote)
        model, tokenizer = kind.build(cfg.model, resume=resume)  # a bad backbone fails before --fresh moves anything
    for note in notes:
        if issubclass(note.category, FinsentNote):
            reporter.warn(str(note.message))
        else:  # not ours: as it would have gone without the recording
            warnings.showwarning(note.message, note.category, note.filename, note.lineno)
    params = parameter_report(model)
    reporter.log(describe_parameters(params))
    features = {name: kind.features(tokenizer, rows, cfg.model) for name, rows in splits.items()}
    augmented: dict[str, Any] = {}
    if cfg.augment is not None:
        rows, augmented = augmented_train(cfg, splits["train"], reporter)
        features["train"] = kind.features(tokenizer, rows, cfg.model)
    weights = class_weights(cfg.model.class_weights, [f["label"] for f in features["train"]])
    scorer = _scorer(kind, tokenizer, cfg.model.max_length, cfg.train.eval_batch_size or 2 * cfg.train.batch_size, accelerator.device)
    valid_gold = [f["label"] for f in features["valid"]]
    # before --fresh moves anything: an objective's own data (a teacher, a corpus) may still be refused
    training = objective(FinetuneSetup(cfg, kind, tokenizer, splits, features, weights, accelerator, reporter))
    meta = {
        **kind.meta(cfg.model), "run": run_dir.name, **({"targets": True} if cfg.data.target_column else {}),
        **training.meta,
    }  # fmt: skip
    if resume is not None and training.data:
        check_same_data(run_dir, training.data, tuple(training.data), training.data_key)
    moved = prepare_run_dir(run_dir, fresh, latest_dir) if main else None
    if moved is not None:
        reporter.log(f"--fresh: moved the previous run to {moved}")
    accelerator.wait_for_everyone()

    if main and resume is None:
        write_resolved_recipe(cfg, run_dir)
        if training.data:
            atomic_write_json(run_dir / DATA_FILE, training.data)
        if augmented:
            atomic_write_json(run_dir / AUGMENT_FILE, augmented)
        # Both forms of a prepared text (cleaned and raw), so eval finds overlap with raw or prepared files.
        texts = [r[k] for r in splits["train"] for k in ("text", "raw_text") if r.get(k)] + training.texts
        hashes = sorted({text_hash(t) for t in texts})
        atomic_write_json(run_dir / TRAIN_HASHES, {"algorithm": "sha256-normalised", "hashes": hashes})
    job = TrainJob(
        model=model, train_set=training.examples, collate=training.collate, loss_fn=training.loss_fn,
        save_model=lambda m, folder: kind.save(m, tokenizer, folder, meta),
        evaluate=lambda m: training_metrics(scorer(m, features["valid"]), valid_gold),
        lengths=[len(f["input_ids"]) for f in training.examples], on_evaluate=on_evaluate,
    )  # fmt: skip
    result = train(
        job, cfg.train, cfg.optim, cfg.sched, run_dir, accelerator,
        metric=cfg.train.metric, metric_mode=cfg.metric_mode, resume_from=resume, reporter=reporter,
    )  # fmt: skip

    final: dict[str, dict[str, float]] = {}
    n_wrong = 0
    temperature: float | None = None
    calibration: dict[str, Any] | None = None
    if main:
        best_dir = result.best_dir if result.best_dir.exists() else result.last_dir
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FinsentNote)  # reported when the model was built
            best, _ = kind.load(best_dir, meta)
        best.to(accelerator.device)
        raw = {name: scorer(best, features[name]) for name in ("valid", "test") if name in features}
        gold = {name: np.asarray([f["label"] for f in features[name]]) for name in raw}
        if cfg.calibration == "temperature":
            calibration = store_temperature(best_dir, raw["valid"], gold["valid"])
            temperature = calibration["temperature"]
            reporter.log(describe_calibration(calibration))
        for name, split_probs in raw.items():
            probs = split_probs if temperature is None else apply_temperature(split_probs, temperature)
            final[name] = training_metrics(probs, gold[name])
            if temperature is not None:
                final[name]["ece_uncalibrated"] = expected_calibration_error(split_probs, gold[name])
            event = {"event": "final", "split": name, "step": result.state.step, "best_step": result.state.best_step}
            with (run_dir / METRICS_FILE).open("a", encoding="utf-8") as fh:
                fh.write(json.dumps({**event, **final[name]}) + "\n")
            if name == "valid":
                n_wrong = write_misclassified(run_dir / "misclassified_valid.csv", splits["valid"], probs)
            if cfg.data.multi_source(name):  # every source apart, as "valid:twitter"
                for source in dict.fromkeys(r["source"] for r in splits[name]):
                    idx = np.asarray([i for i, r in enumerate(splits[name]) if r["source"] == source])
                    final[f"{name}:{source}"] = training_metrics(probs[idx], gold[name][idx])
                    if temperature is not None:
                        final[f"{name}:{source}"]["ece_uncalibrated"] = expected_calibration_error(split_probs[idx], gold[name][idx])
                    with (run_dir / METRICS_FILE).open("a", encoding="utf-8") as fh:
                        fh.write(json.dumps({**event, "split": f"{name}:{source}", **final[f"{name}:{source}"]}) + "\n")
        for name, metrics in training.reference.items():
            final[name] = metrics
            with (run_dir / METRICS_FILE).open("a", encoding="utf-8") as fh:
                fh.write(json.dumps({"event": "final", "split": name, "step": result.state.step, **metrics}) + "\n")
        point_latest(run_dir, latest_dir)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return FinetuneResult(
        run_dir=run_dir, best_dir=result.best_dir, last_dir=result.last_dir, best_step=result.state.best_step,
        steps=result.state.step, stop_reason=result.state.stop_reason, seconds=result.seconds,
        resumed_from=resume, moved_aside=moved, final=final, misclassified=n_wrong, params=params,
        temperature=temperature, calibration=calibration,
    )  # fmt: skip


def augmented_train(cfg: FinetuneRecipe, rows: list[dict[str, Any]], reporter: Reporter) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The training rows with ``cfg.augment``'s copies after them, and what ``augment.json`` records in the run
    folder: the settings, the counts and a few examples."""
    from finsent_cli.core.data.augment import augment_rows

    aug = cfg.augment
    assert aug is not None
    seed = cfg.train.seed if aug.seed is None else aug.seed
    out = augment_rows(rows, aug.deletion, aug.swap, aug.copies, seed)
    added = out[len(rows) :]
    reporter.log(f"augment: {len(added):,} copies of {len(rows):,} training examples (deletion {aug.deletion}, swap {aug.swap}, seed {seed})")
    examples = [{"text": r["text"], "label": r["label"]} for r in added[:10]]
    return out, {**aug.model_dump(), "seed": seed, "originals": len(rows), "copies_added": len(added), "examples": examples}


def store_temperature(folder: Path, probs: np.ndarray, gold: np.ndarray) -> dict[str, Any]:
    """Decide on temperature scaling from ``folder``'s validation probabilities (:func:`calibrate`) and record
    the decision in its ``finsent.json``: ``calibration`` (the decision, its reason, validation ECE and NLL
    before and after) always, ``temperature`` only when applied, which :func:`load_classifier` applies; and in
    a ``finsent_classifier`` folder's ``config.json`` (``logit_temperature``), which loaders outside finsent
    apply. When calibration does not help, any earlier temperature is removed and the folder stays raw.

    Returns:
        The ``calibration`` record, with ``temperature`` the applied one (None: raw probabilities kept).
    """
    from finsent_cli.core.models.hf_encoder.model import record_logit_temperature

    decision = calibrate(probs, gold)
    temperature = round(decision.fitted, 6) if decision.applied and decision.fitted is not None else None
    record = decision.record()
    meta = {k: v for k, v in read_meta(folder).items() if k != "temperature"}
    atomic_write_json(folder / META_FILE, {**meta, **({"temperature": temperature} if temperature is not None else {}), "calibration": record})
    record_logit_temperature(folder, temperature)  # config.json too: a transformers pipeline on the folder agrees
    return {**record, "temperature": temperature}


def describe_calibration(record: dict[str, Any]) -> str:
    """The run's log line about calibration: what was decided and why."""
    if record["temperature"] is not None:
        return (f"calibration: temperature {record['temperature']:.3f} fitted on valid ({record['n']} examples) and applied: "
                f"{record['reason']}; valid ECE {record['ece_before']:.4f} -> {record['ece_after']:.4f}")  # fmt: skip
    line = f"calibration: raw probabilities kept: {record['reason']}"
    if record["ece_after"] is not None:
        line += f" (in-sample, temperature {record['temperature_fitted']:.3f} would take valid ECE {record['ece_before']:.4f} -> {record['ece_after']:.4f})"
    return line


def describe_parameters(params: dict[str, int]) -> str:
    """One log line: trainable parameters, and the frozen base's memory next to its fp32 size when quantised."""
    line = f"trainable parameters: {params['trainable']:,} of {params['total']:,} ({100 * params['trainable'] / max(params['total'], 1):.2f}%)"
    if params["base_bytes"] and params["base_bytes"] < params["base_fp32_bytes"]:
        mib = 1024 * 1024
        line += f"; frozen base in memory {params['base_bytes'] / mib:.1f} MiB (fp32: {params['base_fp32_bytes'] / mib:.1f} MiB)"
    return line
