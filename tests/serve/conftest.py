"""Fixtures of the serve tests: a small model folder, its classifier, and an app around it."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers import HANG_GUARD_S, cli_env

pytest.importorskip("fastapi", reason="finsent serve needs the serve extra: pip install -e '.[serve]'")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx (the test extra)")


@pytest.fixture(scope="session")
def serve_model(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT whose probabilities differ visibly between texts (a sharpened copy)."""
    from tests.classifier_fakes import sharpened_copy

    return sharpened_copy(tiny_bert, tmp_path_factory.mktemp("serve_model"), scale=50.0)


@pytest.fixture(scope="session")
def serve_clf(serve_model: Path):  # type: ignore[no-untyped-def]
    from finsent_cli.core.inference.loading import load_classifier

    return load_classifier(serve_model)


@pytest.fixture
def make_client(serve_clf):  # type: ignore[no-untyped-def]
    """``make_client(clf=None, **config)``: a started TestClient (lifespan run) around a fresh app."""
    from fastapi.testclient import TestClient

    from finsent_cli.serve.app import create_app
    from finsent_cli.serve.schemas import ServeConfig

    clients = []

    def make(clf=None, raise_server_exceptions: bool = True, **config):  # type: ignore[no-untyped-def]
        app = create_app(clf or serve_clf, ServeConfig(**config))
        client = TestClient(app, raise_server_exceptions=raise_server_exceptions)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client):  # type: ignore[no-untyped-def]
    return make_client()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(serve_clf):  # type: ignore[no-untyped-def]
    """``live_server(clf=None, **config)``: a real uvicorn (DrainingServer) in a thread on a free port;
    returns ``(base_url, server, state)`` once it listens; stopped at the end. Its drain waits for the
    requests in flight as long as the hang guard allows, so a slow machine never cuts one off."""
    import threading
    import time

    from finsent_cli.serve.app import ServeState, create_app
    from finsent_cli.serve.schemas import ServeConfig
    from finsent_cli.serve.server import DrainingServer, bind, uvicorn_config

    started: list[tuple[DrainingServer, threading.Thread]] = []

    def start(clf=None, drain_timeout_s: float = HANG_GUARD_S, **config):  # type: ignore[no-untyped-def]
        state = ServeState()
        app = create_app(clf or serve_clf, ServeConfig(**config), state)
        sock = bind("127.0.0.1", 0)
        port = sock.getsockname()[1]
        server = DrainingServer(uvicorn_config(app, "127.0.0.1", port, "warning"), state, drain_timeout_s)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + HANG_GUARD_S  # a hang guard: uvicorn has no event to wait on
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.started, "uvicorn did not start"
        started.append((server, thread))
        return f"http://127.0.0.1:{port}", server, state

    yield start
    for server, thread in started:
        server.should_exit = True
        thread.join(timeout=HANG_GUARD_S)
        assert not thread.is_alive(), "uvicorn did not stop"


class ServeProcess:
    """A real ``finsent serve --port 0`` process; :attr:`url` is read from its "serving ... at URL" line.
    A process silent for :data:`HANG_GUARD_S` before that line is killed (a hang, never a budget)."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
        import re
        import subprocess
        import sys
        import threading

        from tests.helpers import cli_env

        env = env if env is not None else cli_env()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "finsent_cli", "serve", "--port", "0", *args],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self.url = ""
        assert self.proc.stderr is not None
        guard = threading.Timer(HANG_GUARD_S, self.proc.kill)  # readline blocks: only a kill ends a hang
        guard.start()
        try:
            for line in self.proc.stderr:  # the log line that says it listens: the event to wait for
                self.lines.append(line.rstrip("\n"))
                found = re.search(r" at (http://\S+) ", line)
                if found:
                    self.url = found.group(1)
                    break
        finally:
            guard.cancel()
        if not self.url:
            self.proc.kill()
            raise AssertionError("finsent serve did not start:\n" + "\n".join(self.lines) + self.proc.stderr.read())

    def stop(self, sig: int | None = None) -> tuple[int, str]:
        """Send ``sig`` (SIGTERM), wait for the exit, and return the exit code and the rest of stderr."""
        import signal

        self.proc.send_signal(sig or signal.SIGTERM)
        _, err = self.proc.communicate(timeout=HANG_GUARD_S)
        self.lines.extend(err.splitlines())
        return self.proc.returncode, "\n".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=HANG_GUARD_S)


def marked_env() -> tuple[dict[str, str], str]:
    """The CLI's environment plus a unique variable that every process of this server inherits (Ray's too),
    so the processes it left behind can be found by their environment."""
    mark = uuid.uuid4().hex
    return dict(cli_env(), FINSENT_TEST_MARK=mark), mark


def processes_with(mark: str) -> list[str]:
    """``pid cmdline`` of every live process whose environment holds ``FINSENT_TEST_MARK=mark``."""
    needle = f"FINSENT_TEST_MARK={mark}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if needle not in fh.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry} {cmdline[:120]}")
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def wait_gone(mark: str) -> list[str]:
    """The processes still holding ``mark`` once they are gone or the hang guard runs out (those left)."""
    deadline = time.monotonic() + HANG_GUARD_S
    left = processes_with(mark)
    while left and time.monotonic() < deadline:  # a killed worker takes a moment to be reaped
        time.sleep(0.2)
        left = processes_with(mark)
    return left
