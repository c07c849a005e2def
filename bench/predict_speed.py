"""Inference speed and memory: `finsent predict` with each backend against transformers' pipeline.

Run by hand (not a test), after exporting the model's graphs (``finsent export MODEL --onnx --int8``)::

    FINSENT_DATA_DIR=../shared/data python bench/predict_speed.py runs/finetune_phrasebank/best

Prints a markdown report for ``docs/benchmarks.md``:

1. Speed on 10,000 headlines (Twitter train and valid tweets, then SEntFiN news titles) and on 500 paragraphs (PhraseBank sentences joined five at
   a time), side by side in one process: ``predict_input`` (what ``finsent predict`` runs, streaming to a
   file; model loading excluded) with each backend, and ``transformers.pipeline("text-classification")``
   on the same folder at batch size 1 and 64. Sentences/s and the ratio to the pipeline at batch 64.
2. Accuracy and macro-F1 of each backend on PhraseBank 50agree test.
3. Peak memory (max RSS) of ``finsent predict`` subprocesses over 100k and 1M lines; these use a tiny random
   BERT so that a million lines take a minute: the reader, chunks and writer are what is measured.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch

import finsent_cli  # noqa: F401  (registers finsent's classes with transformers' Auto classes)
from finsent_cli.core.eval.metrics import classification_metrics
from finsent_cli.core.predict.run import predict_input
from finsent_cli.labels import LABEL2ID, LABELS

BACKENDS = ("torch", "int8", "onnx", "onnx-int8")


def read_texts(path: Path, column: str = "text") -> list[str]:
    with path.open(encoding="utf-8", newline="") as fh:
        return [r[column].replace("\n", " ") for r in csv.DictReader(fh)]


def write_lines(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    return path


def time_finsent(model: str, src: Path, backend: str, out: Path) -> float:
    result = predict_input(src, model, backend=backend, output=out, fresh=True)
    return result.records / result.seconds


def time_pipeline(model: str, texts: list[str], batch_size: int) -> float:
    from transformers import pipeline

    pipe = pipeline("text-classification", model=model, device=-1, truncation=True, max_length=128)
    pipe(texts[:8], batch_size=batch_size)  # warm-up
    start = time.perf_counter()
    pipe(texts, batch_size=batch_size)
    return len(texts) / (time.perf_counter() - start)


def accuracy(model: str, data_dir: Path, tmp: Path) -> dict[str, tuple[float, float]]:
    rows = list(csv.DictReader((data_dir / "phrasebank/splits/50agree_test.csv").open(encoding="utf-8", newline="")))
    src = write_lines(tmp / "pb_test.txt", [r["text"] for r in rows])
    gold = np.array([LABEL2ID[r["label"]] for r in rows])
    out = {}
    for backend in BACKENDS:
        res = predict_input(src, model, backend=backend)
        probs = np.array([[r[f"p_{name}"] for name in LABELS] for r in res.rows], dtype=np.float64)
        met = classification_metrics(gold, probs)
        out[backend] = (met["accuracy"], met["macro_f1"])
    return out


def peak_memory(tmp: Path, minilm: str) -> dict[int, float]:
    """Max RSS (MB) of a ``finsent predict`` subprocess over 100k and 1M lines, tiny random BERT."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tiny = tmp / "tiny"
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=128, num_labels=3, id2label=dict(enumerate(LABELS)), label2id=LABEL2ID)  # fmt: skip
    BertForSequenceClassification(cfg).save_pretrained(tiny)
    AutoTokenizer.from_pretrained(minilm).save_pretrained(tiny)
    words = ["shares", "of", "the", "bank", "rose", "after", "record", "quarterly", "profit", "beat", "forecasts", "while", "guidance", "was", "cut"]
    rng = np.random.default_rng(0)
    out = {}
    for n in (100_000, 1_000_000):
        src = tmp / f"lines_{n}.txt"
        with src.open("w", encoding="utf-8") as fh:
            for _ in range(n):
                fh.write(" ".join(rng.choice(words, size=int(rng.integers(3, 16)))) + "\n")
        cmd = [sys.executable, "-c",
               # VmHWM: the peak RSS of this process image (ru_maxrss would keep the parent's peak across exec)
               ("import sys, atexit; from finsent_cli.main import app; sys.argv = ['finsent'] + sys.argv[1:]; "
                "atexit.register(lambda: print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')), file=sys.stderr)); app()"),
               "predict", str(src), "-m", str(tiny), "-o", str(tmp / f"out_{n}.csv"), "-q"]  # fmt: skip
        start = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        line = next(x for x in res.stderr.splitlines() if x.startswith("VmHWM"))
        out[n] = (int(line.split()[1]) / 1024, time.perf_counter() - start)  # VmHWM is in kB
        src.unlink()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a fine-tuned model folder with its ONNX export (finsent export MODEL --onnx --int8)")
    ap.add_argument("--data-dir", default=os.environ.get("FINSENT_DATA_DIR", "../shared/data"))
    ap.add_argument("--headlines", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=None, help="torch (and onnxruntime) threads (default: torch's)")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = Path(args.data_dir)
    tmp = Path(tempfile.mkdtemp(prefix="finsent_bench_"))
    tweets = read_texts(data / "twitter/splits/train.csv") + read_texts(data / "twitter/splits/valid.csv")
    news = list(dict.fromkeys(read_texts(data / "sentfin/splits/train.csv")))  # one row per entity: each title once
    headlines = [t for t in tweets + news if t.strip()][: args.headlines]
    sentences = read_texts(data / "phrasebank/splits/50agree_train.csv")
    paragraphs = [" ".join(sentences[i : i + 5]) for i in range(0, 2500, 5)]
    sets = {"headlines": headlines, "paragraphs": paragraphs}
    print(f"torch threads {torch.get_num_threads()}; {len(headlines):,} headlines, {len(paragraphs)} paragraphs of 5 sentences\n")
    print("| input | engine | sentences/s | vs pipeline batch 64 |\n| --- | --- | ---: | ---: |")
    for name, texts in sets.items():
        src = write_lines(tmp / f"{name}.txt", texts)
        speeds = {f"pipeline, batch {bs}": time_pipeline(args.model, texts if bs > 1 else texts[: len(texts) // 5], bs) for bs in (64, 1)}
        for backend in BACKENDS:
            speeds[f"finsent predict --backend {backend}"] = time_finsent(args.model, src, backend, tmp / f"{name}_{backend}.csv")
        base = speeds["pipeline, batch 64"]
        for engine, speed in speeds.items():
            print(f"| {name} | {engine} | {speed:,.0f} | {speed / base:.2f}x |")
    if not args.skip_accuracy:
        print("\n| backend | PhraseBank 50agree test accuracy | macro-F1 |\n| --- | ---: | ---: |")
        for backend, (acc, f1) in accuracy(args.model, data, tmp).items():
            print(f"| {backend} | {acc:.4f} | {f1:.4f} |")
    if not args.skip_memory:
        from finsent_cli.core.models.hub import resolve_model_path

        print("\n| lines (tiny random BERT) | max RSS | wall time |\n| ---: | ---: | ---: |")
        for n, (mb, sec) in peak_memory(tmp, resolve_model_path("minilm")).items():
            print(f"| {n:,} | {mb:,.0f} MB | {sec:.0f} s |")
    print(f"\npeak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")


if __name__ == "__main__":
    main()
