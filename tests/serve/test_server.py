"""A real server: the drain on SIGTERM, the command line, and a real `finsent serve` process."""

from __future__ import annotations

import json
import socket
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import HANG_GUARD_S, assert_one_line_error, cli_env, run_cli
from tests.serve.conftest import ServeProcess
from tests.serve.test_api import FULL, _keyword_clf, wait_until


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=HANG_GUARD_S) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_drain_finishes_requests_in_flight_and_refuses_new_ones(live_server: Any, tiny_bert: Path) -> None:
    clf = _keyword_clf(tiny_bert)
    release = threading.Event()
    clf.model.hold_until = release.is_set  # the first request stays in the model until released
    url, server, state = live_server(clf, pass_cost=FULL)  # no measuring passes: the first pass is the held one
    slow: list[Any] = []
    t = threading.Thread(target=lambda: slow.append(_post(f"{url}/v1/predict", {"texts": ["shares rose"]})))
    t.start()
    assert clf.model.entered.wait(HANG_GUARD_S), "the request never reached the model"
    server.start_drain()  # what SIGTERM does
    status, body = _post(f"{url}/v1/predict", {"texts": ["shares fell"]})
    assert status == 503 and body == {"error": body["error"], "field": None, "status": "draining"}, body
    assert state.in_flight == 1 and not server.should_exit and t.is_alive()  # the one in flight is waited for
    release.set()
    t.join(HANG_GUARD_S)
    assert slow and slow[0][0] == 200 and slow[0][1]["results"][0]["label"] == "positive"
    wait_until(lambda: server.should_exit, "the drained server to stop")  # nothing left in flight


def test_serve_process_uses_the_default_model_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = cli_env()
    env.pop("FINSENT_MODEL", None)
    proc = ServeProcess(cwd=tmp_path, env=env)  # no --model, no runs/: finsent's default model
    try:
        with urllib.request.urlopen(f"{proc.url}/health", timeout=HANG_GUARD_S) as res:
            health = json.loads(res.read())
        assert health["model"].endswith("models/default") and health["model_loaded"]
        status, body = _post(f"{proc.url}/v1/predict", {"texts": ["Shares of Nokia fell 8% after a profit warning"]})
        assert status == 200 and body["results"][0]["label"] == "negative"
        code, err = proc.stop()
    finally:
        proc.kill()
    assert code == 0, err
    assert "using finsent's default model" in err and err.rstrip().endswith("stopped")
    assert "Traceback" not in err


def test_serve_without_the_extra_says_which_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    res = run_cli("serve")
    assert_one_line_error(res, "needs uvicorn", "pip install", "[serve]", code=1)


def test_serve_refuses_a_busy_port(serve_model: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        res = run_cli("serve", "--model", str(serve_model), "--port", str(s.getsockname()[1]))
    assert_one_line_error(res, "in use", code=1)


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--max-texts", "0"], "--max-texts must be at least 1"), (["--log-level", "loud"], "unknown --log-level"),
     (["--api-key", ""], "API key")],
)  # fmt: skip
def test_serve_refuses_bad_options(args: list[str], needle: str) -> None:
    assert_one_line_error(run_cli("serve", *args), needle, code=2)


def test_serve_warns_when_listening_beyond_this_machine(serve_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from finsent_cli.commands import serve as serve_command

    monkeypatch.setattr("finsent_cli.serve.server.bind", lambda host, port: (_ for _ in ()).throw(OSError(99, "stop here")))
    res = run_cli("serve", "--model", str(serve_model), "--host", "0.0.0.0")
    assert "without an API key" in res.stderr and res.exit_code == 1
    assert serve_command._loopback("127.0.0.1") and serve_command._loopback("::1") and not serve_command._loopback("0.0.0.0")
