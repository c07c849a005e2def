"""`finsent serve --workers 2`: real supervisor and worker processes on one port.

One server is shared by the module: both workers answer, the load test's driver (nothing lost, reordered,
refused or wrong), Prometheus counters summed across the workers whichever answers the scrape, a killed
worker replaced, then SIGTERM (drained, exit 0, no worker left). Failures get short-lived servers of their
own: a model that does not load (one line, exit 1, nothing left) and a killed supervisor (its workers go too).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import HANG_GUARD_S, CliResult, assert_one_line_error
from tests.serve.conftest import ServeProcess, marked_env, processes_with, wait_gone


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=HANG_GUARD_S) as res:  # a new connection each time
        return res.status, res.read().decode()


def _pids(url: str, want: int = 2) -> set[int]:
    """The worker processes that answer ``/health`` on new connections (until ``want`` are seen or the guard)."""
    seen: set[int] = set()
    deadline = time.monotonic() + HANG_GUARD_S
    while len(seen) < want and time.monotonic() < deadline:
        seen.add(json.loads(_get(f"{url}/health")[1])["pid"])
    return seen


def _sample(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


@pytest.fixture(scope="module")
def workers(serve_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    env, mark = marked_env()
    cwd = tmp_path_factory.mktemp("workers")
    server = ServeProcess("--workers", "2", "--model", str(serve_model), "--max-wait-ms", "2", cwd=cwd, env=env)
    server.mark = mark  # type: ignore[attr-defined]
    yield server
    server.kill()
    wait_gone(mark)


def test_both_workers_answer_on_one_port(workers: Any) -> None:
    assert "with 2 workers" in workers.lines[-1]
    pids = _pids(workers.url)
    assert len(pids) == 2, f"one worker answered every connection: {pids}"
    assert workers.proc.pid not in pids  # the supervisor serves nothing itself


@pytest.mark.slow
def test_load_nothing_lost_and_metrics_summed_across_workers(workers: Any, serve_clf: Any) -> None:
    from tests.serve.test_load import REQUESTS, _drive, assert_matches_predict

    _, before = _get(f"{workers.url}/metrics")
    done_before = _sample(before, 'finsent_requests_total{endpoint="/v1/predict",status="200"}') if "/v1/predict" in before else 0.0
    out = asyncio.run(_drive(workers.url))
    assert out["errors"] == [], out["errors"][:5]
    assert out["answered"] == REQUESTS
    assert_matches_predict(out, serve_clf)
    scrapes = [_get(f"{workers.url}/metrics")[1] for _ in range(6)]  # answered by either worker
    for text in scrapes:  # every scrape counts every request, whichever worker answered it
        assert _sample(text, 'finsent_requests_total{endpoint="/v1/predict",status="200"}') - done_before == REQUESTS
        assert _sample(text, "finsent_batch_requests_sum") >= REQUESTS
        assert _sample(text, "finsent_batch_requests_count") < _sample(text, "finsent_batch_requests_sum")  # shared passes
        assert _sample(text, "finsent_requests_in_flight") <= 1  # the scrape itself, at most


def test_a_killed_worker_is_replaced(workers: Any) -> None:
    old = _pids(workers.url)
    victim = min(old)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + HANG_GUARD_S
    now: set[int] = set()
    while time.monotonic() < deadline:  # the survivor answers meanwhile; the replacement joins it
        now = _pids(workers.url, want=2)
        if victim not in now and len(now) == 2:
            break
        time.sleep(0.2)
    assert victim not in now and len(now) == 2, (old, now)
    status, _ = _get(f"{workers.url}/health")
    assert status == 200


def test_sigterm_drains_exits_0_and_leaves_no_worker(workers: Any) -> None:
    code, log = workers.stop(signal.SIGTERM)
    assert code == 0, log
    assert "draining 2 workers" in log and "stopped" in log
    assert wait_gone(workers.mark) == []


def test_a_worker_that_cannot_load_the_model_stops_the_server(serve_model: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in os.listdir(serve_model):
        if (serve_model / name).is_file():
            (broken / name).write_bytes((serve_model / name).read_bytes())
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    env, mark = marked_env()
    proc = subprocess.run(
        [sys.executable, "-m", "finsent_cli", "serve", "--workers", "2", "--port", "0", "--model", str(broken)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S, check=False,
    )  # fmt: skip
    error = assert_one_line_error(CliResult(proc.returncode, proc.stdout, proc.stderr), "failed to start", str(broken), code=1)
    assert "cannot load" in error, error
    assert wait_gone(mark) == []


def test_a_killed_supervisor_takes_its_workers_with_it(serve_model: Path, tmp_path: Path) -> None:
    env, mark = marked_env()
    server = ServeProcess("--workers", "2", "--model", str(serve_model), cwd=tmp_path, env=env)
    assert len(processes_with(mark)) >= 3  # the supervisor, two workers (and multiprocessing's resource tracker)
    server.proc.kill()  # SIGKILL: nothing of finsent's runs in the supervisor any more
    server.proc.communicate(timeout=HANG_GUARD_S)
    assert wait_gone(mark) == [], "orphan workers"
