"""uvicorn, with a graceful drain: on SIGTERM (or Ctrl-C) the requests in flight finish, new ones get 503.

uvicorn alone stops listening at once on SIGTERM, so a client that opens a connection meanwhile is refused
without an answer. Here the first signal only starts draining: the port stays open and every new request is
answered 503 (``Connection: close``, ``Retry-After``) while the ones in flight finish; once none is left, or
after ``drain_timeout_s``, uvicorn's own shutdown runs (lifespan shutdown: the batcher stops). A second
Ctrl-C stops at once.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import uvicorn

from finsent_cli.serve.app import ServeState


class DrainingServer(uvicorn.Server):
    """A :class:`uvicorn.Server` that drains before it shuts down (see the module docstring).

    Args:
        config: uvicorn's config.
        state: the app's :class:`ServeState` (the same object that ``create_app`` got).
        drain_timeout_s: most seconds to wait for the requests in flight.
        note: told when draining starts and ends (the CLI prints it).
        on_started: called once the app has started (lifespan done) and the sockets are served.
        worker: one of several worker processes: Ctrl-C (SIGINT, sent to the whole process group) is left to
            the supervisor, which sends SIGTERM to every worker.
    """

    def __init__(
        self, config: uvicorn.Config, state: ServeState, drain_timeout_s: float = 30.0, note: Callable[[str], None] | None = None,
        on_started: Callable[[], None] | None = None, worker: bool = False,
    ) -> None:  # fmt: skip
        super().__init__(config)
        self.state, self.drain_timeout_s, self.note = state, drain_timeout_s, note
        self.on_started, self.worker = on_started, worker
        self._drain_deadline: float | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.on_started is not None and not self.should_exit:
            self.on_started()

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.worker and sig == signal.SIGINT:
            return
        if self._drain_deadline is None and sig in (signal.SIGTERM, signal.SIGINT):
            self.start_drain()
            return
        super().handle_exit(sig, frame)  # a second signal: uvicorn's own (Ctrl-C twice: at once)

    def start_drain(self) -> None:
        """Stop taking requests (503) and shut down once those in flight are answered. The signal is not
        raised again afterwards (uvicorn's habit): a drained server ends normally, exit code 0."""
        self._drain_deadline = time.monotonic() + self.drain_timeout_s
        self.state.drain()
        if self.note is not None:
            self.note(f"draining: {self.state.in_flight} request(s) in flight, new ones get 503 (up to {self.drain_timeout_s:g} s)")

    async def on_tick(self, counter: int) -> bool:
        draining = self._drain_deadline is not None and not self.should_exit
        if draining and (self.state.in_flight == 0 or time.monotonic() > self._drain_deadline):
            if self.note is not None and self.state.in_flight:
                self.note(f"drain timeout: stopping with {self.state.in_flight} request(s) unanswered")
            self.should_exit = True
        return await super().on_tick(counter)


def uvicorn_config(app: Any, host: str, port: int, log_level: str = "info", **kwargs: Any) -> uvicorn.Config:
    """uvicorn's config for a finsent app: one process, no reload, the access log only at ``debug``."""
    return uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=log_level == "debug", lifespan="on",
        timeout_graceful_shutdown=5, server_header=False, **kwargs,
    )  # fmt: skip


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one), bound before the app starts so a busy port
    is one clear error.

    Raises:
        OSError: the address is in use, not this machine's, or not allowed.
    """
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock
