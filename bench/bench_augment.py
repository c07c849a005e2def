"""Augmentation benchmark: does `augment:` (random deletion and swap, ``core.data.augment``) help?

Fine-tunes MiniLM with ``recipes/finetune_phrasebank.yaml`` on PhraseBank 50agree with and without an
``augment`` section, on a small training set (``--small`` sentences drawn at random, stratified by label,
one draw per seed) and on the full training split, and scores every run's ``best/`` (picked on valid) on
the valid and test splits. Both arms of a comparison share the subset, the seed and every other setting; a
third arm trains on the plain data for as many optimizer steps as the augmented run (more epochs, the
recipe's early stopping on valid), so a gain is not just longer training.

    FINSENT_DATA_DIR=/work/shared/data OMP_NUM_THREADS=1 python bench/bench_augment.py --out runs/bench_augment

Resumable: a finished run is read back from ``<out>/<name>/result.json``. Prints a Markdown table and
writes ``<out>/results.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from finsent_cli.config.finetune import FinetuneRecipe
from finsent_cli.config.loader import load_recipe, resolve_data_dir
from finsent_cli.core.flows.finetune import run_finetune

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "finetune_phrasebank.yaml"


def stratified_subset(path: Path, n: int, seed: int) -> list[dict[str, str]]:
    """``n`` rows of a text,label CSV, each label in its share of the file, drawn with ``seed``."""
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    rng = random.Random(seed)
    by_label: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r)
    out: list[dict[str, str]] = []
    for label, group in sorted(by_label.items()):
        out += rng.sample(group, round(n * len(group) / len(rows)))
    rng.shuffle(out)
    return out


def run(name: str, out: Path, overrides: list[str]) -> dict:
    """One fine-tuning run (or its stored result)."""
    done = out / name / "result.json"
    if done.is_file():
        return json.loads(done.read_text(encoding="utf-8"))
    cfg = load_recipe(RECIPE, FinetuneRecipe, [*overrides, f"output_dir={out / name / 'run'}"])
    result = run_finetune(cfg)
    record = {
        "name": name, "overrides": overrides, "seconds": round(result.seconds, 1), "best_step": result.best_step,
        **{f"{split}_{m}": result.final[split][m] for split in ("valid", "test") for m in ("accuracy", "macro_f1")},
    }  # fmt: skip
    done.write_text(json.dumps(record, indent=1), encoding="utf-8")
    print(json.dumps(record), flush=True)
    return record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--small", type=int, default=500, help="sentences in the small training set")
    ap.add_argument("--seeds", type=int, default=3, help="seeds (subset draws) of the small-set comparison")
    ap.add_argument("--small-epochs", type=int, default=6)
    ap.add_argument("--small-copies", type=int, default=4, help="augmented copies per sentence on the small set")
    ap.add_argument("--full-copies", type=int, default=1, help="augmented copies per sentence on the full set")
    ap.add_argument("--deletion", type=float, default=0.1)
    ap.add_argument("--swap", type=float, default=0.1)
    ap.add_argument("--skip-full", action="store_true")
    ap.add_argument("--skip-full-control", action="store_true", help="no same-steps control on the full set")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    splits = resolve_data_dir() / "phrasebank" / "splits"
    aug = [f"augment.deletion={args.deletion}", f"augment.swap={args.swap}"]
    rows: list[tuple[str, str, dict]] = []
    for seed in range(args.seeds):
        subset = args.out / f"small_seed{seed}.csv"
        if not subset.is_file():
            with subset.open("w", newline="", encoding="utf-8") as fh:
                w = csv.DictWriter(fh, fieldnames=["text", "label"])
                w.writeheader()
                w.writerows(stratified_subset(splits / "50agree_train.csv", args.small, seed))
        common = [f"data.train={subset}", f"train.epochs={args.small_epochs}", f"train.seed={seed}"]
        rows.append((f"{args.small} sentences", "none", run(f"small_seed{seed}_plain", args.out, common)))
        copies = [*aug, f"augment.copies={args.small_copies}"]
        small = f"{args.small} sentences"
        rows.append((small, f"x{args.small_copies}", run(f"small_seed{seed}_aug", args.out, common + copies)))
        # the control: as many optimizer steps as the augmented run, on the plain data (more epochs)
        longer = [common[0], f"train.epochs={args.small_epochs * (1 + args.small_copies)}", common[2]]
        rows.append((small, "none, same steps", run(f"small_seed{seed}_plain_long", args.out, longer)))
    if not args.skip_full:
        rows.append(("full (3,388)", "none", run("full_plain", args.out, [])))
        copies = [*aug, f"augment.copies={args.full_copies}"]
        rows.append(("full (3,388)", f"x{args.full_copies}", run("full_aug", args.out, copies)))
        if not args.skip_full_control:
            longer = [f"train.epochs={4 * (1 + args.full_copies)}"]
            rows.append(("full (3,388)", "none, same steps", run("full_plain_long", args.out, longer)))

    lines = [
        f"augment: deletion {args.deletion}, swap {args.swap}; mean (min-max) over seeds where there are several",
        "",
        "| training set | augmented copies | runs | valid macro-F1 | test macro-F1 | test accuracy | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for data, copies in dict.fromkeys((d, c) for d, c, _ in rows):
        group = [r for d, c, r in rows if d == data and c == copies]

        def cell(key: str, group: list[dict] = group) -> str:
            values = [g[key] for g in group]
            mean = statistics.fmean(values)
            return f"{mean:.4f}" if len(values) == 1 else f"{mean:.4f} ({min(values):.4f}-{max(values):.4f})"

        secs = statistics.fmean(g["seconds"] for g in group)
        lines.append(
            f"| {data} | {copies} | {len(group)} | {cell('valid_macro_f1')} | {cell('test_macro_f1')} | {cell('test_accuracy')} | {secs:.0f} |"
        )
    text = "\n".join(lines) + "\n"
    (args.out / "results.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
