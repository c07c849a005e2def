"""`finsent finetune`: fine-tune an encoder into a negative / neutral / positive classifier.

Setup (data, tokenizer, model, optional LoRA) -> resume or start -> the generic loop in
``core.training.loop`` -> reload ``best/`` and write the misclassified validation examples and the final
metrics. The run folder layout is described in the README ("Run folders and model folders").
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from finsent_cli.config.base import LABELS
from finsent_cli.config.finetune import FinetuneData, FinetuneRecipe
from finsent_cli.config.loader import recipe_to_yaml, write_resolved_recipe
from finsent_cli.core.data.clean import text_hash
from finsent_cli.core.data.labels import LABEL2ID, LabelNormaliser, normalise_or_raise
from finsent_cli.core.io import atomic_dir, atomic_write_json, atomic_write_text
from finsent_cli.core.models.heads import META_FILE, build_classifier_from_folder, new_classifier
from finsent_cli.core.models.hub import resolve_model_path
from finsent_cli.core.progress import NullReporter, Reporter
from finsent_cli.core.training.checkpoint import latest_checkpoint
from finsent_cli.core.training.data import length_sorted_batches, pad_collate
from finsent_cli.core.training.loop import METRICS_FILE, TrainJob, make_accelerator, train
from finsent_cli.errors import FinsentError

# Keys that may change between a run and its resumption (length, logging); anything else is a mismatch.
RESUMABLE_CHANGES = (
    "train.epochs", "train.max_steps", "train.patience", "train.log_every", "train.tensorboard", "train.wandb",
    "train.eval_batch_size", "train.keep_checkpoints", "train.save_every",
)  # fmt: skip


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
    final: dict[str, dict[str, float]]  # split -> metrics of best/
    misclassified: int


# ---------------------------------------------------------------------------------------------- data


def load_examples(data: FinetuneData) -> dict[str, list[dict[str, Any]]]:
    """Labelled rows ``{"text", "label"}`` per split (``train``, ``valid``, maybe ``test``).

    Raises:
        FinsentError: unreadable files, unknown labels (naming file and line), a missing split.
    """
    from finsent_cli.core.data.readers import read_table
    from finsent_cli.core.data.store import load_prepared

    if data.dir is not None:
        splits = load_prepared(data.dir)
        for name in ("train", "valid"):
            if not splits.get(name):
                raise FinsentError(f"{data.dir}: has no '{name}' split (re-run finsent prep with a validation split)")
        for rows in splits.values():
            for row in rows:
                if row["label"] not in LABEL2ID:
                    raise FinsentError(f"{data.dir}: unknown label {row['label']!r}")
        keep = ("text", "label", "raw_text")  # raw_text: the uncleaned form, hashed for eval's overlap check
        return {k: [{f: r[f] for f in keep if r.get(f) is not None} for r in v] for k, v in splits.items()}
    files = {name: getattr(data, name) for name in ("train", "valid", "test") if getattr(data, name) is not None}
    raw = {
        name: read_table(path, fmt=data.format, text_column=data.text_column, label_column=data.label_column)[0]
        for name, path in files.items()
    }  # fmt: skip
    norm = LabelNormaliser([r.label for recs in raw.values() for r in recs], data.label_map)
    return {
        name: [{"text": r.text, "label": normalise_or_raise(norm, r.label, r.where)} for r in recs]
        for name, recs in raw.items()
    }


def tokenize_rows(tokenizer: Any, rows: list[dict[str, Any]], max_length: int) -> list[dict[str, Any]]:
    """``{"input_ids", "label"}`` per row, truncated to ``max_length`` tokens."""
    ids = tokenizer([r["text"] for r in rows], truncation=True, max_length=max_length)["input_ids"]
    return [{"input_ids": x, "label": LABEL2ID[r["label"]]} for x, r in zip(ids, rows, strict=True)]


def class_weights(spec: str | list[float], labels: list[int]) -> torch.Tensor | None:
    """Cross-entropy weights: None, ``balanced`` (n / (3 * count), after King & Zeng 2001 / scikit-learn) or given."""
    if spec == "none":
        return None
    if spec == "balanced":
        counts = Counter(labels)
        return torch.tensor([len(labels) / (len(LABELS) * max(counts[i], 1)) for i in range(len(LABELS))])
    return torch.tensor(spec, dtype=torch.float)


# ------------------------------------------------------------------------------------- inference


@torch.no_grad()
def predict_probs(
    model: torch.nn.Module, features: list[dict[str, Any]], pad_id: int, batch_size: int, device: Any
) -> torch.Tensor:
    """Class probabilities (N, 3) in the order of ``features``; batches are length-sorted for speed."""
    was_training = model.training
    model.eval()
    probs = torch.zeros(len(features), len(LABELS))
    for idx in length_sorted_batches([len(f["input_ids"]) for f in features], batch_size):
        batch = pad_collate([features[i] for i in idx], pad_id)
        logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)).logits
        probs[idx] = torch.softmax(logits.float(), dim=-1).cpu()
    model.train(was_training)
    return probs


def training_metrics(probs: torch.Tensor, gold: list[int]) -> dict[str, float]:
    """The flat numbers logged during training: mean cross-entropy plus the scores of
    :func:`finsent_cli.core.eval.metrics.classification_metrics` (accuracy, macro / weighted F1, ECE,
    per-class F1)."""
    from finsent_cli.core.eval.metrics import classification_metrics

    gold_t = torch.tensor(gold)
    loss = torch.nn.functional.nll_loss(torch.log(probs.clamp(min=1e-12)), gold_t).item()
    full = classification_metrics(gold_t.numpy(), probs.float().cpu().numpy())
    out = {"loss": loss, **{k: full[k] for k in ("accuracy", "macro_f1", "weighted_f1", "ece")}}
    out.update({f"f1_{label}": full["per_class"][label]["f1"] for label in LABELS})
    return out


# ------------------------------------------------------------------------------------- run folder


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: tree}


def recipe_differences(old_yaml: str, cfg: FinetuneRecipe) -> list[str]:
    """Dotted keys whose value differs between a run's ``recipe.yaml`` and ``cfg`` (ignoring resumable ones)."""
    import yaml

    old, new = _flatten(yaml.safe_load(old_yaml) or {}), _flatten(yaml.safe_load(recipe_to_yaml(cfg)))
    keys = sorted(set(old) | set(new))
    return [k for k in keys if k not in RESUMABLE_CHANGES and old.get(k) != new.get(k)]


def prepare_run_dir(run_dir: Path, fresh: bool) -> None:
    """Create ``run_dir``, or empty it for ``fresh``; refuse a non-empty folder that is not a run.

    Raises:
        FinsentError: ``run_dir`` is a file or a non-empty folder without ``recipe.yaml``.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise FinsentError(f"output_dir: {run_dir} is a file")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not (run_dir / "recipe.yaml").exists():
        raise FinsentError(f"output_dir: {run_dir} is not empty and is not a finsent run folder; choose another output_dir")
    if fresh and run_dir.is_dir():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def check_resumable(run_dir: Path, cfg: FinetuneRecipe) -> None:
    """Raise a :class:`FinsentError` listing the recipe keys that changed since the run started."""
    recipe = run_dir / "recipe.yaml"
    if not recipe.exists():
        return
    diff = recipe_differences(recipe.read_text(encoding="utf-8"), cfg)
    if diff:
        raise FinsentError(
            f"{run_dir}: the recipe differs from the one this run started with ({', '.join(diff)}); "
            "restore it, pick another output_dir, or pass --fresh to start over"
        )


def point_latest(run_dir: Path) -> None:
    """Make ``<parent>/latest`` a symlink to ``run_dir`` (or write ``<parent>/LATEST`` where links fail)."""
    link = run_dir.parent / "latest"
    try:
        if link.is_symlink() or link.exists():
            if not link.is_symlink():
                return  # a real folder named 'latest': leave it alone
            link.unlink()
        os.symlink(run_dir.name, link, target_is_directory=True)
    except OSError:
        atomic_write_text(run_dir.parent / "LATEST", str(run_dir.resolve()) + "\n")


def write_misclassified(path: Path, rows: list[dict[str, Any]], probs: torch.Tensor) -> int:
    """Write wrong validation predictions (text, gold, predicted, confidence), most confident first."""
    conf, pred = probs.max(dim=-1)
    predicted = [LABELS[int(p)] for p in pred]
    wrong = [(float(conf[i]), r["text"], r["label"], predicted[i]) for i, r in enumerate(rows) if predicted[i] != r["label"]]
    wrong.sort(key=lambda w: -w[0])
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["text", "gold", "predicted", "confidence"])
    writer.writerows([[text, gold, p, f"{c:.4f}"] for c, text, gold, p in wrong])
    atomic_write_text(path, buf.getvalue())
    return len(wrong)


# ----------------------------------------------------------------------------------------- run


def run_finetune(cfg: FinetuneRecipe, reporter: Reporter | None = None, *, fresh: bool = False) -> FinetuneResult:
    """Fine-tune per ``cfg``; resume from the newest checkpoint in ``cfg.output_dir`` unless ``fresh``.

    Args:
        cfg: the validated recipe.
        reporter: progress and log lines.
        fresh: delete an existing run folder and start over.

    Returns:
        Folders, counters and the metrics of ``best/`` on each split.

    Raises:
        FinsentError: bad data, backbone not loadable, a non-run output folder, or a recipe that
            changed since the run in ``output_dir`` started.
    """
    from accelerate.utils import set_seed
    from transformers import AutoTokenizer

    reporter = reporter or NullReporter()
    run_dir = Path(cfg.output_dir)
    try:
        backbone = resolve_model_path(cfg.model.backbone)
    except FinsentError as exc:
        raise FinsentError(f"model.backbone: {exc.message}") from None
    splits = load_examples(cfg.data)

    accelerator = make_accelerator(cfg.train, run_dir)
    main = accelerator.is_main_process
    if main:
        prepare_run_dir(run_dir, fresh)
    accelerator.wait_for_everyone()
    resume = latest_checkpoint(run_dir)
    if resume is not None:
        check_resumable(run_dir, cfg)

    try:
        tokenizer = AutoTokenizer.from_pretrained(resume or backbone)
    except (OSError, ValueError) as exc:
        raise FinsentError(f"model.backbone: cannot load a tokenizer from '{backbone}': {str(exc).splitlines()[0]}") from None
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    features = {name: tokenize_rows(tokenizer, rows, cfg.model.max_length) for name, rows in splits.items()}
    weights = class_weights(cfg.model.class_weights, [f["label"] for f in features["train"]])
    meta = {
        "task": "classification", "adapter": cfg.model.adapter, "base_model": cfg.model.backbone, "base_model_path": backbone,
        "max_length": cfg.model.max_length, "pooling": cfg.model.pooling, "dropout": cfg.model.dropout,
        "backbone_dropout": cfg.model.backbone_dropout, "labels": list(LABELS), "run": str(run_dir),
    }  # fmt: skip

    set_seed(cfg.train.seed)
    model = _build_model(cfg, backbone, resume)

    def save_model(m: torch.nn.Module, folder: Path) -> None:
        m.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        atomic_write_json(folder / META_FILE, meta)

    def loss_fn(m: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        w = weights.to(logits.device) if weights is not None else None
        return torch.nn.functional.cross_entropy(logits.float(), batch["labels"], weight=w)

    eval_bs = cfg.train.eval_batch_size or 2 * cfg.train.batch_size
    valid_gold = [f["label"] for f in features["valid"]]

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        return training_metrics(predict_probs(m, features["valid"], pad_id, eval_bs, accelerator.device), valid_gold)

    if main and resume is None:
        write_resolved_recipe(cfg, run_dir)
        # Both forms of a prepared text (cleaned and raw), so eval finds overlap with raw or prepared files.
        hashes = sorted({text_hash(r[k]) for r in splits["train"] for k in ("text", "raw_text") if r.get(k)})
        atomic_write_json(run_dir / "train_hashes.json", {"algorithm": "sha256-normalised", "hashes": hashes})
    job = TrainJob(
        model=model, train_set=features["train"], collate=lambda fs: pad_collate(fs, pad_id), loss_fn=loss_fn,
        save_model=save_model, evaluate=evaluate, lengths=[len(f["input_ids"]) for f in features["train"]],
    )  # fmt: skip
    result = train(
        job, cfg.train, cfg.optim, cfg.sched, run_dir, accelerator,
        metric=cfg.train.metric, metric_mode=cfg.metric_mode, resume_from=resume, reporter=reporter,
    )  # fmt: skip

    final: dict[str, dict[str, float]] = {}
    n_wrong = 0
    if main:
        best_dir = result.best_dir if result.best_dir.exists() else result.last_dir
        best, _, _ = build_classifier_from_folder(best_dir)
        best.to(accelerator.device)
        for name in ("valid", "test"):
            if name not in features:
                continue
            probs = predict_probs(best, features[name], pad_id, eval_bs, accelerator.device)
            final[name] = training_metrics(probs, [f["label"] for f in features[name]])
            event = {"event": "final", "split": name, "step": result.state.step, "best_step": result.state.best_step}
            with (run_dir / METRICS_FILE).open("a", encoding="utf-8") as fh:
                fh.write(json.dumps({**event, **final[name]}) + "\n")
            if name == "valid":
                n_wrong = write_misclassified(run_dir / "misclassified_valid.csv", splits["valid"], probs)
        point_latest(run_dir)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return FinetuneResult(
        run_dir=run_dir, best_dir=result.best_dir, last_dir=result.last_dir, best_step=result.state.best_step,
        steps=result.state.step, stop_reason=result.state.stop_reason, seconds=result.seconds,
        resumed_from=resume, final=final, misclassified=n_wrong,
    )  # fmt: skip


def _build_model(cfg: FinetuneRecipe, backbone: str, resume: Path | None) -> torch.nn.Module:
    """The model to train: from a checkpoint when resuming, else pretrained backbone + new head (+ LoRA)."""
    m = cfg.model
    if m.adapter == "lora":
        from peft import LoraConfig, PeftModel, get_peft_model

        base = new_classifier(backbone, m.pooling, m.dropout, m.backbone_dropout)
        if resume is not None:
            return PeftModel.from_pretrained(base, resume, is_trainable=True)
        lora = LoraConfig(
            r=m.lora.r, lora_alpha=m.lora.alpha, lora_dropout=m.lora.dropout, target_modules=list(m.lora.target_modules),
            modules_to_save=["classifier"],
        )  # fmt: skip
        try:
            return get_peft_model(base, lora)
        except ValueError as exc:
            raise FinsentError(f"model.lora.target_modules: {str(exc).splitlines()[0]}") from None
    if resume is not None:
        model, _, _ = build_classifier_from_folder(resume)
        return model.train()
    return new_classifier(backbone, m.pooling, m.dropout, m.backbone_dropout)


def merge_adapter(source: Path, output: Path) -> Path:
    """Merge a LoRA adapter into its base model and write a plain model folder.

    Args:
        source: a run folder (its ``best/``, else ``last/``) or a LoRA model folder.
        output: the merged model folder to write (replaced atomically).

    Returns:
        ``output``.

    Raises:
        FinsentError: ``source`` is missing or holds no LoRA adapter.
    """
    source = Path(source)
    folder = source
    if (source / "recipe.yaml").exists() or (source / "best").is_dir():
        folder = source / "best" if (source / "best").is_dir() else source / "last"
    if not (folder / "adapter_config.json").exists():
        raise FinsentError(f"{folder}: no LoRA adapter here (adapter_config.json missing); nothing to merge")
    model, tokenizer, meta = build_classifier_from_folder(folder)
    merged = model.merge_and_unload()
    with atomic_dir(output) as tmp:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / META_FILE, {**meta, "adapter": "none", "merged_from": str(folder)})
    return output
