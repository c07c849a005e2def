"""Candidate built-in models side by side: the four held-out sets, speed against plain MiniLM, capabilities.

Each model (a built-in name, a run or a model folder; through ``load_classifier``, what ``finsent predict``
runs, its temperature applied) classifies the sets of ``bench_distill.py`` (PhraseBank 50agree test,
allagree test, Twitter valid, SEntFiN test at sentence level) and its validation splits; then every model
and a plain MiniLM classifier (the offline all-MiniLM-L6-v2 with a fresh head and no adapter: what
"MiniLM speed" means) take turns for ``--rounds`` rounds on PhraseBank 50agree test; then `finsent check`'s
built-in suite runs on each. Prints Markdown tables and, with ``--json FILE``, writes every number.

    FINSENT_DATA_DIR=../shared/data OMP_NUM_THREADS=2 python bench/bench_builtin.py default news runs/teacher \\
        --json docs/builtin_models.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_distill import SETS, read_set

from finsent_cli.core.eval.metrics import classification_metrics
from finsent_cli.core.inference.loading import load_classifier
from finsent_cli.core.runs import resolve_model_folder

VALID = {
    "PhraseBank 50agree valid": "phrasebank/splits/50agree_valid.csv",
    "Twitter valid": "twitter/splits/valid.csv",
    "SEntFiN valid (sentences)": "sentfin/splits/valid.csv",
}


def plain_minilm(folder: Path) -> Path:
    """Save the offline MiniLM with a fresh classification head and no adapter into ``folder``."""
    from finsent_cli.config.models import HFEncoderCfg
    from finsent_cli.core.models.registry import get_kind

    kind = get_kind("hf_encoder")
    cfg = HFEncoderCfg(backbone="minilm", adapter={"kind": "none"}, max_length=128)
    model, tokenizer = kind.build(cfg)
    kind.save(model.eval(), tokenizer, folder, kind.meta(cfg))
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="built-in names, model or run folders")
    ap.add_argument("--data-dir", default=os.environ.get("FINSENT_DATA_DIR", "../shared/data"))
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-check", action="store_true", help="skip the capability suite")
    ap.add_argument("--no-speed", action="store_true", help="skip the speed rounds (scores and capabilities only)")
    ap.add_argument("--json", type=Path, help="write every number here")
    args = ap.parse_args()
    data = Path(args.data_dir)
    sets = {name: read_set(data / rel) for name, rel in {**SETS, **VALID}.items()}
    folders = {m: resolve_model_folder(m) for m in args.models}
    clfs = {m: load_classifier(folders[m]) for m in args.models}
    results: dict[str, dict] = {m: {"folder": str(folders[m]), "scores": {}} for m in args.models}
    for m, clf in clfs.items():
        for name, (texts, gold) in sets.items():
            met = classification_metrics(gold, clf.predict_proba(texts, args.batch_size))
            results[m]["scores"][name] = {"n": len(texts), "accuracy": met["accuracy"], "macro_f1": met["macro_f1"]}

    rates: dict[str, float] = {}
    texts = sets["PhraseBank 50agree test"][0]
    if not args.no_speed:
        with tempfile.TemporaryDirectory() as tmp:
            reference = load_classifier(plain_minilm(Path(tmp) / "plain_minilm"))
            timed = {"plain MiniLM": reference, **clfs}
            seconds: dict[str, list[float]] = {m: [] for m in timed}
            for clf in timed.values():  # warm-up: first calls allocate
                clf.predict_proba(texts[:128], args.batch_size)
            for _ in range(args.rounds):
                for m, clf in timed.items():
                    start = time.perf_counter()
                    clf.predict_proba(texts, args.batch_size)
                    seconds[m].append(time.perf_counter() - start)
        rates = {m: len(texts) / min(s) for m, s in seconds.items()}
        for m in args.models:
            results[m]["sentences_per_s"] = rates[m]
            results[m]["speed_vs_plain_minilm"] = rates[m] / rates["plain MiniLM"]
    if not args.no_check:
        from finsent_cli.core.check.run import run_check
        from finsent_cli.core.check.suite import load_suite

        suite = load_suite()
        for m in args.models:
            report = run_check(str(folders[m]), suite, batch_size=args.batch_size)
            results[m]["capabilities"] = {c.name: c.pass_rate for c in report.capabilities if c.pass_rate is not None}

    if rates:
        print(f"torch threads {torch.get_num_threads()}; speed: best of {args.rounds} rounds on PhraseBank 50agree test "
              f"({len(texts):,} sentences, batch {args.batch_size}), plain MiniLM {rates['plain MiniLM']:.1f} sentences/s\n")
    names = list(sets)
    print("| model | " + " | ".join(f"{n} acc / macro-F1" for n in names) + " | sentences/s | vs plain MiniLM |")
    print("| --- |" + " ---: |" * (len(names) + 2))
    for m in args.models:
        cells = " | ".join(f"{results[m]['scores'][n]['accuracy']:.4f} / {results[m]['scores'][n]['macro_f1']:.4f}" for n in names)
        speed = f"{rates[m]:.1f} | {results[m]['speed_vs_plain_minilm']:.2f}x" if rates else "- | -"
        print(f"| {m} | {cells} | {speed} |")
    if not args.no_check:
        caps = list(dict.fromkeys(c for m in args.models for c in results[m]["capabilities"]))
        print("\n| model | " + " | ".join(caps) + " |")
        print("| --- |" + " ---: |" * len(caps))
        for m in args.models:
            print(f"| {m} | " + " | ".join(f"{results[m]['capabilities'].get(c, float('nan')):.1%}" for c in caps) + " |")
    if args.json:
        meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "threads": torch.get_num_threads(),
                "plain_minilm_sentences_per_s": rates.get("plain MiniLM"), "models": results}
        args.json.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
