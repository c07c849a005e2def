"""Benchmark slim-attention decoding (Graef & Wasielewski 2025, arXiv 2503.05840) for finsent's T5.

Measures, for greedy decoding with a precomputed encoder output (the encoder is excluded from every
timing), the decoder cache size and decode throughput of

* finsent, slim cache (K-only self-attention, encoder output E only for cross-attention),
* finsent, full K/V cache,
* ``transformers.T5ForConditionalGeneration.generate`` with the same weights (its own full K/V cache),

at the batch sizes and source lengths given. Random weights (throughput does not depend on them); all
three must produce the same tokens, which is checked and reported.

``--task score`` times text-to-text scoring instead (``score_targets`` of three two-token targets, the
encoder included, as ``finsent predict`` runs a text2text model). Each row also shows ``finsent auto``,
the cache ``choose_mode`` picks for that call (``cache="auto"``, the default), timed on its own: where it
picks full it runs the same code as the full row, and the two differ by timing noise only.

Run (about 3 minutes on 2 CPU cores)::

    python bench/bench_t5_slim.py --out docs/bench_t5_slim.md
    python bench/bench_t5_slim.py --size t5_tiny --batch 1 8 --src-len 128 --new-tokens 16   # quicker
    python bench/bench_t5_slim.py --no-hf --batch 1 4 16 64 --src-len 32 128 512 --task score
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from finsent_cli.core.models.t5 import build_t5, cache_bytes, save_t5
from finsent_cli.core.models.t5.cache import choose_mode


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed_interleaved(fns: dict, repeats: int) -> dict[str, tuple[float, torch.Tensor]]:
    """Median wall time and last output of each ``fn()``, after one warm-up each.

    Methods are timed round-robin (a, b, c, a, b, c, ...) so that load from other processes on a
    shared machine hits all of them alike.
    """
    outs = {name: fn() for name, fn in fns.items()}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync()
            t0 = time.perf_counter()
            outs[name] = fn()
            _sync()
            times[name].append(time.perf_counter() - t0)
    return {name: (statistics.median(times[name]), outs[name]) for name in fns}


def load_average() -> str:
    try:
        return " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--size", default="t5_small", help="named size (t5_tiny, t5_small, t5_base)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    p.add_argument("--src-len", type=int, nargs="+", default=[128, 512])
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3, help="timed runs per point (median reported); 1 at batch >= 32")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--no-hf", action="store_true", help="skip transformers' generate")
    p.add_argument("--task", choices=["generate", "score"], default="generate",
                   help="greedy decoding (encoder not timed) or text2text scoring of 3 targets (encoder timed)")
    p.add_argument("--out", type=Path, help="write the markdown section here")
    args = p.parse_args()
    logging.getLogger("transformers").setLevel(logging.ERROR)

    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    model = build_t5(args.size).eval().to(device=args.device, dtype=dtype)
    cfg = model.config
    hf = None
    if not args.no_hf:
        from transformers import T5ForConditionalGeneration

        with tempfile.TemporaryDirectory() as tmp:
            save_t5(model, tmp)
            hf = T5ForConditionalGeneration.from_pretrained(tmp, dtype=dtype).eval().to(args.device)
    N = args.new_tokens

    load_before = load_average()
    rows = []
    for B in args.batch:
        for S in args.src_len:
            g = torch.Generator().manual_seed(B * 1000 + S)
            ids = torch.randint(2, cfg.vocab_size, (B, S), generator=g).to(args.device)
            mask = torch.ones_like(ids)
            with torch.no_grad():
                t0 = time.perf_counter()
                enc = model.encode(ids, mask)
                t_enc = time.perf_counter() - t0
            repeats = 1 if B >= 32 else args.repeats
            if args.task == "score":
                targets = [[5, 1], [6, 1], [7, 1]]  # three two-token label words, as text2text scores them
                rows_, steps = B * len(targets), 2
                fns = {
                    f"finsent {mode}": (lambda mode=mode: model.score_targets(ids, mask, targets, cache=mode))
                    for mode in ("slim", "full", "auto")
                }
            else:
                rows_, steps = B, N
                fns = {
                    f"finsent {mode}": (
                        lambda mode=mode: model.generate(
                            attention_mask=mask, encoder_outputs=enc, max_new_tokens=N, cache=mode, stop_on_eos=False
                        )
                    )
                    for mode in ("slim", "full", "auto")
                }
            auto = choose_mode(rows_, S, steps)
            nbytes = {
                name: cache_bytes(cfg, rows_, S, steps, auto if name.endswith("auto") else name.split()[1], dtype)["total"]
                for name in fns
            }
            if hf is not None and args.task == "generate":
                from transformers.modeling_outputs import BaseModelOutput

                def hf_generate():
                    with torch.no_grad():
                        return hf.generate(
                            input_ids=ids, attention_mask=mask, encoder_outputs=BaseModelOutput(last_hidden_state=enc),
                            max_new_tokens=N, min_new_tokens=N, do_sample=False, num_beams=1,
                        )

                fns["transformers generate"] = hf_generate
                nbytes["transformers generate"] = cache_bytes(cfg, B, S, N, "full", dtype)["total"]
            timings = timed_interleaved(fns, repeats)
            results = {name: (*timings[name], nbytes[name]) for name in fns}
            ref_tokens = results["finsent full"][1]
            per = N if args.task == "generate" else 1
            full_tps = B * per / results["finsent full"][0]
            for name, (t, tokens, n_bytes) in results.items():
                if args.task == "score":  # same label for every input, scores within 1e-3
                    same = bool(torch.equal(tokens.argmax(-1), ref_tokens.argmax(-1))) and float(
                        (tokens - ref_tokens).abs().max()
                    ) < 1e-3
                else:
                    same = tokens.shape == ref_tokens.shape and bool(torch.equal(tokens.cpu(), ref_tokens.cpu()))
                tps = B * per / t
                if name.endswith("auto"):
                    name = f"finsent auto ({auto})"
                rows.append((B, S, name, n_bytes / 2**20, tps, tps / full_tps, same, t_enc))
                print(f"B={B:3d} S={S:4d} {name:22s} cache {n_bytes / 2**20:9.1f} MiB  {tps:9.1f} tok/s  "
                      f"x{tps / full_tps:4.2f} vs full  same tokens: {same}  (encoder {t_enc:.2f}s)", flush=True)

    dev = cpu_name() + f", {torch.get_num_threads()} threads" if args.device == "cpu" else torch.cuda.get_device_name()
    lines = [
        "## T5 slim-attention decoding (issue 4)",
        "",
        f"- machine: {dev}; torch {torch.__version__}; {args.dtype}; "
        f"date {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"- model: `{args.size}` ({sum(p.numel() for p in model.parameters()) / 1e6:.0f}M params, random weights), "
        f"greedy, {N} new tokens, encoder output precomputed (not timed); median of {args.repeats} runs "
        "(1 run at batch >= 32) after a warm-up, methods interleaved",
        f"- load average (1/5/15 min) before: {load_before}, after: {load_average()} "
        "(a shared machine: other jobs ran during the measurement)",
        f"- command: `python bench/bench_t5_slim.py --size {args.size} --batch {' '.join(map(str, args.batch))} "
        f"--src-len {' '.join(map(str, args.src_len))} --new-tokens {N} --dtype {args.dtype} --task {args.task}`",
        "- cache = decoder cache for the whole call (self-attention for the new tokens + cross-attention); "
        "transformers keeps a full K/V cache, the same bytes as `finsent full`",
        "",
        f"| batch | src len | method | cache (MiB) | {'decode tok/s' if args.task == 'generate' else 'texts/s'} | vs finsent full | same {'tokens' if args.task == 'generate' else 'labels'} |",
        "|---:|---:|---|---:|---:|---:|:---:|",
    ]
    for B, S, name, mib, tps, rel, same, _ in rows:
        lines.append(f"| {B} | {S} | {name} | {mib:.1f} | {tps:.1f} | {rel:.2f}x | {'yes' if same else 'NO'} |")
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
