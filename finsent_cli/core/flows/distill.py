"""`finsent distill`: a small student learns from a large teacher on unlabelled news and the labelled data.

After Hinton et al. 2015 ("Distilling the Knowledge in a Neural Network") and, for sentiment with a
small BERT student, Sanh et al. 2019 (DistilBERT) and Turc et al. 2019 ("Well-Read Students Learn
Better"): the teacher (one or several finsent model folders, probabilities averaged) labels a sample of
the unlabelled corpus and the labelled training texts with its logits (``core.distill.teacher``: cached,
resumable, length-sorted batches under ``inference_mode``); the student trains on the softened teacher
distribution of every text plus the gold label of the labelled ones (``core.distill.loss``).

Everything else is `finsent finetune`'s flow (``core.flows.finetune``): the student's model kind, the loop
with resume, early stopping and ``best/`` / ``last/`` on the labelled validation split, calibration, the
final scores; this module only supplies the objective. The result is an ordinary model folder.
"""

from __future__ import annotations

import gc
import json
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finsent_cli.config.distill import DistillRecipe
from finsent_cli.core.data.clean import text_hash
from finsent_cli.core.data.corpus import corpus_files, sample_corpus
from finsent_cli.core.distill.loss import distillation_loss
from finsent_cli.core.distill.teacher import (
    load_teacher,
    soft_targets,
    teacher_logits,
    texts_fingerprint,
)
from finsent_cli.core.eval.metrics import training_metrics
from finsent_cli.core.flows.finetune import FinetuneResult, FinetuneSetup, TrainingSet, run_finetune
from finsent_cli.core.inference.classifier import map_labels
from finsent_cli.core.progress import NullReporter, Reporter
from finsent_cli.core.runs import model_fingerprint, read_meta, resolve_model_folder
from finsent_cli.errors import FinsentError
from finsent_cli.labels import LABEL2ID, LABELS


def check_teachers(cfg: DistillRecipe) -> list[Path]:
    """The teachers' model folders, checked from their files before any data is read or model loaded.

    Raises:
        FinsentError: naming ``teacher.models[i]``: not a model folder, not a sentiment classifier, labels
            other than the student's, or a target-conditioned model.
    """
    folders = []
    for i, path in enumerate(cfg.teacher.models):
        key = f"teacher.models[{i}]"
        try:
            folder = resolve_model_folder(path)
        except FinsentError as exc:
            raise FinsentError(f"{key}: {exc.message}") from None
        meta = read_meta(folder)
        if meta.get("task", "classification") != "classification":
            raise FinsentError(f"{key}: {folder} is a '{meta['task']}' model, not a sentiment classifier; fine-tune it first")
        if meta.get("targets"):
            raise FinsentError(f"{key}: {folder} is target-conditioned (sentiment toward a named company); the corpus names no targets, so it cannot teach")
        config = folder / "config.json"
        try:
            id2label = json.loads(config.read_text(encoding="utf-8")).get("id2label") if config.is_file() else None
        except (ValueError, UnicodeDecodeError, AttributeError):
            raise FinsentError(f"{key}: {config}: not a readable JSON config") from None
        if id2label:
            try:
                map_labels(id2label, meta.get("label_map"))
            except FinsentError as exc:
                raise FinsentError(f"{key}: {folder}: {exc.message}; the student learns {', '.join(LABELS)}") from None
        folders.append(folder)
    return folders


def run_distill(cfg: DistillRecipe, reporter: Reporter | None = None, *, fresh: bool = False, **finetune: Any) -> FinetuneResult:
    """Distil the recipe's teacher(s) into its student; resume from the newest checkpoint unless ``fresh``.

    ``finetune`` passes on to :func:`run_finetune` (``latest_dir``, ``on_evaluate``).

    Returns:
        The fine-tuning result of the student; its ``final`` also holds the teacher's scores on the
        labelled validation and test splits (``teacher:valid``, ``teacher:test``).

    Raises:
        FinsentError: a bad teacher (see :func:`check_teachers`), corpus or labelled data, or what
            `finsent finetune` refuses.
        KeyboardInterrupt: Ctrl-C, after a checkpoint (or the finished chunks of the labelling) was saved.
    """
    reporter = reporter or NullReporter()
    folders = check_teachers(cfg)
    files, _ = corpus_files(cfg.corpus.paths, "corpus.paths")
    return run_finetune(cfg, reporter, fresh=fresh, objective=partial(_objective, cfg, files, folders), **finetune)


def _objective(cfg: DistillRecipe, files: list[Path], folders: list[Path], setup: FinetuneSetup) -> TrainingSet:
    """Labelled training texts with their gold label and the teacher's soft targets, and corpus texts with
    the soft targets alone; the loss of ``core.distill.loss``."""
    reporter, kind, tokenizer, acc = setup.reporter, setup.kind, setup.tokenizer, setup.accelerator
    labelled = {name: [r["text"] for r in rows] for name, rows in setup.splits.items()}
    exclude = {text_hash(r[k]) for rows in setup.splits.values() for r in rows for k in ("text", "raw_text") if r.get(k)}
    corpus, counts = sample_corpus(files, cfg.corpus.lines, min_words=cfg.corpus.min_words, seed=cfg.corpus.seed, exclude=exclude)
    if not corpus:
        raise FinsentError(f"corpus.paths: no usable line ({counts['read']:,} read, {counts['short']:,} shorter than {cfg.corpus.min_words} words, {counts['excluded']:,} in the labelled data)")
    reporter.log(
        f"corpus: {len(corpus):,} lines drawn of {counts['read']:,} ({counts['short']:,} too short, "
        f"{counts['duplicate']:,} duplicates, {counts['excluded']:,} in the labelled data left out)"
    )
    order = ["train", "valid", "test"]
    chosen = cfg.distill.teacher_sources
    taught = [i for i, r in enumerate(setup.splits["train"]) if chosen is None or r.get("source", "train") in chosen]
    if chosen is not None:
        reporter.log(f"teacher labels {len(taught):,} of {len(labelled['train']):,} training texts (distill.teacher_sources: {', '.join(chosen)}); the others learn from their gold labels")
    texts = [labelled["train"][i] for i in taught] + corpus + [t for name in order[1:] for t in labelled.get(name, [])]
    fingerprints = [model_fingerprint(folder) for folder in folders]
    logits = []
    for i, (folder, fingerprint) in enumerate(zip(folders, fingerprints, strict=True)):
        load = partial(load_teacher, folder, f"teacher.models[{i}]", cfg.teacher.device)
        logits.append(teacher_logits(
            folder, texts, load, cfg.teacher.cache_dir, batch_size=cfg.teacher.batch_size, reporter=reporter,
            label=f"teacher {_name(Path(cfg.teacher.models[i]))}", rank=acc.process_index, world=acc.num_processes,
            barrier=acc.wait_for_everyone, fingerprint=fingerprint,
        ))  # fmt: skip
        gc.collect()  # the teacher is no longer referenced: its memory goes before the student trains
    n_taught, n_soft = len(taught), len(taught) + len(corpus)
    soft = soft_targets([z[:n_soft] for z in logits], cfg.distill.temperature)  # (n_soft, 3)
    # a training text the teacher does not label learns from its gold label alone (``taught`` 0 masks its
    # soft term in the loss; its placeholder soft target is the gold label)
    train_soft = np.eye(len(LABELS), dtype=soft.dtype)[[LABEL2ID[r["label"]] for r in setup.splits["train"]]]  # (n_train, 3)
    train_soft[taught] = soft[:n_taught]
    train_taught = np.zeros(len(train_soft), dtype=np.float32)
    train_taught[taught] = 1.0
    reference, start = {}, n_soft
    for name in order[1:]:
        if name in labelled:
            probs = soft_targets([z[start : start + len(labelled[name])] for z in logits], 1.0)
            reference[f"teacher:{name}"] = training_metrics(probs, [LABEL2ID[r["label"]] for r in setup.splits[name]])
            start += len(labelled[name])
    if "teacher:valid" in reference:
        m = reference["teacher:valid"]
        reporter.log(f"teacher on valid: accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}")

    unlabelled = kind.features(tokenizer, [{"text": t, "label": LABELS[0]} for t in corpus], cfg.model)
    examples = [{**f, "soft": train_soft[i], "taught": train_taught[i]} for i, f in enumerate(setup.features["train"])]
    examples += [{**f, "label": -100, "soft": soft[n_taught + i], "taught": 1.0} for i, f in enumerate(unlabelled)]
    weights, temperature, alpha = setup.weights, cfg.distill.temperature, cfg.distill.alpha

    def collate(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = kind.collate(features, tokenizer)
        batch["class_labels"] = torch.tensor([f["label"] for f in features], dtype=torch.long)  # (B,), -100: corpus
        batch["soft"] = torch.from_numpy(np.stack([f["soft"] for f in features]))  # (B, 3)
        batch["taught"] = torch.tensor([f["taught"] for f in features], dtype=torch.float32)  # (B,)
        return batch

    def loss_fn(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = kind.class_logits(model, batch["input_ids"], batch["attention_mask"])  # (B, 3)
        return distillation_loss(logits, batch["soft"], batch["class_labels"], temperature, alpha, weights, batch["taught"])

    meta = {
        "distilled_from": [_name(Path(p)) for p in cfg.teacher.models],
        "distill": {"temperature": temperature, "alpha": alpha, "corpus_lines": len(corpus), **({"teacher_sources": chosen} if chosen is not None else {})},
    }  # fmt: skip
    data = {"examples": len(examples), "texts_sha256": texts_fingerprint(texts), "teachers_sha256": fingerprints}
    return TrainingSet(
        examples=examples, collate=collate, loss_fn=loss_fn, meta=meta, reference=reference, texts=corpus, data=data,
        data_key="teacher.models / corpus",
    )  # fmt: skip


def _name(path: Path) -> str:
    """How a model folder records its teacher: the run's name, not a path of this machine."""
    return path.parent.name if path.name in ("best", "last") else path.name
