"""Benchmark T5 pretraining throughput: finsent's T5 vs ``transformers.T5ForConditionalGeneration``.

Both models get the same config, the same weights and the same packed span-corruption batches (every
encoder input exactly ``--seq`` tokens, targets of the length that follows, no padding); one training
step is forward + backward + AdamW. Steps of the two models are timed round-robin (a, b, a, b, ...) so
that load from other processes hits both alike; the result is the median step time and tokens/s
(encoder + decoder tokens), and their ratio. The first step's losses must agree (same function).

Run (a few minutes on 2 CPU cores)::

    python bench/bench_t5_train.py --size t5_tiny --seq 128 --batch 32 --dtype fp32 bf16
    python bench/bench_t5_train.py --size t5_small --seq 512 --batch 64 --dtype bf16 --device cuda   # on a GPU
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_t5_slim import cpu_name

from finsent_cli.core.data.spans import SpanCorruption
from finsent_cli.core.models.t5 import FinT5ForConditionalGeneration, save_t5, t5_config

VOCAB = 16000  # finsent's tokenizer


def batches(seq: int, batch: int, n: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """``n`` span-corrupted batches of random token blocks (throughput does not depend on the text)."""
    sentinels = np.arange(VOCAB - 1, VOCAB - 101, -1)
    corruption = SpanCorruption(seq, sentinels, 1, seed=seed)
    raw = corruption.lengths[0]
    rng = np.random.default_rng(seed)
    out = []
    for b in range(n):
        pairs = [corruption(rng.integers(3, VOCAB - 100, raw), 0, b * batch + i) for i in range(batch)]
        out.append(
            {
                "input_ids": torch.from_numpy(np.stack([p[0] for p in pairs])),
                "labels": torch.from_numpy(np.stack([p[1] for p in pairs])),
            }
        )
    return out


def build_pair(size: str, device: str, compile_ours: bool) -> tuple[torch.nn.Module, torch.nn.Module]:
    """finsent's T5 and transformers' T5 with identical weights."""
    from transformers import T5ForConditionalGeneration

    logging.getLogger("transformers").setLevel(logging.ERROR)
    torch.manual_seed(0)
    ours = FinT5ForConditionalGeneration(t5_config(size, vocab_size=VOCAB))
    with tempfile.TemporaryDirectory() as tmp:  # the tested route: a folder written by finsent, read by transformers
        save_t5(ours, tmp)
        hf = T5ForConditionalGeneration.from_pretrained(tmp)
    ours, hf = ours.to(device).train(), hf.to(device).train()
    if compile_ours:
        ours.compile()
    return ours, hf


def step_fn(model: torch.nn.Module, opt: torch.optim.Optimizer, device: str, dtype: str):
    """One training step on a batch; returns the loss."""
    amp = torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=dtype == "bf16")

    def run(batch: dict[str, torch.Tensor]) -> float:
        with amp:
            loss = model(input_ids=batch["input_ids"].to(device), labels=batch["labels"].to(device)).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return float(loss.detach())

    return run


def measure(args: argparse.Namespace, dtype: str) -> dict:
    ours, hf = build_pair(args.size, args.device, args.compile)
    data = batches(args.seq, args.batch, args.steps + args.warmup)
    tokens = int(data[0]["input_ids"].numel() + data[0]["labels"].numel())
    runs = {
        "finsent": step_fn(ours, torch.optim.AdamW(ours.parameters(), lr=1e-4), args.device, dtype),
        "transformers": step_fn(hf, torch.optim.AdamW(hf.parameters(), lr=1e-4), args.device, dtype),
    }
    first = {name: fn(data[0]) for name, fn in runs.items()}  # the same weights and batch: the same loss
    for b in data[1 : args.warmup]:
        for fn in runs.values():
            fn(b)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for b in data[args.warmup :]:
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn(b)
            times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    return {
        "dtype": dtype, "first_loss": first, "step_s": med, "tokens_per_s": {n: tokens / t for n, t in med.items()},
        "speedup": med["transformers"] / med["finsent"], "tokens_per_step": tokens,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="t5_tiny")
    parser.add_argument("--seq", type=int, default=128, help="encoder input length (targets follow)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--dtype", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true", help="torch.compile finsent's model")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    print(f"# T5 training throughput, {args.size}, batch {args.batch} x {args.seq} tokens, {datetime.date.today()}")
    print(
        f"# {cpu_name() if args.device == 'cpu' else torch.cuda.get_device_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    results = []
    for dtype in args.dtype:
        r = measure(args, dtype)
        results.append(r)
        print(
            f"| {dtype} | {r['tokens_per_s']['finsent']:,.0f} | {r['tokens_per_s']['transformers']:,.0f} | {r['speedup']:.2f}x | "
            f"{r['step_s']['finsent']:.3f} s vs {r['step_s']['transformers']:.3f} s | first loss {r['first_loss']['finsent']:.4f} / {r['first_loss']['transformers']:.4f} |",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "results": results}, indent=2))


if __name__ == "__main__":
    main()
