"""Active-learning benchmark: does `finsent select` pick better sentences to label than chance?

A pool-based simulation on PhraseBank 50agree (after Settles, "Active Learning Literature Survey", 2009):
start from ``--start`` training sentences drawn at random (one draw per seed, shared by every strategy),
then ``--rounds`` rounds, each adding ``--step`` sentences from the rest of the training split, chosen by

* ``select``: ``core.select.run.run_select`` with the previous round's model (the weights of
  ``--select-recipe``, default the schema's), or
* ``random``: uniformly at random,

whose labels are then revealed. Every round fine-tunes a fresh model with the real flow
(``core.flows.finetune.run_finetune`` on ``recipes/finetune_phrasebank.yaml``: MiniLM, full fine-tune, the
checkpoint kept by validation macro-F1) on the labelled subset, and records valid and test macro-F1 and
accuracy of its ``best/``.

    FINSENT_DATA_DIR=/work/shared/data OMP_NUM_THREADS=1 python bench/bench_active_learning.py --out runs/bench_al

A smoke run: ``--start 40 --step 40 --rounds 2 --epochs 1``. Resumable: a round whose ``result.json`` exists
is read back, a round that was interrupted resumes its fine-tuning (its choice of sentences is kept in
``chosen.json``). Writes ``<out>/results.md`` (a Markdown table, mean and range over seeds) and
``<out>/learning_curve.png`` (test and valid macro-F1 against the number of labelled sentences).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import statistics
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from finsent_cli.config.finetune import FinetuneRecipe
from finsent_cli.config.loader import load_recipe, resolve_data_dir
from finsent_cli.config.select import SelectRecipe
from finsent_cli.core.flows.finetune import run_finetune
from finsent_cli.core.select.run import run_select

REPO = Path(__file__).resolve().parents[1]
FINETUNE_RECIPE = REPO / "recipes" / "finetune_phrasebank.yaml"
STRATEGIES = ("select", "random")
METRICS = ("valid_macro_f1", "valid_accuracy", "test_macro_f1", "test_accuracy")


def read_rows(path: Path) -> list[dict[str, str]]:
    """The ``text,label`` rows of a split file."""
    with path.open(encoding="utf-8", newline="") as fh:
        return [{"text": r["text"], "label": r["label"]} for r in csv.DictReader(fh)]


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    """Write ``text,label`` rows (the labelled subset) for the finetune recipe."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["text", "label"])
        w.writeheader()
        w.writerows(rows)
    return path


def train_round(
    folder: Path, rows: list[dict[str, str]], labelled: list[int], seed: int, args: argparse.Namespace
) -> dict:
    """Fine-tune a fresh model on ``rows[labelled]`` in ``folder/run`` (or read back its result)."""
    done = folder / "result.json"
    if done.is_file():
        return json.loads(done.read_text(encoding="utf-8"))
    train = write_rows(folder / "train.csv", [rows[i] for i in labelled])
    overrides = [
        f"data.train={train}", f"output_dir={folder / 'run'}", f"train.epochs={args.epochs}",
        f"train.seed={13 + seed}", "train.keep_checkpoints=1", *args.finetune_set,
    ]  # fmt: skip
    cfg = load_recipe(args.finetune_recipe, FinetuneRecipe, overrides)
    result = run_finetune(cfg)
    record = {
        "labelled": len(labelled), "indices": labelled, "seconds": round(result.seconds, 1),
        "best_step": result.best_step,
        **{f"{split}_{m}": result.final[split][m] for split in ("valid", "test") for m in ("accuracy", "macro_f1")},
    }  # fmt: skip
    done.write_text(json.dumps(record, indent=1), encoding="utf-8")
    if not args.keep_runs:  # a round's model is only needed to choose the next round's sentences: best/ stays
        shutil.rmtree(folder / "run" / "checkpoints", ignore_errors=True)
        shutil.rmtree(folder / "run" / "last", ignore_errors=True)
    shown = {k: v for k, v in record.items() if k != "indices"}
    print(json.dumps({"round": str(folder), **shown}), flush=True)
    return record


def choose(
    strategy: str, folder: Path, rows: list[dict[str, str]], labelled: list[int], model: Path, seed: int, rnd: int,
    select_cfg: SelectRecipe, args: argparse.Namespace,
) -> list[int]:  # fmt: skip
    """The indices of ``args.step`` unlabelled rows to label next, kept in ``folder/chosen.json`` for resuming."""
    kept = folder / "chosen.json"
    if kept.is_file():
        return list(json.loads(kept.read_text(encoding="utf-8")))
    taken = set(labelled)
    rest = [i for i in range(len(rows)) if i not in taken]
    rng = random.Random(f"{seed}-{rnd}-{strategy}")
    if strategy == "random":
        chosen = rng.sample(rest, min(args.step, len(rest)))
    else:
        folder.mkdir(parents=True, exist_ok=True)
        pool = folder / "pool.jsonl"  # one record a line: line k is rest[k - 1], whatever the text holds
        pool.write_text("".join(json.dumps({"text": rows[i]["text"]}) + "\n" for i in rest), encoding="utf-8")
        res = run_select(model, pool, min(args.step, len(rest)), select_cfg, device=args.device)
        chosen = [rest[r.line - 1] for r in res.rows]
        short = min(args.step, len(rest)) - len(chosen)  # duplicates or training texts left too few: top up
        if short > 0:
            left = sorted(set(rest) - set(chosen))
            chosen += rng.sample(left, min(short, len(left)))
        pool.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    kept.write_text(json.dumps(chosen), encoding="utf-8")
    return chosen


def cell(values: list[float]) -> str:
    """Mean, with the range when there are several values."""
    mean = statistics.fmean(values)
    return f"{mean:.4f}" if len(values) == 1 else f"{mean:.4f} ({min(values):.4f}-{max(values):.4f})"


def report(results: dict[str, dict[int, list[dict]]], out: Path, args: argparse.Namespace) -> str:
    """Write ``results.md`` and ``learning_curve.png``; return the table."""
    lines = [
        f"PhraseBank 50agree, start {args.start}, +{args.step} a round, {args.epochs} epochs, {args.seeds} seed(s): "
        + "mean (min-max) over seeds",
        "",
        "| round | labelled | strategy | valid macro-F1 | valid accuracy | test macro-F1 | test accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for rnd in range(args.rounds + 1):
        for strategy, by_round in results.items():
            group = by_round.get(rnd, [])
            if not group:
                continue
            n = round(statistics.fmean(g["labelled"] for g in group))
            cells = " | ".join(cell([g[m] for g in group]) for m in METRICS)
            lines.append(f"| {rnd} | {n} | {strategy} | {cells} |")
    table = "\n".join(lines) + "\n"
    (out / "results.md").write_text(table, encoding="utf-8")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for strategy, by_round in results.items():
        rounds = sorted(r for r, g in by_round.items() if g)
        x = [statistics.fmean(g["labelled"] for g in by_round[r]) for r in rounds]
        color = None  # one colour per strategy: test solid, valid dashed
        for metric, style in (("test_macro_f1", "-o"), ("valid_macro_f1", "--")):
            y = [statistics.fmean(g[metric] for g in by_round[r]) for r in rounds]
            (line,) = ax.plot(x, y, style, color=color, label=f"{strategy} ({metric.split('_')[0]})")
            color = line.get_color()
            if args.seeds > 1 and metric == "test_macro_f1":
                lo = [min(g[metric] for g in by_round[r]) for r in rounds]
                hi = [max(g[metric] for g in by_round[r]) for r in rounds]
                ax.fill_between(x, lo, hi, color=color, alpha=0.15)
    ax.set_xlabel("labelled training sentences")
    ax.set_ylabel("macro-F1")
    ax.set_title("Active learning on PhraseBank 50agree (MiniLM)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "learning_curve.png", dpi=120)
    plt.close(fig)
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", type=int, default=1, help="simulations, each with its own start set")
    ap.add_argument("--start", type=int, default=300, help="labelled sentences before the first round")
    ap.add_argument("--step", type=int, default=300, help="sentences added per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=4, help="fine-tuning epochs per round")
    ap.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated: select, random")
    ap.add_argument("--select-recipe", type=Path, default=None, help="select recipe (weights); default: its defaults")
    ap.add_argument(
        "--select-set", action="append", default=[], metavar="KEY=VALUE", help="override of the select recipe"
    )
    ap.add_argument("--finetune-recipe", type=Path, default=FINETUNE_RECIPE)
    ap.add_argument(
        "--finetune-set", action="append", default=[], metavar="KEY=VALUE", help="override of the finetune recipe"
    )
    ap.add_argument("--device", default="auto", help="where select scores the pool")
    ap.add_argument("--keep-runs", action="store_true", help="keep checkpoints/ and last/ of every round")
    args = ap.parse_args()
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown or not strategies:
        ap.error(f"--strategies: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(STRATEGIES)}")
    select_cfg = load_recipe(args.select_recipe, SelectRecipe, args.select_set, check_paths=False)
    rows = read_rows(resolve_data_dir() / "phrasebank" / "splits" / "50agree_train.csv")
    if args.start + args.rounds * args.step > len(rows):
        ap.error(f"--start + --rounds x --step is more than the {len(rows)} training sentences")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "settings.json").write_text(
        json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, indent=1), encoding="utf-8"
    )

    results: dict[str, dict[int, list[dict]]] = {s: {} for s in strategies}
    for seed in range(args.seeds):
        start = random.Random(f"start-{seed}").sample(range(len(rows)), args.start)
        base = args.out / f"seed{seed}"
        first = train_round(base / "round0", rows, start, seed, args)  # shared by every strategy
        for strategy in strategies:
            results[strategy].setdefault(0, []).append(first)
            labelled, model = list(start), base / "round0" / "run"
            for rnd in range(1, args.rounds + 1):
                folder = base / strategy / f"round{rnd}"
                if not (folder / "result.json").is_file():
                    labelled = labelled + choose(strategy, folder, rows, labelled, model, seed, rnd, select_cfg, args)
                else:
                    labelled = json.loads((folder / "result.json").read_text(encoding="utf-8"))["indices"]
                record = train_round(folder, rows, labelled, seed, args)
                results[strategy].setdefault(rnd, []).append(record)
                model = folder / "run"
    print(report(results, args.out, args))


if __name__ == "__main__":
    main()
