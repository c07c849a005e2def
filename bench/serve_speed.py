"""`finsent serve` under load, side by side: 1 and 2 workers, torch and onnx-int8, against offline `finsent
predict` on the same headlines and backend, and against the server a user would write in 20 lines
(``bench/plain_server.py``: FastAPI + ``transformers.pipeline``), at 1, 16 and 64 clients.

Run by hand (not a test), on an otherwise idle machine::

    FINSENT_DATA_DIR=../shared/data python bench/serve_speed.py [--model FOLDER] [--seconds 10]

Without ``--model`` it serves finsent's default model, merged into a plain folder first (``finsent finetune
--merge``) so that the pipeline can load the same weights, and exported (``finsent export --onnx --int8``)
for the onnx-int8 rows; all of it in a temporary folder.

Each server is a real process; the load comes from another process: ``wrk`` (Debian's ``wrk``; a Lua script
sends one PhraseBank headline per request, in turn, over keep-alive connections, closed loop) or, without
wrk, a Python client process. Loopback only; each cell is bounded by ``--seconds`` after a 2-second warm-up.
Offline predict is ``predict_input`` on the same headlines written to a file (what ``finsent predict`` runs,
model loading excluded), in a subprocess with torch's default threads. Prints a markdown table for
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FINSENT_DATA_DIR", REPO.parent / "shared" / "data"))
LUA = """
local bodies, i = {}, 0
function init(args) for line in io.lines(args[1]) do bodies[#bodies + 1] = line end end
function request()
  i = i % #bodies + 1
  return wrk.format("POST", "/v1/predict", {["Content-Type"] = "application/json"}, bodies[i])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests": %d, "seconds": %.3f, "p50_ms": %.2f, "p99_ms": %.2f, "errors": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def env() -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))  # fmt: skip


def headlines() -> list[str]:
    path = DATA / "phrasebank" / "splits" / "50agree_test.csv"
    if path.is_file():
        with path.open(encoding="utf-8", newline="") as fh:
            return [row["text"] for row in csv.DictReader(fh)]
    return [f"Company {i} reports quarterly profit up {i % 40}% as revenue grows" for i in range(1000)]


def finsent(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "finsent_cli", *args], check=True, env=env(), stdout=subprocess.DEVNULL)


def prepare(model: str | None, work: Path) -> str:
    """A plain model folder (the pipeline loads it) with its ONNX graphs."""
    if model is None:
        sys.path.insert(0, str(REPO))
        from finsent_cli.core.runs import find_model

        folder = work / "model"
        finsent("finetune", "--merge", str(find_model(None)), "--output", str(folder))
        model = str(folder)
    if not (Path(model) / "onnx").exists():
        finsent("export", model, "--onnx", "--int8")
    return model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(kind: str, model: str, workers: int, backend: str) -> tuple[subprocess.Popen[str], str]:
    """A server process and its URL, once it answers."""
    port = free_port()
    if kind == "plain":
        args = [sys.executable, str(REPO / "bench" / "plain_server.py"), model, str(port)]
    else:
        args = [sys.executable, "-m", "finsent_cli", "serve", "--model", model, "--port", str(port), "--workers", str(workers),
                "--backend", backend, "--engine", kind]  # fmt: skip
    proc = subprocess.Popen(args, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            body = json.dumps({"texts": ["Shares rose."]}).encode()
            req = urllib.request.Request(f"{url}/v1/predict", body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as res:
                if res.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"{' '.join(args)} did not start")


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def load(url: str, bodies: Path, lua: Path, clients: int, seconds: float) -> dict[str, float]:
    """One cell: ``clients`` closed-loop clients for ``seconds`` (after a 2 s warm-up), from another process."""
    if shutil.which("wrk"):
        def run(s: float) -> dict[str, float]:
            out = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{s:g}s", "-s", str(lua), url, "--", str(bodies)],
                                 capture_output=True, text=True, check=True).stdout  # fmt: skip
            return json.loads(out.strip().splitlines()[-1])
    else:
        def run(s: float) -> dict[str, float]:
            out = subprocess.run([sys.executable, __file__, "--client", url, str(bodies), str(clients), str(s)],
                                 capture_output=True, text=True, check=True).stdout  # fmt: skip
            return json.loads(out.strip().splitlines()[-1])
    run(2)
    return run(seconds)


def client(url: str, bodies_path: str, clients: int, seconds: float) -> None:
    """The load without wrk: ``clients`` keep-alive connections (httpx), closed loop, one JSON line out."""
    import httpx
    import numpy as np

    bodies = Path(bodies_path).read_text(encoding="utf-8").splitlines()
    latencies: list[float] = []
    errors = [0]
    at = [0]

    async def one(http: httpx.AsyncClient, end: float) -> None:
        while time.perf_counter() < end:
            at[0] += 1
            started = time.perf_counter()
            res = await http.post("/v1/predict", content=bodies[at[0] % len(bodies)], headers={"Content-Type": "application/json"})
            latencies.append(time.perf_counter() - started)
            errors[0] += res.status_code != 200

    async def main() -> float:
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
            started = time.perf_counter()
            await asyncio.gather(*(one(http, started + seconds) for _ in range(clients)))
            return time.perf_counter() - started

    took = asyncio.run(main())
    p50, p99 = (float(np.percentile(latencies, q)) * 1000 for q in (50, 99))
    print(json.dumps({"requests": len(latencies), "seconds": took, "p50_ms": p50, "p99_ms": p99, "errors": errors[0]}))


def offline(model: str, texts: list[str], backend: str, work: Path) -> float:
    """``finsent predict``'s rate on the same headlines (``predict_input`` to a file; loading excluded)."""
    src = work / "headlines.txt"
    src.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    call = f"predict_input({str(src)!r}, {model!r}, backend={backend!r}, output={str(work / 'out.csv')!r}, fresh=True)"
    code = f"from finsent_cli.core.predict.run import predict_input\n{call}\nr = {call}\nprint(r.records / r.seconds)"  # warm, then timed
    out = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="a plain model folder (default: finsent's default model, merged)")
    parser.add_argument("--clients", default="1,16,64")
    parser.add_argument("--seconds", type=float, default=10.0, help="each cell's length, after a 2 s warm-up")
    parser.add_argument("--backends", default="torch,onnx-int8")
    parser.add_argument("--workers", default="1,2", help="finsent serve's worker counts")
    parser.add_argument("--no-plain", action="store_true", help="leave out the FastAPI + pipeline server")
    parser.add_argument("--ray", action="store_true", help="also --engine ray with 2 replicas (torch)")
    parser.add_argument("--client", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client(args.client[0], args.client[1], int(args.client[2]), float(args.client[3]))
        return
    texts = headlines()
    clients = [int(c) for c in args.clients.split(",")]
    with tempfile.TemporaryDirectory(prefix="serve-speed-") as tmp:
        work = Path(tmp)
        model = prepare(args.model, work)
        bodies, lua = work / "bodies.jsonl", work / "load.lua"
        bodies.write_text("".join(json.dumps({"texts": [t]}) + "\n" for t in texts), encoding="utf-8")
        lua.write_text(LUA, encoding="utf-8")
        configs = [("local", int(w), b) for b in args.backends.split(",") for w in args.workers.split(",")]
        configs += [] if args.no_plain else [("plain", 1, "torch")]
        if args.ray:
            configs.append(("ray", 2, "torch"))
        backends = args.backends.split(",")
        before = {b: offline(model, texts * 3, b, work) for b in backends}  # and again after: the machine drifts
        rows = []
        for kind, workers, backend in configs:
            proc, url = start(kind, model, workers, backend)
            try:
                for n in clients:
                    r = load(url, bodies, lua, n, args.seconds)
                    rate = r["requests"] / r["seconds"]
                    rows.append((kind, workers, backend, n, rate, r["p50_ms"], r["p99_ms"], r["errors"]))
                    print(f"{kind:5} workers {workers} {backend:9} clients {n:3d}: {rate:6.1f} texts/s  p50 {r['p50_ms']:7.1f} ms  "
                          f"p99 {r['p99_ms']:7.1f} ms  errors {r['errors']}", file=sys.stderr, flush=True)  # fmt: skip
            finally:
                stop(proc)
        after = {b: offline(model, texts * 3, b, work) for b in backends}
        ceilings = {b: (before[b] + after[b]) / 2 for b in backends}
    cpu = platform.processor()
    if Path("/proc/cpuinfo").is_file():
        cpu = next((x.split(":", 1)[1].strip() for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("model name")), cpu)
    loader = "wrk" if shutil.which("wrk") else "a Python client process"
    print(f"\n{args.model or 'default model (merged)'}; one PhraseBank headline per request, load from {loader}, "
          f"{args.seconds:g} s a cell; {cpu}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}\n")
    print("| server | backend | clients | texts/s | vs offline predict | p50 ms | p99 ms |\n| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    plain = {n: rate for kind, _, _, n, rate, *_ in rows if kind == "plain"}
    for kind, workers, backend, n, rate, p50, p99, errors in rows:
        name = {"local": f"finsent serve, {workers} worker{'s' if workers > 1 else ''}", "plain": "FastAPI + pipeline (20 lines)",
                "ray": f"finsent serve --engine ray, {workers} replicas"}[kind]  # fmt: skip
        extra = f" ({rate / plain[n]:.1f}x plain)" if kind != "plain" and n in plain and backend == "torch" else ""
        bad = f" ({errors} errors)" if errors else ""
        print(f"| {name} | {backend} | {n} | {rate:.0f}{extra}{bad} | {rate / ceilings[backend]:.2f} | {p50:.1f} | {p99:.1f} |")
    for backend, rate in ceilings.items():
        print(f"| offline `finsent predict` (before / after the servers) | {backend} | - | {rate:.0f} ({before[backend]:.0f} / {after[backend]:.0f}) | 1.00 | - | - |")


if __name__ == "__main__":
    main()
