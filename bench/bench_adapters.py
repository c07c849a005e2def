"""Parameter-efficient fine-tuning on PhraseBank 50agree with the MiniLM backbone, side by side in one run.

Runs each configuration through the CLI (``finsent finetune`` / ``finsent qlora`` with the shipped recipes) in
its own process, one after the other, and reads back: validation and test accuracy / macro-F1 of ``best/``
(picked on validation macro-F1, from ``metrics.jsonl``), trainable parameters (the run's log line), the
training time (the run's "complete after ... (Ns of training)" line) and the peak resident memory of the
process (``ru_maxrss`` of the child, from ``os.wait4``). The Mamba rows come from one ``--sweep`` over
``model.adapter.num_layers`` and ``model.adapter.scan`` (its ``sweep.csv``). Finished configurations are not
run again, so the script can be stopped and restarted.

    FINSENT_DATA_DIR=../shared/data python bench/bench_adapters.py --out runs/bench_adapters
    python bench/bench_adapters.py --out runs/bench_adapters --only full,lora --layers 1,2,6

Prints a Markdown table and writes ``<out>/results.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNS = {  # name -> (command, recipe, overrides)
    "full": ("finetune", "recipes/finetune_phrasebank.yaml", []),
    "lora": ("finetune", "recipes/finetune_lora.yaml", []),
    "qlora": ("qlora", "recipes/qlora_minilm.yaml", []),
    "gamba": ("finetune", "recipes/gamba.yaml", []),
}


def run(args: list[str], log: Path) -> tuple[int, float, float]:
    """Run the CLI with ``args``; ``(exit code, wall seconds, peak RSS MiB)``; output goes to ``log``."""
    start = time.perf_counter()
    with log.open("w", encoding="utf-8") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "finsent_cli", *args], stdout=fh, stderr=subprocess.STDOUT, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), time.perf_counter() - start, usage.ru_maxrss / 1024


def final_metrics(run_dir: Path) -> dict[str, dict]:
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        if event.get("event") == "final":
            out[event["split"]] = event
    return out


def from_log(log: Path) -> dict:
    text = log.read_text(encoding="utf-8")
    params = re.findall(r"trainable parameters: ([\d,]+) of ([\d,]+)", text)
    seconds = re.findall(r"complete after \d+ steps \((\d+(?:\.\d+)?)s of training\)", text.replace("\n", " "))
    return {
        "trainable_params": int(params[-1][0].replace(",", "")) if params else None,
        "total_params": int(params[-1][1].replace(",", "")) if params else None,
        "train_seconds": float(seconds[-1]) if seconds else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench_adapters")
    ap.add_argument("--only", default="full,lora,qlora,mamba,gamba", help="comma-separated subset")
    ap.add_argument("--layers", default="1,2", help="model.adapter.num_layers values of the Mamba sweep")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    only = args.only.split(",")
    for name in [n for n in RUNS if n in only]:
        if name in results:
            continue
        command, recipe, overrides = RUNS[name]
        run_dir = args.out / name
        code, wall, rss = run([command, recipe, *overrides, f"output_dir={run_dir}"], args.out / f"{name}.log")
        if code != 0:
            sys.exit(f"{name}: exit {code}, see {args.out / f'{name}.log'}")
        final = final_metrics(run_dir)
        results[name] = {
            "valid_accuracy": final["valid"]["accuracy"], "valid_macro_f1": final["valid"]["macro_f1"],
            "test_accuracy": final["test"]["accuracy"], "test_macro_f1": final["test"]["macro_f1"],
            "peak_rss_mib": rss, "wall_seconds": wall, **from_log(args.out / f"{name}.log"),
        }  # fmt: skip
        results_path.write_text(json.dumps(results, indent=2))
    if "mamba" in only and "mamba_sweep" not in results:
        sweep = args.out / "mamba"
        cmd = ["finetune", "recipes/mamba_adapter.yaml", f"output_dir={sweep}"]
        cmd += ["--sweep", f"model.adapter.num_layers={args.layers}", "--sweep", "model.adapter.scan=tokens,cls"]
        code, wall, rss = run(cmd, args.out / "mamba.log")
        if code != 0:
            sys.exit(f"mamba sweep: exit {code}, see {args.out / 'mamba.log'}")
        rows = list(csv.DictReader((sweep / "sweep.csv").open(encoding="utf-8")))
        results["mamba_sweep"] = {"wall_seconds": wall, "peak_rss_mib_process": rss, "rows": rows}
        results_path.write_text(json.dumps(results, indent=2))

    print(f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; date {time.strftime('%Y-%m-%d')}")
    print("| configuration | trainable params | valid acc | valid macro-F1 | test acc | test macro-F1 | train time (s) | peak RSS (MiB) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")

    def line(label: str, r: dict) -> None:
        f = lambda k: f"{float(r[k]):.4f}"
        print(
            f"| {label} | {int(r['trainable_params']):,} | {f('valid_accuracy')} | {f('valid_macro_f1')} | {f('test_accuracy')} "
            f"| {f('test_macro_f1')} | {float(r['train_seconds']):.0f} | {float(r['peak_rss_mib']):.0f} |"
        )

    for name in RUNS:
        if name in results:
            line(name, results[name])
    for row in results.get("mamba_sweep", {}).get("rows", []):
        line(f"mamba scan={row['model.adapter.scan']} layers={row['model.adapter.num_layers']}", row)


if __name__ == "__main__":
    main()
