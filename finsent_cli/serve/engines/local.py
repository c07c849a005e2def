"""The ``local`` engine: uvicorn on this machine, one process or ``--workers N`` processes on one port.

One worker: the app runs in this process (:class:`~finsent_cli.serve.server.DrainingServer`).

Several: this process binds the port, then becomes a supervisor of N worker processes (started with
``spawn``: a fresh interpreter each, no forked torch state). Each worker loads the model itself, runs its
own app, micro-batcher and event loop on the shared listening socket (the kernel hands each new connection
to one of the workers waiting on it), with ``cores // N`` model threads unless ``--threads`` says otherwise.
After the pre-fork model of gunicorn and uvicorn's ``--workers``, with what finsent adds:

- the supervisor prints the address only once every worker has loaded the model and started; a worker that
  fails to start stops them all, and ``finsent serve`` exits non-zero with that worker's reason;
- SIGTERM or Ctrl-C is passed on to every worker as SIGTERM, so each drains (503 to new requests, the ones in
  flight finish); a second signal kills them at once;
- a worker that dies while serving (killed, out of memory) is replaced; after 3 replacements in a row that fail
  to start (waiting 2, then 4 s between them) the server stops with the reason;
- each worker asks the kernel to send it SIGTERM when the supervisor dies (``PR_SET_PDEATHSIG``), so a killed
  supervisor leaves no orphan workers;
- Prometheus metrics use prometheus-client's multiprocess mode (``serve.metrics``): a scrape of any worker
  counts the requests of all.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import replace
from multiprocessing.connection import Connection, wait
from typing import Any

from finsent_cli.errors import FinsentError
from finsent_cli.serve.engines import Note, ServeSpec, load_error

POLL_S = 0.5
"""How often the supervisor looks at its workers."""
KILL_GRACE_S = 10.0
"""After the drain timeout, how long a worker may take to exit before it is killed."""
MAX_RESTART_FAILURES = 3
"""Replacement workers in a row that fail to start before the server gives up."""


def serve(spec: ServeSpec, note: Note, warn: Note) -> None:
    """Serve ``spec`` with uvicorn until SIGTERM or Ctrl-C (drained first).

    Raises:
        OSError: the port is busy or not this machine's.
        FinsentError: the model does not load (one worker), or a worker failed to start (several).
    """
    from finsent_cli.serve.server import bind

    with bind(spec.host, spec.port) as sock:  # a busy port fails now, before the model loads
        if spec.workers > 1:
            Supervisor(spec, sock, note, warn).run()
            return
        from finsent_cli.serve.app import ServeState, create_app
        from finsent_cli.serve.server import DrainingServer, uvicorn_config

        port = sock.getsockname()[1]
        clf = load(spec)
        state = ServeState()
        app = create_app(clf, spec.config, state)
        server = DrainingServer(uvicorn_config(app, spec.host, port, spec.log_level), state, spec.config.drain_timeout_s, note=note)
        note(serving_line(str(clf.path or spec.model), spec.host, port))
        server.run(sockets=[sock])
        if not server.started:
            raise FinsentError("the server did not start: the app's startup failed (its error is above)")


def load(spec: ServeSpec):  # type: ignore[no-untyped-def]
    """The classifier of ``spec`` (its threads set first)."""
    import torch

    from finsent_cli.core.inference.loading import load_classifier

    if spec.threads is not None:
        torch.set_num_threads(spec.threads)
    return load_classifier(spec.model, device=spec.device, backend=spec.backend)


def url(host: str, port: int) -> str:
    """``http://host:port`` (IPv6 addresses in brackets)."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serving_line(model: str, host: str, port: int, how: str = "") -> str:
    """The line that says where the server listens (tests and ``bench/serve_speed.py`` read its URL)."""
    where = url(host, port)
    return f"serving {model}{how} at {where} (page {where}/, API {where}/v1/predict, docs {where}/docs); Ctrl-C or SIGTERM stops"


def worker_threads(spec: ServeSpec) -> int:
    """Model threads per worker: ``--threads``, else this machine's cores shared out (at least one)."""
    return spec.threads or max(1, (os.cpu_count() or 1) // spec.workers)


class Supervisor:
    """Starts, watches and stops the worker processes of ``--workers N`` (see the module docstring)."""

    def __init__(self, spec: ServeSpec, sock: socket.socket, note: Note, warn: Note) -> None:
        self.spec, self.sock, self.note, self.warn = replace(spec, threads=worker_threads(spec)), sock, note, warn
        self.ctx = multiprocessing.get_context("spawn")
        self.procs: dict[int, tuple[Any, Connection]] = {}  # worker index -> (process, its end of the pipe)
        self.signals = 0

    def run(self) -> None:
        from finsent_cli.serve.metrics import MULTIPROC_ENV

        metrics_dir = tempfile.mkdtemp(prefix="finsent-metrics-")
        before = os.environ.get(MULTIPROC_ENV)
        os.environ[MULTIPROC_ENV] = metrics_dir  # inherited by the workers: multiprocess mode there
        handlers = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for index in range(self.spec.workers):
                self._start(index)
            for index in range(self.spec.workers):
                self._wait_ready(index)
            if self.signals:
                return
            port = self.sock.getsockname()[1]
            how = f" with {self.spec.workers} workers ({self.spec.threads} model thread{'s' if self.spec.threads > 1 else ''} each)"
            self.note(serving_line(str(self.spec.model), self.spec.host, port, how))
            self._watch(metrics_dir)
        finally:
            self._stop_all()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            if before is None:
                os.environ.pop(MULTIPROC_ENV, None)
            else:
                os.environ[MULTIPROC_ENV] = before
            shutil.rmtree(metrics_dir, ignore_errors=True)

    def _on_signal(self, sig: int, frame: Any) -> None:
        self.signals += 1
        if self.signals == 1:
            self.note(f"draining {len(self.procs)} workers: new requests get 503 (up to {self.spec.config.drain_timeout_s:g} s)")
        kill = signal.SIGTERM if self.signals == 1 else signal.SIGKILL  # a second signal: no more waiting
        for proc, _ in self.procs.values():
            if proc.pid is not None and proc.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, kill)

    def _start(self, index: int) -> None:
        if index in self.procs:  # a dead worker's end of its pipe
            self.procs[index][1].close()
        ours, theirs = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(
            target=worker_main, args=(self.spec, self.sock, theirs, os.getpid()), name=f"finsent-serve-{index}", daemon=False
        )  # fmt: skip
        self.procs[index] = (proc, ours)  # before it starts: a signal from now on reaches it
        proc.start()
        theirs.close()

    def _wait_ready(self, index: int) -> None:
        proc, conn = self.procs[index]
        while not self.signals:
            ready = wait([conn, proc.sentinel], timeout=POLL_S)
            if conn in ready:
                try:
                    kind, message = conn.recv()
                except EOFError:  # the worker died before saying anything
                    kind, message = "error", None
                if kind == "ready":
                    return
                raise FinsentError(f"worker {index + 1} of {self.spec.workers} failed to start: {message or self._exit_reason(proc)}")
            if proc.sentinel in ready:
                proc.join()
                raise FinsentError(f"worker {index + 1} of {self.spec.workers} failed to start: {self._exit_reason(proc)}")

    @staticmethod
    def _exit_reason(proc: Any) -> str:
        proc.join(timeout=5)
        code = proc.exitcode
        if code is not None and code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exited with code {code} (its error is above)"

    def _watch(self, metrics_dir: str) -> None:
        """Until a signal: replace a worker that died; then wait for the drained workers to exit."""
        from prometheus_client import multiprocess

        failures = 0  # replacements in a row that did not start
        while not self.signals:
            for index, (proc, _) in list(self.procs.items()):
                if proc.is_alive() or self.signals:
                    continue
                multiprocess.mark_process_dead(proc.pid, metrics_dir)  # its live gauges leave the sums
                self.warn(f"worker {index + 1} ({proc.pid}) {self._exit_reason(proc)}; starting a new one")
                try:
                    self._start(index)
                    self._wait_ready(index)
                    failures = 0
                except FinsentError as exc:
                    failures += 1
                    if failures >= MAX_RESTART_FAILURES:
                        raise FinsentError(f"{exc.message}; {failures} replacements in a row failed, stopping") from None
                    self.warn(f"{exc.message}; trying again in {2**failures} s")
                    time.sleep(2**failures)  # the others go on serving meanwhile
            wait([proc.sentinel for proc, _ in self.procs.values()], timeout=POLL_S)
        deadline = time.monotonic() + self.spec.config.drain_timeout_s + KILL_GRACE_S
        for proc, _ in self.procs.values():
            proc.join(timeout=max(0.0, deadline - time.monotonic()))

    def _stop_all(self) -> None:
        """Leave no worker behind: SIGTERM, a grace period, then SIGKILL."""
        alive = [proc for proc, _ in self.procs.values() if proc.is_alive()]
        for proc in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE_S
        for proc in alive:
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()
        for _, conn in self.procs.values():
            conn.close()


def worker_main(spec: ServeSpec, sock: socket.socket, conn: Connection, parent: int) -> None:
    """One worker process: load the model, say ``ready`` (or why not) on ``conn``, serve ``sock`` until SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the supervisor decides
    _die_with(parent)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the workers share the cores already
    try:
        import torch

        torch.set_num_interop_threads(1)
        clf = load(spec)
        from finsent_cli.serve.app import ServeState, create_app
        from finsent_cli.serve.server import DrainingServer, uvicorn_config

        state = ServeState()
        app = create_app(clf, spec.config, state)
    except Exception as exc:  # noqa: BLE001 - the supervisor reports it in one line and stops
        conn.send(("error", load_error(spec, exc)))
        sys.exit(1)
    port = sock.getsockname()[1]
    server = DrainingServer(
        uvicorn_config(app, spec.host, port, spec.log_level), state, spec.config.drain_timeout_s,
        on_started=lambda: conn.send(("ready", os.getpid())), worker=True,
    )  # fmt: skip
    server.run(sockets=[sock])
    conn.close()
    if not server.started:  # the app's startup failed (uvicorn logged why): not a clean exit
        sys.exit(1)


def _die_with(parent: int) -> None:
    """Ask Linux to send this process SIGTERM when its supervisor dies (no orphan workers); elsewhere, nothing."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the supervisor died before the request took effect
        sys.exit(1)
