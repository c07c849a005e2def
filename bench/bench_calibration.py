"""When does a temperature fitted on a validation split help test data, and when does it hurt?

Each model scores (validation, test) pairs of real data with its raw probabilities (no temperature):
PhraseBank 50agree and allagree valid / test, SEntFiN valid / test at sentence level (each headline once,
kept when its entity labels agree), Twitter financial news valid cut in two halves (it has no test split),
and any ``--prepared`` folder's valid / test (the quickstart's: 36 / 72 headlines). Then, for validation
subsets of n examples drawn ``--draws`` times (and each whole validation split, "all"), every candidate rule
of ``core.eval.metrics.calibrate`` decides from validation alone, and the test split scores the decision:
the change of test ECE (Guo et al. 2017, 15 bins) and NLL against the raw probabilities. Prints Markdown
tables: one line per pair on its whole validation split, then per rule and n the mean change and the share
of draws that made test worse (ECE by more than 0.01, NLL by more than 0.005).

    FINSENT_DATA_DIR=/work/shared/data OMP_NUM_THREADS=2 python bench/bench_calibration.py \\
        finsent_cli/resources/models/default runs/quickstart/model/best runs/quickstart/model/last \\
        --prepared runs/quickstart/data --cache /tmp/calibration_logits.npz
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_distill import read_set

from finsent_cli.core.eval.metrics import (
    CALIBRATION_RULE,
    CalibrationRule,
    apply_temperature,
    calibrate,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
)
from finsent_cli.labels import LABEL2ID

SETS = {
    "PhraseBank 50agree": ("phrasebank/splits/50agree_valid.csv", "phrasebank/splits/50agree_test.csv"),
    "PhraseBank allagree": ("phrasebank/splits/allagree_valid.csv", "phrasebank/splits/allagree_test.csv"),
    "SEntFiN (sentences)": ("sentfin/splits/valid.csv", "sentfin/splits/test.csv"),
    "Twitter valid (halves)": ("twitter/splits/valid.csv", None),
}
RULES = {
    "always fit, bounds 0.05-20 (before)": CalibrationRule(min_examples=1, min_z=None, bounds=(0.05, 20.0)),
    "always fit, bounds 0.25-4": CalibrationRule(min_examples=1, min_z=None),
    "n >= 100, no held-out check": CalibrationRule(min_examples=100, min_z=None),
    "held-out z >= 1.645 only (n >= 10)": CalibrationRule(min_examples=10),
    "n >= 50, held-out z >= 1.645": CalibrationRule(min_examples=50),
    "n >= 100, held-out z >= 1.645": CalibrationRule(min_examples=100),
    "n >= 50, held-out z >= 2": CalibrationRule(min_examples=50, min_z=2.0),
}
"""Candidate rules (all with 5 folds, bounds 0.25-4 unless named); the shipped one is marked in the tables."""
SIZES = (20, 36, 50, 100, 200, 400, None)  # None: the whole validation split


def label(rule_name: str) -> str:
    """The rule's name in a table; the shipped rule (``CALIBRATION_RULE``) in bold."""
    return f"**{rule_name} (shipped)**" if RULES[rule_name] == CALIBRATION_RULE else rule_name


def short(path: str | Path, parts: int = 3) -> str:
    """The last ``parts`` components of a path, for a table."""
    return "/".join(Path(path).parts[-parts:])


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)  # (N, 3)
    return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)


def score(models: list[str], data_dir: Path, prepared: list[Path], cache: Path | None) -> dict[str, np.ndarray]:
    """Raw logits and gold ids per ``model|set|split``, read from ``cache`` where it holds them."""
    from finsent_cli.core.data.store import load_prepared
    from finsent_cli.core.inference.loading import load_classifier

    out = dict(np.load(cache)) if cache is not None and cache.exists() else {}
    sets: dict[str, dict[str, tuple[list[str], np.ndarray]]] = {}
    for name, (valid, test) in SETS.items():
        sets[name] = {"valid": read_set(data_dir / valid)} | ({"test": read_set(data_dir / test)} if test else {})
    for folder in prepared:
        splits = load_prepared(folder)
        sets[f"{short(folder, 2)} (prepared)"] = {
            split: ([r["text"] for r in splits[split]], np.array([LABEL2ID[r["label"]] for r in splits[split]]))
            for split in ("valid", "test")
        }  # fmt: skip
    wanted = []
    for model in models:
        clf = None
        for name, splits in sets.items():
            for split, (texts, gold) in splits.items():
                key = f"{model}|{name}|{split}"
                wanted += [f"{key}|logits", f"{key}|gold"]
                if f"{key}|logits" not in out:
                    clf = clf or load_classifier(model, calibrated=False)
                    ids, _ = clf.encode(texts)
                    out[f"{key}|logits"], out[f"{key}|gold"] = clf.logits_from_ids(ids, 64), gold
    if cache is not None:
        np.savez_compressed(cache, **out)
    return {k: out[k] for k in wanted}


def pairs_of(scores: dict[str, np.ndarray]) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(model, set) -> validation probs, gold, test probs, gold; a set without test is cut in two halves."""
    pairs = {}
    for key in dict.fromkeys(k.rsplit("|", 2)[0] for k in scores):
        model, name = key.split("|")
        pv, yv = softmax(scores[f"{key}|valid|logits"].astype(np.float64)), scores[f"{key}|valid|gold"]
        if f"{key}|test|logits" in scores:
            pt, yt = softmax(scores[f"{key}|test|logits"].astype(np.float64)), scores[f"{key}|test|gold"]
        else:
            order = np.random.default_rng(0).permutation(len(yv))
            half, rest = order[: len(yv) // 2], order[len(yv) // 2 :]
            pv, yv, pt, yt = pv[half], yv[half], pv[rest], yv[rest]
        pairs[model, name] = (pv, yv, pt, yt)
    return pairs


def simulate(pairs, draws: int) -> dict[tuple[str, str, str], np.ndarray]:
    """(pair, size, rule) -> ``(draws, 3)``: applied (0/1), test ECE change, test NLL change."""
    res = {}
    for (model, name), (pv, yv, pt, yt) in pairs.items():
        ece0, nll0 = expected_calibration_error(pt, yt), negative_log_likelihood(pt, yt)
        on_test: dict[float, tuple[float, float]] = {}
        for size in SIZES:
            if size is not None and size > len(yv):
                continue
            rng = np.random.default_rng(1)
            subsets = [np.arange(len(yv))] if size is None else [rng.choice(len(yv), size, replace=False) for _ in range(draws)]
            for rule_name, rule in RULES.items():
                rows = []
                for sub in subsets:
                    t = calibrate(pv[sub], yv[sub], rule).temperature
                    if t is None:
                        rows.append((0.0, 0.0, 0.0))
                        continue
                    if t not in on_test:
                        on_test[t] = (expected_calibration_error(apply_temperature(pt, t), yt) - ece0, negative_log_likelihood(pt, yt, t) - nll0)
                    rows.append((1.0, *on_test[t]))
                res[model, name, "all" if size is None else str(size), rule_name] = np.array(rows)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=["finsent_cli/resources/models/default"], help="model or run folders")
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("FINSENT_DATA_DIR", "../shared/data")))
    ap.add_argument("--prepared", type=Path, action="append", default=[], help="a finsent prep folder (valid and test)")
    ap.add_argument("--draws", type=int, default=50, help="validation subsets per size")
    ap.add_argument("--cache", type=Path, help="an .npz that keeps the logits between runs")
    args = ap.parse_args()
    start = time.perf_counter()
    pairs = pairs_of(score(args.models, args.data_dir, args.prepared, args.cache))
    scored = time.perf_counter() - start
    res = simulate(pairs, args.draws)
    print(f"{len(pairs)} (validation, test) pairs; {args.draws} draws per size; scoring {scored:.0f} s, simulation {time.perf_counter() - start - scored:.0f} s\n")

    print("| model | data | valid / test | valid acc | T on valid | T best on test | test ECE raw -> always fit -> shipped rule | test NLL raw -> always -> rule | rule's decision |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for (model, name), (pv, yv, pt, yt) in pairs.items():
        t_valid, t_test = fit_temperature(pv, yv, (0.05, 20.0)), fit_temperature(pt, yt, (0.05, 20.0))
        rule = calibrate(pv, yv)
        ece = [expected_calibration_error(p, yt) for p in (pt, apply_temperature(pt, t_valid), apply_temperature(pt, rule.temperature or 1.0))]
        nll = [negative_log_likelihood(pt, yt, t) for t in (1.0, t_valid, rule.temperature or 1.0)]
        print(f"| {short(model)} | {name} | {len(yv)} / {len(yt)} | {np.mean(pv.argmax(1) == yv):.3f} "
              f"| {t_valid:.3f} | {t_test:.3f} | {' -> '.join(f'{e:.3f}' for e in ece)} | {' -> '.join(f'{x:.3f}' for x in nll)} "
              f"| {'applied' if rule.applied else 'raw: ' + rule.reason.split(':')[0]} |")  # fmt: skip

    sizes = [s for s in ("20", "36", "50", "100", "200", "400", "all") if any(k[2] == s for k in res)]
    for title, col, cut in (("test ECE change", 1, 0.01), ("test NLL change", 2, 0.005)):
        print(f"\n{title}, mean over pairs and draws (share of draws worse by more than {cut}); applied share below\n")
        print("| rule | " + " | ".join(f"n = {s}" for s in sizes) + " |")
        print("| --- |" + " ---: |" * len(sizes))
        for rule_name in RULES:
            cells = []
            for s in sizes:
                got = np.concatenate([v for k, v in res.items() if k[2] == s and k[3] == rule_name])
                cells.append(f"{got[:, col].mean():+.4f} ({100 * (got[:, col] > cut).mean():.1f}%)")
            print(f"| {label(rule_name)} | " + " | ".join(cells) + " |")
    print("\napplied share\n")
    print("| rule | " + " | ".join(f"n = {s}" for s in sizes) + " |")
    print("| --- |" + " ---: |" * len(sizes))
    for rule_name in RULES:
        cells = [f"{100 * np.concatenate([v for k, v in res.items() if k[2] == s and k[3] == rule_name])[:, 0].mean():.0f}%" for s in sizes]
        print(f"| {label(rule_name)} | " + " | ".join(cells) + " |")
    pair_counts = {s: sum(1 for k in res if k[2] == s and k[3] == next(iter(RULES))) for s in sizes}
    print("\npairs per size: " + ", ".join(f"{s}: {c}" for s, c in pair_counts.items()))


if __name__ == "__main__":
    main()
