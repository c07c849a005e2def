"""Benchmark the Mamba adapter's SSD scan paths (Dao & Gu 2024, "Transformers are SSMs", arXiv 2405.21060).

Times forward + backward of a ``MambaAdapter`` (random weights, right-padded batch) and of its scan alone
at the adapter's shapes, for each path in one run, interleaved:

* CPU: ``ssd_scan_torch`` (chunked SSD) against ``ssd_scan_ref`` (step-by-step recurrence);
* CUDA, when present: mamba-ssm's kernels (``kernels: auto``, when installed) against the PyTorch path
  (``kernels: off``), in bf16 autocast by default.

Every path must give the same output as the PyTorch path; the largest difference is reported.

Run (about 15 s on 2 idle CPU cores; several times that on a loaded machine)::

    python bench/bench_mamba.py
    python bench/bench_mamba.py --hidden 768 --seq-len 128 --repeats 3 --out docs/bench_mamba.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import torch

from finsent_cli.core.models.mamba import MambaAdapter, kernels_available, select_scan, ssd_scan_ref


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def load_average() -> str:
    try:
        return " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_interleaved(
    fns: dict[str, Callable[[], torch.Tensor]], repeats: int, device: torch.device
) -> dict[str, tuple[float, torch.Tensor]]:
    """Median wall time and last output of each ``fn()``, after one warm-up each, timed round-robin so
    that load from other processes on a shared machine hits all paths alike."""
    outs = {name: fn() for name, fn in fns.items()}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            outs[name] = fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: (statistics.median(times[name]), outs[name]) for name in fns}


def set_path(model: MambaAdapter, kernels: str, scan_fn: Callable | None) -> None:
    """Point every mixer of ``model`` at a path (``scan_fn`` overrides the dispatched scan)."""
    for block in model.blocks:
        block.mixer.kernels = kernels
        block.mixer.scan_fn = scan_fn


def adapter_step(model, hidden, mask, pooled, kernels: str, scan_fn, dtype) -> Callable[[], torch.Tensor]:
    def step() -> torch.Tensor:
        set_path(model, kernels, scan_fn)
        model.zero_grad(set_to_none=True)
        with torch.autocast(hidden.device.type, dtype=dtype, enabled=dtype != torch.float32):
            out = model(hidden, mask, pooled)
        out.float().pow(2).mean().backward()
        return out.detach().float()

    return step


def scan_step(scan, args: tuple[torch.Tensor, ...], chunk_size: int) -> Callable[[], torch.Tensor]:
    def step() -> torch.Tensor:
        leaves = [a.detach().requires_grad_(a.is_floating_point()) for a in args]
        y = scan(*leaves, chunk_size=chunk_size)
        y.float().pow(2).mean().backward()
        return y.detach().float()

    return step


def measure(args: argparse.Namespace, device: torch.device, paths: dict[str, tuple[str, Callable | None]], dtype):
    """Rows ``(part, path, ms, x vs torch, max |diff| vs torch)`` for the adapter and its scan alone."""
    torch.manual_seed(0)
    H, B, T = args.hidden, args.batch, args.seq_len
    model = MambaAdapter(H, num_layers=args.layers, head_dim=args.head_dim, dropout=0.0, kernels="off").to(device)
    torch.nn.init.normal_(model.readout.proj.weight, std=0.02)  # as after training: gradients reach every block
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(B, T, H, generator=g).to(device)
    lengths = torch.randint(T // 4, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).long().to(device)  # (B, T) right padding
    pooled = torch.randn(B, H, generator=g).to(device)

    mixer = model.blocks[0].mixer
    nh, hd, n = mixer.nheads, mixer.head_dim, mixer.d_state
    sdt = dtype if device.type == "cuda" else torch.float32
    scan_args = (
        torch.randn(B, T, nh, hd, generator=g).to(device, sdt),  # x
        torch.nn.functional.softplus(torch.randn(B, T, nh, generator=g) - 2).to(device),  # dt
        -torch.exp(mixer.A_log.detach().float()),  # A
        torch.randn(B, T, 1, n, generator=g).to(device, sdt),  # B
        torch.randn(B, T, 1, n, generator=g).to(device, sdt),  # C
        mixer.D.detach().float(),  # D
    )
    rows = []
    for part, fns in (
        ("adapter fwd+bwd", {k: adapter_step(model, hidden, mask, pooled, *v, dtype) for k, v in paths.items()}),
        ("scan fwd+bwd", {k: scan_step(v[1] or select_scan(v[0], device), scan_args, mixer.chunk_size)
                          for k, v in paths.items()}),
    ):  # fmt: skip
        timings = timed_interleaved(fns, args.repeats, device)
        base_t, base_out = timings["torch"]
        for name, (t, out) in timings.items():
            diff = (out - base_out).abs().max().item()
            rows.append((device.type, part, name, t * 1e3, base_t / t, diff))
            print(f"{device.type:4s} {part:16s} {name:8s} {t * 1e3:9.2f} ms  x{base_t / t:6.2f} vs torch  "
                  f"max |diff| {diff:.2e}", flush=True)  # fmt: skip
    return rows


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--hidden", type=int, default=384, help="encoder hidden size H")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--head-dim", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3, help="timed runs per path (median reported)")
    p.add_argument("--cuda-dtype", default="bfloat16", choices=["float32", "bfloat16"], help="autocast dtype on CUDA")
    p.add_argument("--no-cuda", action="store_true", help="skip the CUDA comparison")
    p.add_argument("--out", type=Path, help="write the markdown section here")
    args = p.parse_args()

    load_before = load_average()
    rows = measure(args, torch.device("cpu"), {"torch": ("off", None), "ref": ("off", ssd_scan_ref)}, torch.float32)
    machines = [f"CPU: {cpu_name()}, {torch.get_num_threads()} threads"]
    cuda_dtype = getattr(torch, args.cuda_dtype)
    if torch.cuda.is_available() and not args.no_cuda:
        paths = {"torch": ("off", None)}
        if kernels_available():
            paths["kernel"] = ("required", None)
        else:
            print("mamba-ssm not importable: CUDA runs the PyTorch path only")
        paths["ref"] = ("off", ssd_scan_ref)
        rows += measure(args, torch.device("cuda"), paths, cuda_dtype)
        machines.append(f"CUDA: {torch.cuda.get_device_name()}, {args.cuda_dtype} autocast")

    cmd = (
        f"python bench/bench_mamba.py --hidden {args.hidden} --batch {args.batch} --seq-len {args.seq_len} "
        f"--layers {args.layers} --head-dim {args.head_dim} --repeats {args.repeats}"
    )
    lines = [
        "## Mamba adapter: SSD scan paths",
        "",
        (
            f"- machine: {'; '.join(machines)}; torch {torch.__version__}; "
            f"date {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"
        ),
        (
            f"- model: `MambaAdapter` hidden {args.hidden}, {args.layers} layers, head_dim {args.head_dim} "
            f"(d_inner {2 * args.hidden}, {2 * args.hidden // args.head_dim} heads, d_state 16, chunk 64), random "
            f"weights; batch {args.batch} x {args.seq_len} tokens, right-padded; forward + backward, median of "
            f"{args.repeats} runs after a warm-up, paths interleaved"
        ),
        f"- load average (1/5/15 min) before: {load_before}, after: {load_average()}",
        f"- command: `{cmd}`",
        (
            "- `torch` = chunked SSD in PyTorch (`ssd_scan_torch`), `ref` = step-by-step recurrence "
            "(`ssd_scan_ref`), `kernel` = mamba-ssm's Triton scan + causal-conv1d; max |diff| is against `torch`"
        ),
        "",
        "| device | part | path | fwd+bwd (ms) | speed vs torch | max abs diff |",
        "|---|---|---|---:|---:|---:|",
    ]
    for dev, part, name, ms, rel, diff in rows:
        lines.append(f"| {dev} | {part} | {name} | {ms:.1f} | {rel:.2f}x | {diff:.1e} |")
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
