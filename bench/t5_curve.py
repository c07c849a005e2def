"""Where does T5 domain pretraining start to pay? Fine-tune every checkpoint of one pretraining run.

For each checkpoint that a ``finsent pretrain`` run kept (``train.keep_checkpoints`` large enough; pick
some with ``--steps``) and for random initialisation, fine-tunes the classification head
(``recipes/finetune_t5_cls.yaml`` through the CLI) on PhraseBank 50agree with all 3,388 training labels and
with a fixed stratified 350-label subset (the same subset as ``bench_t5_quality.py``, several fine-tuning
seeds), each picked on validation macro-F1, and reports test macro-F1 against pretraining tokens. Random
initialisation is the line to beat. Writes ``OUT/curve.json``, a Markdown table on stdout, and the plot
(``--png``). If the pretrained curve stays below the line, a straight line through test macro-F1 against
log10(tokens) of the last checkpoints says at what token count it would cross.

    FINSENT_DATA_DIR=../shared/data python bench/t5_curve.py --run runs/pretrain_curve --out runs/curve \\
        --png docs/t5_pretraining_curve.png

Runs that finished are not run again (the CLI resumes them): stop and restart it freely.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_t5_quality import SUBSET_EPOCHS, finetune, subset  # noqa: E402

from finsent_cli.core.training.checkpoint import list_checkpoints  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def train_speed(run: Path) -> float:
    """Median training tokens/s of the run's ``train`` events."""
    events = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    speeds = [e["tokens_per_s"] for e in events if e.get("event") == "train" and e.get("tokens_per_s")]
    return statistics.median(speeds)


def crossing(points: list[tuple[float, float]], line: float) -> float | None:
    """Tokens at which a least-squares line of score against log10(tokens) through ``points`` reaches ``line``
    (None when the trend is flat or falling)."""
    xs = [math.log10(t) for t, _ in points]
    ys = [y for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    if slope <= 0:
        return None
    return 10 ** (mx + (line - my) / slope)


def plot(rows: list[dict], random_row: dict, png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for key, colour, label in (("full", "tab:blue", "3,388 labels"), ("350", "tab:orange", "350 labels")):
        xs = [r["tokens"] / 1e6 for r in rows]
        ys = [r[key]["test_macro_f1"] for r in rows]
        ax.plot(xs, ys, "o-", color=colour, label=f"pretrained start, {label}")
        ax.axhline(random_row[key]["test_macro_f1"], color=colour, ls="--", lw=1, label=f"random init, {label}")
    ax.set_xlabel("pretraining tokens (millions)")
    ax.set_ylabel("PhraseBank 50agree test macro-F1")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center right")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, required=True, help="a finsent pretrain run folder")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, nargs="*", help="checkpoint steps to fine-tune (default: all)")
    p.add_argument("--seeds", type=int, nargs="+", default=[13, 14, 15], help="fine-tuning seeds of the 350-label runs")
    p.add_argument("--lr-random", type=float, nargs=2, metavar=("FULL", "N350"),
                   help="fine-tuning learning rates from random init (3,388 labels, 350 labels), chosen on validation")
    p.add_argument("--lr-pretrained", type=float, nargs=2, metavar=("FULL", "N350"),
                   help="the same for the pretrained checkpoints (default for both: the recipe's)")
    p.add_argument("--png", type=Path)
    p.add_argument("--skip-random", action="store_true")
    args = p.parse_args()
    data_dir = Path(os.environ.get("FINSENT_DATA_DIR", REPO.parent / "shared" / "data")).resolve()
    splits = data_dir / "phrasebank" / "splits"
    args.out.mkdir(parents=True, exist_ok=True)
    train_350 = subset(splits / "50agree_train.csv", 350, args.out / "train_350.csv")
    tokens_per_step = json.loads((args.run / "data.json").read_text())["tokens_per_step"]
    speed = train_speed(args.run)
    checkpoints = [(s, c) for s, c in list_checkpoints(args.run) if not args.steps or s in args.steps]
    results_path = args.out / "curve.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    def one(key: str, backbone: Path, init: str) -> dict:
        row = {}
        lrs = args.lr_random if init == "random" else args.lr_pretrained
        runs = [("full", [], 13)] + [("350", [f"data.train={train_350}", f"train.epochs={SUBSET_EPOCHS}", "train.patience=5"], s) for s in args.seeds]
        for name, over, seed in runs:
            tag = f"{key}_{name}_s{seed}"
            lr = [f"optim.lr={lrs[0 if name == 'full' else 1]}"] if lrs else []
            metrics, seconds = finetune(
                "finetune_t5_cls.yaml", args.out / tag,
                [*over, *lr, f"model.backbone={backbone}", f"model.init={init}", f"train.seed={seed}"], data_dir,
            )  # fmt: skip
            row.setdefault(name, []).append(
                {"seed": seed, "valid_macro_f1": metrics["valid"]["macro_f1"], "test_macro_f1": metrics["test"]["macro_f1"],
                 "test_accuracy": metrics["test"]["accuracy"], "seconds": round(seconds)}  # fmt: skip
            )
            print(f"{tag}: valid {metrics['valid']['macro_f1']:.3f} test {metrics['test']['macro_f1']:.3f} ({seconds:.0f} s)", flush=True)
        return {
            name: {
                "test_macro_f1": statistics.fmean(r["test_macro_f1"] for r in runs_),
                "test_macro_f1_sd": statistics.pstdev([r["test_macro_f1"] for r in runs_]),
                "valid_macro_f1": statistics.fmean(r["valid_macro_f1"] for r in runs_),
                "runs": runs_,
            }
            for name, runs_ in row.items()
        }

    if not args.skip_random or "random" in results:
        if "random" not in results:
            first = checkpoints[0][1] if checkpoints else args.run
            results["random"] = one("random", first, "random")
            results_path.write_text(json.dumps(results, indent=2))
    for step, folder in checkpoints:
        key = f"step{step}"
        if key not in results:
            results[key] = {"step": step, "tokens": step * tokens_per_step, "minutes": step * tokens_per_step / speed / 60,
                            **one(key, folder, "pretrained")}  # fmt: skip
            results_path.write_text(json.dumps(results, indent=2))

    rows = sorted((v for k, v in results.items() if k != "random"), key=lambda r: r["step"])
    rnd = results.get("random")
    print("\n| checkpoint | tokens | minutes | 3,388 labels: test macro-F1 | 350 labels: test macro-F1 (mean ± sd of seeds) |")
    print("|---|---:|---:|---:|---:|")
    if rnd:
        print(f"| random init | 0 | 0 | {rnd['full']['test_macro_f1']:.3f} | {rnd['350']['test_macro_f1']:.3f} ± {rnd['350']['test_macro_f1_sd']:.3f} |")
    for r in rows:
        print(
            f"| step {r['step']} | {r['tokens'] / 1e6:.2f}M | {r['minutes']:.0f} | {r['full']['test_macro_f1']:.3f} | "
            f"{r['350']['test_macro_f1']:.3f} ± {r['350']['test_macro_f1_sd']:.3f} |"
        )
    if rnd and len(rows) >= 3:
        for name in ("full", "350"):
            pts = [(r["tokens"], r[name]["test_macro_f1"]) for r in rows if r["tokens"] > 0][-4:]
            x = crossing(pts, rnd[name]["test_macro_f1"]) if pts[-1][1] < rnd[name]["test_macro_f1"] else None
            if x is not None:
                print(f"{name}: trend of the last {len(pts)} checkpoints crosses random init at {x / 1e6:.1f}M tokens")
    if args.png and rnd and rows:
        plot(rows, rnd, args.png, f"finsent t5_tiny, span corruption on Reuters ({args.run.name}); fine-tuned classification head")
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
