"""What pretraining buys: finsent's T5 fine-tuned from a `finsent pretrain` run vs from random initialisation.

For each head (``classification``, ``text2text``), each training set (PhraseBank 50agree ``full`` training
split, and a fixed stratified ``350``-sentence subset of it) and each initialisation (``pretrained``,
``random``), runs ``finsent finetune recipes/finetune_t5_<head>.yaml`` through the CLI, then reads the test
accuracy and macro-F1 of ``best/`` (picked on validation macro-F1) from the run's ``metrics.jsonl``. MiniLM
(``recipes/finetune_phrasebank.yaml``) on the same two training sets is the reference. Runs that finished
are not run again (the CLI resumes them), so the script can be stopped and restarted.

    FINSENT_DATA_DIR=../shared/data python bench/bench_t5_quality.py --backbone runs/pretrain_t5_tiny --out runs/bench_t5
    python bench/bench_t5_quality.py --backbone runs/pretrain_t5_tiny --out runs/bench_t5 --only cls --lr 1e-3

Prints a Markdown table and writes ``<out>/results.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUBSET_EPOCHS = 25  # 350 sentences are 11 batches: about as many steps as 3 epochs of the full split


def subset(train: Path, n: int, out: Path, seed: int = 13) -> Path:
    """A stratified random sample of ``n`` rows of ``train`` (label shares kept), written as CSV."""
    rows = list(csv.DictReader(train.open(encoding="utf-8")))
    by_label: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_label[r["label"]].append(r)
    rng = random.Random(seed)
    picked: list[dict] = []
    for label, group in sorted(by_label.items()):
        picked += rng.sample(group, round(n * len(group) / len(rows)))
    rng.shuffle(picked)
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(picked)
    return out


def final_metrics(run: Path) -> dict[str, dict[str, float]]:
    """Split -> metrics of ``best/`` from the run's ``final`` events."""
    events = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return {e["split"]: e for e in events if e["event"] == "final"}


def finetune(recipe: str, out: Path, overrides: list[str], data_dir: Path) -> tuple[dict, float]:
    """Run (or resume) one fine-tuning; returns the final metrics and the wall time of this call."""
    start = time.monotonic()
    cmd = [
        sys.executable,
        "-m",
        "finsent_cli",
        "finetune",
        str(REPO / "recipes" / recipe),
        f"output_dir={out}",
        *overrides,
    ]
    res = subprocess.run([*cmd, "--data-dir", str(data_dir), "-q"], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"{out}: {res.stderr.strip()}")
    return final_metrics(out), time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", type=Path, required=True, help="a finsent pretrain run folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--only", nargs="+", default=["cls", "text2text", "minilm"], choices=["cls", "text2text", "minilm"]
    )
    parser.add_argument("--sets", nargs="+", default=["full", "350"], choices=["full", "350"])
    parser.add_argument("--inits", nargs="+", default=["pretrained", "random"], choices=["pretrained", "random"])
    parser.add_argument("--lr", type=float, help="override the recipes' learning rate (T5 runs)")
    parser.add_argument("--tag", default="", help="appended to run folder names (lr sweeps)")
    args = parser.parse_args()
    data_dir = Path(os.environ.get("FINSENT_DATA_DIR", REPO.parent / "shared" / "data")).resolve()
    splits = data_dir / "phrasebank" / "splits"
    args.out.mkdir(parents=True, exist_ok=True)
    train_files = {
        "full": splits / "50agree_train.csv",
        "350": subset(splits / "50agree_train.csv", 350, args.out / "train_350.csv"),
    }
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    jobs = []
    for what in args.only:
        for name in args.sets:
            inits = ["-"] if what == "minilm" else args.inits
            for init in inits:
                over = [f"data.train={train_files[name]}"]
                if name == "350":
                    over += [f"train.epochs={SUBSET_EPOCHS}", "train.patience=5"]
                if what == "minilm":
                    jobs.append((f"minilm_{name}", "finetune_phrasebank.yaml", over))
                    continue
                over += [f"model.backbone={args.backbone}", f"model.init={init}"]
                if args.lr is not None:
                    over.append(f"optim.lr={args.lr}")
                jobs.append((f"{what}_{name}_{init}{args.tag}", f"finetune_t5_{what}.yaml", over))
    for key, recipe, over in jobs:
        metrics, seconds = finetune(recipe, args.out / key, over, data_dir)
        results[key] = {
            "overrides": over,
            "valid": metrics.get("valid"),
            "test": metrics.get("test"),
            "seconds": round(seconds),
        }
        results_path.write_text(json.dumps(results, indent=2))
        v, t = metrics["valid"], metrics["test"]
        print(
            f"| {key} | {v['accuracy']:.3f} / {v['macro_f1']:.3f} | {t['accuracy']:.3f} / {t['macro_f1']:.3f} | {seconds:.0f} s |",
            flush=True,
        )


if __name__ == "__main__":
    main()
