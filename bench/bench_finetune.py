"""Fine-tuning quality benchmark: `finsent finetune` against the Hugging Face `Trainer`.

Both train the same model (MiniLM backbone + finsent's mean-pooling head, built by
``core.models.hf_encoder.model.new_classifier``) on the same split files with the same hyper-parameters (AdamW,
linear schedule with warmup, batch, epochs, grad clip, seed, length-grouped batches, best checkpoint by validation macro-F1,
early stopping patience), and both are scored by the same scikit-learn metrics.

    FINSENT_DATA_DIR=/work/shared/data python bench/bench_finetune.py --task phrasebank --out /tmp/bench
    python bench/bench_finetune.py --task twitter --which ours --out /tmp/bench train.epochs=2

Extra arguments are dotted overrides of the task's recipe (``recipes/finetune_<task>.yaml``). Prints a
Markdown table and writes ``<out>/<task>_results.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from finsent_cli.config.finetune import FinetuneRecipe  # noqa: E402
from finsent_cli.config.loader import load_recipe, resolve_data_dir  # noqa: E402
from finsent_cli.core.data.examples import load_examples, tokenize_rows  # noqa: E402
from finsent_cli.core.eval.metrics import training_metrics  # noqa: E402
from finsent_cli.core.flows.finetune import run_finetune  # noqa: E402
from finsent_cli.core.inference.classifier import Classifier  # noqa: E402
from finsent_cli.core.inference.loading import load_classifier  # noqa: E402
from finsent_cli.core.models.hf_encoder.model import new_classifier  # noqa: E402
from finsent_cli.core.models.hub import resolve_model_path  # noqa: E402
from finsent_cli.labels import ID2LABEL, LABEL2ID  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def extra_test_sets(task: str, data_dir: Path) -> dict[str, Path]:
    """Held-out files scored beside the recipe's own valid/test splits."""
    if task == "phrasebank":
        return {"allagree_test": data_dir / "phrasebank" / "splits" / "allagree_test.csv"}
    return {}


def score(clf: Classifier, sets: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
    """Metrics of the classifier on every named set of rows."""
    return {
        name: training_metrics(clf.predict_proba([r["text"] for r in rows], 64), [LABEL2ID[r["label"]] for r in rows])
        for name, rows in sets.items()
    }


def run_ours(cfg: FinetuneRecipe, sets: dict[str, list[dict]]) -> dict:
    t0 = time.monotonic()
    result = run_finetune(cfg, fresh=True)
    wall = time.monotonic() - t0
    return {"train_seconds": result.seconds, "wall_seconds": wall, "steps": result.steps, "best_step": result.best_step,
            "metrics": score(load_classifier(result.best_dir), sets)}  # fmt: skip


def run_hf_trainer(cfg: FinetuneRecipe, sets: dict[str, list[dict]], out_dir: Path) -> dict:
    """The same model and hyper-parameters through ``transformers.Trainer``."""
    from datasets import Dataset
    from transformers import AutoTokenizer, DataCollatorWithPadding, EarlyStoppingCallback, Trainer, TrainingArguments

    backbone = resolve_model_path(cfg.model.backbone)
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    splits = load_examples(cfg.data)
    ds = {
        name: Dataset.from_list([{"input_ids": f["input_ids"], "labels": f["label"], "length": len(f["input_ids"])} for f in tokenize_rows(tokenizer, splits[name], cfg.model.max_length)])
        for name in ("train", "valid")
    }  # fmt: skip
    torch.manual_seed(cfg.train.seed)
    model = new_classifier(backbone, cfg.model.pooling, cfg.model.dropout, cfg.model.backbone_dropout)
    steps_per_epoch = math.ceil(len(ds["train"]) / cfg.train.batch_size / cfg.train.grad_accum)
    total = cfg.train.epochs * steps_per_epoch
    warmup = cfg.sched.warmup_steps if cfg.sched.warmup_steps is not None else math.ceil((cfg.sched.warmup_ratio or 0) * total)

    def metrics(pred) -> dict[str, float]:
        logits, labels = pred
        return training_metrics(torch.softmax(torch.tensor(logits), -1).numpy(), list(labels))

    args = TrainingArguments(
        output_dir=str(out_dir), learning_rate=cfg.optim.lr, weight_decay=cfg.optim.weight_decay,
        adam_beta1=cfg.optim.betas[0], adam_beta2=cfg.optim.betas[1], adam_epsilon=cfg.optim.eps,
        max_grad_norm=cfg.optim.grad_clip or 0.0, lr_scheduler_type=cfg.sched.name if cfg.sched.name != "inverse_sqrt" else "inverse_sqrt",
        warmup_steps=warmup, num_train_epochs=cfg.train.epochs, per_device_train_batch_size=cfg.train.batch_size,
        per_device_eval_batch_size=64, gradient_accumulation_steps=cfg.train.grad_accum, eval_strategy="epoch",
        save_strategy="epoch", save_total_limit=1, load_best_model_at_end=True, metric_for_best_model=cfg.train.metric,
        greater_is_better=cfg.metric_mode == "max", seed=cfg.train.seed, report_to="none", use_cpu=True,
        dataloader_num_workers=0, logging_steps=cfg.train.log_every, disable_tqdm=True,
        train_sampling_strategy="group_by_length" if cfg.train.group_by_length else "random",
    )  # fmt: skip
    callbacks = [EarlyStoppingCallback(cfg.train.patience)] if cfg.train.patience else []
    trainer = Trainer(
        model=model, args=args, train_dataset=ds["train"], eval_dataset=ds["valid"],
        data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=metrics, callbacks=callbacks,
    )  # fmt: skip
    t0 = time.monotonic()
    trainer.train()
    seconds = time.monotonic() - t0
    return {"train_seconds": seconds, "wall_seconds": seconds, "steps": trainer.state.global_step,
            "best_step": int(Path(trainer.state.best_model_checkpoint or "x-0").name.split("-")[-1] or 0),
            "metrics": score(Classifier(trainer.model.eval(), tokenizer, dict(ID2LABEL), cfg.model.max_length), sets)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=["phrasebank", "twitter"], default="phrasebank")
    ap.add_argument("--which", default="ours,hf", help="comma list of ours, hf")
    ap.add_argument("--out", type=Path, default=Path("/tmp/finsent_bench"))
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()
    data_dir = resolve_data_dir(None)
    out = a.out / a.task
    cfg = load_recipe(REPO / "recipes" / f"finetune_{a.task}.yaml", FinetuneRecipe, [*a.overrides, f"output_dir={out / 'ours'}"])
    if cfg.model.class_weights != "none" or cfg.model.adapter != "none":
        raise SystemExit("the HF Trainer comparison covers unweighted full fine-tuning only")
    from finsent_cli.core.data.readers import read_table

    splits = load_examples(cfg.data)
    sets = {name: rows for name, rows in splits.items() if name != "train"}
    for name, path in extra_test_sets(a.task, data_dir).items():
        sets[name] = [{"text": r.text, "label": str(r.label)} for r in read_table(path)[0]]
    results = {
        "task": a.task, "overrides": a.overrides, "date": time.strftime("%Y-%m-%d"),
        "cpu": subprocess.run(["sh", "-c", "lscpu | grep 'Model name' | cut -d: -f2"], capture_output=True, text=True).stdout.strip(),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
    }  # fmt: skip
    for which in a.which.split(","):
        print(f"== {which}", flush=True)
        results[which] = run_ours(cfg, sets) if which == "ours" else run_hf_trainer(cfg, sets, out / "hf")
        (out).mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=2))
        print(json.dumps(results[which], indent=1), flush=True)
    print(f"\n| run | split | accuracy | macro-F1 | train time |\n|---|---|---|---|---|")
    for which in a.which.split(","):
        r = results[which]
        for split, m in r["metrics"].items():
            print(f"| {which} | {split} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | {r['train_seconds'] / 60:.1f} min |")


if __name__ == "__main__":
    main()
