"""Several finished model folders on the four held-out sets of the distillation benchmark, side by side.

Each model (through ``load_classifier``, what ``finsent predict`` and ``eval`` run, its temperature applied)
classifies PhraseBank 50agree test, PhraseBank allagree test, Twitter financial news valid and SEntFiN test
at sentence level (each headline once, kept when all its entity labels agree). Then the models take turns
for ``--rounds`` rounds on PhraseBank 50agree test to measure sentences/s side by side. Prints a Markdown
table: accuracy / macro-F1 per set, sentences/s and the speed relative to the first model.

    FINSENT_DATA_DIR=/work/shared/data OMP_NUM_THREADS=2 python bench/bench_distill.py \\
        runs/finetune_phrasebank runs/finetune_phrasebank_dapt runs/finetune_phrasebank_mpnet runs/distill_minilm
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

from finsent_cli.core.data.examples import agreeing_texts  # noqa: E402
from finsent_cli.core.eval.metrics import classification_metrics  # noqa: E402
from finsent_cli.core.inference.loading import load_classifier  # noqa: E402
from finsent_cli.labels import LABEL2ID  # noqa: E402

SETS = {
    "PhraseBank 50agree test": "phrasebank/splits/50agree_test.csv",
    "PhraseBank allagree test": "phrasebank/splits/allagree_test.csv",
    "Twitter valid": "twitter/splits/valid.csv",
    "SEntFiN test (sentences)": "sentfin/splits/test.csv",
}


def read_set(path: Path) -> tuple[list[str], np.ndarray]:
    """Texts and gold ids; a file with a ``target`` column gives each text once, if its labels agree."""
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if rows and "target" in rows[0]:
        pairs = agreeing_texts((r["text"], r["label"]) for r in rows)
    else:
        pairs = [(r["text"], r["label"]) for r in rows]
    return [t for t, _ in pairs], np.array([LABEL2ID[label] for _, label in pairs])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="model or run folders")
    ap.add_argument("--data-dir", default=os.environ.get("FINSENT_DATA_DIR", "../shared/data"))
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    sets = {name: read_set(Path(args.data_dir) / rel) for name, rel in SETS.items()}
    clfs = [load_classifier(m) for m in args.models]
    scores = {}
    for m, clf in zip(args.models, clfs):
        for name, (texts, gold) in sets.items():
            met = classification_metrics(gold, clf.predict_proba(texts, args.batch_size))
            scores[m, name] = (met["accuracy"], met["macro_f1"])
    texts = sets["PhraseBank 50agree test"][0]
    seconds: dict[str, list[float]] = {m: [] for m in args.models}
    for _ in range(args.rounds):
        for m, clf in zip(args.models, clfs):
            start = time.perf_counter()
            clf.predict_proba(texts, args.batch_size)
            seconds[m].append(time.perf_counter() - start)
    sizes = ", ".join(f"{name} {len(t):,}" for name, (t, _) in sets.items())
    print(f"sets: {sizes}; torch threads {torch.get_num_threads()}; speed: best of {args.rounds} rounds on 50agree test\n")
    print("| model | " + " | ".join(f"{name} acc / macro-F1" for name in sets) + " | sentences/s | speed |")
    print("| --- |" + " ---: |" * (len(sets) + 2))
    first = None
    for m in args.models:
        rate = len(texts) / min(seconds[m])
        first = first or rate
        cells = " | ".join(f"{scores[m, name][0]:.4f} / {scores[m, name][1]:.4f}" for name in sets)
        print(f"| {Path(m).name} | {cells} | {rate:.1f} | {rate / first:.2f}x |")


if __name__ == "__main__":
    main()
