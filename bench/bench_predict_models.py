"""Inference speed and quality of several finished model folders, side by side in one process.

Each model classifies the same labelled file (length-sorted batches under ``inference_mode``, through
``load_classifier``, i.e. what ``finsent predict`` runs); the models take turns for ``--rounds`` rounds
so that a slower or busier stretch of the machine hurts all of them alike. Prints a Markdown table:
accuracy, macro-F1, ECE with and without the folder's temperature, sentences/s, and speed relative to
the first model.

    FINSENT_DATA_DIR=/work/shared/data OMP_NUM_THREADS=2 python bench/bench_predict_models.py \\
        --data /work/shared/data/phrasebank/splits/50agree_test.csv runs/finetune_phrasebank runs/finetune_phrasebank_mpnet
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from finsent_cli.core.eval.metrics import apply_temperature, classification_metrics  # noqa: E402
from finsent_cli.core.inference.loading import load_classifier  # noqa: E402
from finsent_cli.labels import LABEL2ID  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="model or run folders")
    ap.add_argument("--data", required=True, help="CSV with text,label")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with open(args.data, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    texts, gold = [r["text"] for r in rows], np.array([LABEL2ID[r["label"]] for r in rows])
    clfs = [load_classifier(m) for m in args.models]
    seconds = {m: [] for m in args.models}
    probs = {}
    for _ in range(args.rounds):
        for m, clf in zip(args.models, clfs):
            start = time.perf_counter()
            probs[m] = clf.predict_proba(texts, args.batch_size)
            seconds[m].append(time.perf_counter() - start)
    print(f"{len(texts)} sentences of {args.data}; torch threads {torch.get_num_threads()}; best of {args.rounds} rounds\n")
    print("| model | accuracy | macro-F1 | ECE | ECE uncalibrated | temperature | sentences/s | speed vs first |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    first = None
    for m, clf in zip(args.models, clfs):
        met = classification_metrics(gold, probs[m])
        raw = classification_metrics(gold, apply_temperature(probs[m], 1.0 / clf.temperature))
        rate = len(texts) / min(seconds[m])
        first = first or rate
        print(f"| {Path(m).name} | {met['accuracy']:.3f} | {met['macro_f1']:.3f} | {met['ece']:.3f} | {raw['ece']:.3f} "
              f"| {clf.temperature:.2f} | {rate:.1f} | {rate / first:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
