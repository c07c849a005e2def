"""`finsent serve --engine ray`: a real server on a local Ray started by the command, two replicas.

One server (one Ray start) is shared by the module: health, the load test's driver (nothing lost, reordered,
refused or wrong), the API key, the error bodies and limits, then SIGTERM (the drain, exit 0, no Ray process
left). A broken model folder gets its own short-lived server: a one-line reason, a non-zero exit, nothing left.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import HANG_GUARD_S, assert_one_line_error, run_cli
from tests.serve.conftest import ServeProcess, marked_env, processes_with, wait_gone

pytest.importorskip("ray.serve", reason="--engine ray needs Ray Serve: the ray extra (pip install -c constraints.txt -e '.[ray]')")
httpx = pytest.importorskip("httpx", reason="the tests' HTTP client (the test extra)")

KEY = "test-key-ray"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def ray_server(serve_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``(process, mark)``: ``finsent serve --engine ray --workers 2`` with an API key, up for the module."""
    env, mark = marked_env()
    env.pop("RAY_ADDRESS", None)  # a local Ray, started (and stopped) by the command
    started = time.monotonic()
    proc = ServeProcess(
        "--engine", "ray", "--workers", "2", "--model", str(serve_model), "--api-key", KEY, "--max-wait-ms", "2",
        cwd=tmp_path_factory.mktemp("ray_serve"), env=env,
    )  # fmt: skip
    print(f"\nray serve: ready in {time.monotonic() - started:.1f} s")
    yield proc, mark
    proc.kill()
    if proc.proc.returncode is not None:
        wait_gone(mark)


@pytest.mark.slow
def test_health_and_the_serving_line(ray_server: Any, serve_model: Path) -> None:
    proc, _ = ray_server
    res = httpx.get(f"{proc.url}/health", timeout=HANG_GUARD_S)  # no key needed
    assert res.status_code == 200, res.text
    health = res.json()
    assert health["model"] == str(serve_model) and health["model_loaded"] and health["auth"] is True
    assert any("on Ray Serve with 2 replicas" in line for line in proc.lines), proc.lines


@pytest.mark.slow
def test_load_nothing_lost_reordered_refused_or_wrong(ray_server: Any, serve_clf: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from tests.serve.test_load import REQUESTS, _drive, assert_matches_predict

    proc, _ = ray_server
    # the load test's own driver, with the key on every request (its client takes no headers)
    monkeypatch.setattr(httpx, "AsyncClient", functools.partial(httpx.AsyncClient, headers=AUTH))
    started = time.monotonic()
    out = asyncio.run(_drive(proc.url))
    seconds = time.monotonic() - started
    assert out["errors"] == [], out["errors"][:5]
    assert out["answered"] == REQUESTS

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # every answer is predict's, whatever replica and batch
        assert_matches_predict(out, serve_clf)
    finally:
        torch.set_num_threads(before)

    # /metrics is per replica: whichever answers must have gathered concurrent requests into shared passes
    res = httpx.get(f"{proc.url}/metrics", headers=AUTH, timeout=HANG_GUARD_S)
    assert res.status_code == 200, res.text
    samples = dict(line.rsplit(" ", 1) for line in res.text.splitlines() if line.startswith("finsent_batch_requests_"))
    batches, requests = float(samples["finsent_batch_requests_count"]), float(samples["finsent_batch_requests_sum"])
    assert 0 < batches < requests <= REQUESTS, samples
    print(f"\nray load: {REQUESTS} requests ({sum(map(len, out['bodies']))} texts) in {seconds:.1f} s; one replica: {requests:.0f} requests in {batches:.0f} batches")


@pytest.mark.slow
def test_api_key_error_bodies_and_limits_are_the_apps(ray_server: Any) -> None:
    proc, _ = ray_server
    with httpx.Client(base_url=proc.url, timeout=HANG_GUARD_S) as client:
        res = client.post("/v1/predict", json={"texts": ["shares rose"]})
        assert res.status_code == 401 and res.json()["field"] == "api_key", res.text
        assert res.headers["www-authenticate"] == "Bearer"
        res = client.post("/v1/predict", json={"texts": ["shares rose"]}, headers={"X-API-Key": KEY})
        assert res.status_code == 200 and [r["text"] for r in res.json()["results"]] == ["shares rose"]

        res = client.post("/v1/predict", content=b'{"texts": [', headers={**AUTH, "Content-Type": "application/json"})
        assert res.status_code == 422, res.text
        body = res.json()
        assert body["field"] == "body" and body["error"].startswith("malformed JSON"), body
        res = client.post("/v1/predict", json={"texts": ["x"] * 257}, headers=AUTH)
        assert res.status_code == 422 and res.json()["field"] == "texts", res.text
        res = client.post("/v1/predict", json={"texts": ["x" * (1 << 20)]}, headers=AUTH)
        assert res.status_code == 413 and res.json()["field"] == "body", res.text
        res = client.get("/nowhere")
        assert res.status_code == 404 and res.json()["field"] == "path", res.text
        res = client.get("/")
        assert res.status_code == 200 and res.headers["content-type"].startswith("text/html")
        res = client.get("/openapi.json")
        assert res.status_code == 200 and "/v1/predict" in res.json()["paths"]


@pytest.mark.slow
def test_sigterm_drains_exits_0_and_leaves_no_ray_process(ray_server: Any) -> None:
    """Requests keep coming while SIGTERM arrives. Each one sent before the signal (some are in flight) is
    answered in full; each one after is answered in full, refused with the drain's 503, or finds the server
    gone (a closed connection); nothing else (Ray's 404 or 500). Then exit 0 and none of its processes left."""
    proc, mark = ray_server
    assert any("raylet" in p for p in processes_with(mark)), "no raylet found: the mark does not reach Ray"
    outcomes: list[tuple[float, str]] = []  # (when the request was sent, what came back)
    answered = threading.Event()
    gone = threading.Event()

    def client() -> None:
        texts = [f"shares rose {i}" for i in range(16)]
        with httpx.Client(base_url=proc.url, timeout=HANG_GUARD_S, headers=AUTH) as c:
            while not gone.is_set():
                sent = time.monotonic()
                try:
                    res = c.post("/v1/predict", json={"texts": texts})
                except httpx.TransportError as exc:
                    outcomes.append((sent, f"gone ({type(exc).__name__})"))
                    gone.set()
                    return
                if res.status_code == 200:
                    whole = [r["text"] for r in res.json()["results"]] == texts
                    outcomes.append((sent, "200" if whole else "200 with rows lost or out of order"))
                elif res.status_code == 503 and res.json().get("status") == "draining":
                    outcomes.append((sent, "503"))
                else:
                    outcomes.append((sent, f"{res.status_code} {res.text[:200]}"))
                answered.set()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    assert answered.wait(HANG_GUARD_S)
    signalled = time.monotonic()
    code, err = proc.stop(signal.SIGTERM)
    stopped = time.monotonic() - signalled
    gone.set()
    for t in threads:
        t.join(HANG_GUARD_S)
    assert code == 0, err
    before = [what for sent, what in outcomes if sent < signalled]
    after = [what for sent, what in outcomes if sent >= signalled]
    assert before and set(before) == {"200"}, [w for w in before if w != "200"]
    assert all(w in ("200", "503") or w.startswith("gone") for w in after), after
    assert "draining" in err and err.rstrip().endswith("stopped") and "Traceback" not in err, err
    left = wait_gone(mark)
    assert left == [], left
    print(f"\nray serve: stopped in {stopped:.1f} s; answers after SIGTERM: {after.count('200')} x 200, {after.count('503')} x 503")


@pytest.mark.slow
def test_a_replica_that_cannot_load_the_model_stops_the_server(serve_model: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (broken / name).write_bytes((serve_model / name).read_bytes())
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    env, mark = marked_env()
    env.pop("RAY_ADDRESS", None)
    res = subprocess.run(
        [sys.executable, "-m", "finsent_cli", "serve", "--engine", "ray", "--port", "0", "--model", str(broken)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S, check=False,
    )  # fmt: skip
    assert res.returncode == 1, res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in res.stderr, res.stderr
    assert str(broken) in errors[0] and "cannot load the model" in errors[0], errors
    assert wait_gone(mark) == []


def test_without_ray_one_line_names_the_extra(serve_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the ray extra were not installed
    res = run_cli("serve", "--engine", "ray", "--model", str(serve_model))
    assert_one_line_error(res, "needs Ray Serve", "pip install", "[ray]", code=2)


def test_more_replicas_than_cpus_or_a_busy_port_fail_before_ray_starts(serve_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with monkeypatch.context() as m:
        m.setattr(os, "cpu_count", lambda: 2)
        res = run_cli("serve", "--engine", "ray", "--workers", "3", "--model", str(serve_model))
    assert_one_line_error(res, "--workers 3", "need 3 CPUs", "has 2", code=2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        res = run_cli("serve", "--engine", "ray", "--model", str(serve_model), "--port", str(s.getsockname()[1]))
    assert_one_line_error(res, "in use", code=1)
    assert not ray.is_initialized()
