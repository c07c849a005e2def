"""`finsent serve` under load: throughput and latency at 1, 16 and 64 concurrent clients, micro-batching on
and off, against the ceiling of `predict` on the same headlines.

Run by hand (not a test), from a folder without ``runs/`` to get finsent's default model, or with a model::

    FINSENT_DATA_DIR=../shared/data python bench/serve_speed.py [--model runs/finetune_phrasebank/best]

Each server is a real ``finsent serve --port 0`` process (the clients run in this one, so they do not take
the server's interpreter); every client sends one headline per request, back to back (closed loop), the way
an online caller does. Headlines: PhraseBank 50agree test sentences (``$FINSENT_DATA_DIR``), else synthetic
ones. Prints a markdown table for ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]


def headlines(n: int) -> list[str]:
    data = Path(os.environ.get("FINSENT_DATA_DIR", REPO.parent / "shared" / "data")) / "phrasebank" / "splits" / "50agree_test.csv"
    if data.is_file():
        with open(data, encoding="utf-8", newline="") as fh:
            texts = [row["text"] for row in csv.DictReader(fh)]
    else:
        texts = [f"Company {i} reports quarterly profit up {i % 40}% as revenue grows" for i in range(n)]
    return (texts * (n // max(len(texts), 1) + 1))[:n]


def start_server(model: str | None, batching: bool, extra: list[str]) -> tuple[subprocess.Popen[str], str]:
    args = [sys.executable, "-m", "finsent_cli", "serve", "--port", "0", "--log-level", "warning"]
    args += (["--model", model] if model else []) + ([] if batching else ["--no-batching"]) + extra
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    for line in proc.stderr:
        found = re.search(r" at (http://\S+) ", line)
        if found:
            return proc, found.group(1)
    raise SystemExit("finsent serve did not start")


async def load(url: str, texts: list[str], clients: int, requests: int) -> tuple[float, list[float]]:
    import httpx

    todo = iter(range(requests))
    latencies: list[float] = []

    async def client(http: httpx.AsyncClient) -> None:
        for i in todo:
            t = time.perf_counter()
            res = await http.post("/v1/predict", json={"texts": [texts[i % len(texts)]]})
            res.raise_for_status()
            latencies.append(time.perf_counter() - t)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        await http.post("/v1/predict", json={"texts": texts[:8]})  # warm-up
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        seconds = time.perf_counter() - started
    return requests / seconds, latencies


def ceiling(model: str | None, texts: list[str]) -> float:
    """``predict``'s rate on the same headlines in one process (model loaded beforehand)."""
    from finsent_cli.core.inference.loading import load_classifier
    from finsent_cli.core.predict.inputs import InputRecord
    from finsent_cli.core.predict.run import PredictOptions, predict_records
    from finsent_cli.core.runs import find_model

    clf = load_classifier(find_model(model))
    records = [InputRecord(i, t) for i, t in enumerate(texts, start=1)]
    predict_records(clf, records[:64], PredictOptions())
    started = time.perf_counter()
    predict_records(clf, records, PredictOptions())
    return len(texts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="model folder (default: what finsent serve picks)")
    parser.add_argument("--clients", default="1,16,64")
    parser.add_argument("--requests", type=int, default=400, help="requests per cell (one headline each)")
    parser.add_argument("--serve-arg", action="append", default=[], help="extra finsent serve argument (repeat)")
    args = parser.parse_args()
    texts = headlines(2000)
    rows = []
    for batching in (True, False):
        proc, url = start_server(args.model, batching, args.serve_arg)
        try:
            for n in map(int, args.clients.split(",")):
                rate, lat = asyncio.run(load(url, texts, n, max(args.requests, n)))
                p50, p99 = (float(np.percentile(lat, q)) * 1000 for q in (50, 99))
                rows.append((n, "on" if batching else "off", rate, p50, p99))
                print(f"clients {n:3d} batching {'on ' if batching else 'off'}: {rate:7.1f} texts/s  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms", file=sys.stderr)
        finally:
            proc.terminate()
            proc.wait(60)
    top = ceiling(args.model, texts)
    cpu = platform.processor()
    if Path("/proc/cpuinfo").is_file():
        cpu = next((x.split(":", 1)[1].strip() for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("model name")), cpu)
    print(f"\n`finsent serve` ({args.model or 'default model'}), one headline per request, {args.requests} requests a cell; "
          f"{cpu}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}\n")
    print("| clients | micro-batching | texts/s | p50 ms | p99 ms |\n| ---: | --- | ---: | ---: | ---: |")
    for n, on, rate, p50, p99 in rows:
        print(f"| {n} | {on} | {rate:.0f} | {p50:.1f} | {p99:.1f} |")
    print(f"| - | `predict` (ceiling, {len(texts)} headlines in one process) | {top:.0f} | - | - |")


if __name__ == "__main__":
    main()
