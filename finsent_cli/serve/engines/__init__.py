"""The one place where a serving engine plugs in: what runs the app of :func:`finsent_cli.serve.app.create_app`.

An engine takes a :class:`ServeSpec` (which model, which backend, where to listen, how many processes or
replicas, the server's settings) and serves until it is stopped. Each engine is one module exposing
``serve(spec, note, warn)``; :data:`ENGINES` maps the names of ``finsent serve --engine`` to those modules,
imported only when asked for.

- ``local``: uvicorn on this machine; ``--workers N`` runs N processes on one port, each with its own model
  and micro-batcher, Prometheus metrics summed across them (``engines.local``).
- ``ray``: Ray Serve, N replicas of the same app on a Ray cluster (``engines.ray``).

Adding an engine: one module exposing ``serve`` and a line in :data:`ENGINES`.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from finsent_cli.errors import FinsentError
from finsent_cli.serve.schemas import ServeConfig

ENGINES: dict[str, str] = {
    "local": "finsent_cli.serve.engines.local",
    "ray": "finsent_cli.serve.engines.ray",
}
"""Engine name (``--engine``) -> module holding its ``serve``."""

Note = Callable[[str], None]


@dataclass(frozen=True)
class ServeSpec:
    """Everything an engine needs to serve a model.

    Attributes:
        model: the model folder (already resolved by ``core.runs.find_model``).
        backend: ``--backend`` (``torch``, ``int8``, ``onnx``, ``onnx-int8``).
        device: ``--device``.
        threads: CPU threads for the model in each process or replica (None: the engine's choice).
        host, port: where to listen (port 0: a free one).
        workers: processes (``local``) or replicas (``ray``).
        config: the app's settings (limits, batching, API key, CORS, drain timeout).
        log_level: uvicorn's log level.
        ray_address: ``ray`` only: the cluster to join (None: ``$RAY_ADDRESS``, else a local Ray).
    """

    model: Path
    backend: str = "torch"
    device: str = "cpu"
    threads: int | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    config: ServeConfig = field(default_factory=ServeConfig)
    log_level: str = "warning"
    ray_address: str | None = None


class Engine(Protocol):
    """What an engine module provides."""

    def serve(self, spec: ServeSpec, note: Note, warn: Note) -> None:
        """Serve ``spec`` until stopped (SIGTERM, Ctrl-C); ``note`` gets progress lines, ``warn`` warnings.

        Raises:
            FinsentError: the engine could not start (a busy port, a worker that failed to load the model).
        """
        ...


def load_error(spec: ServeSpec, exc: BaseException) -> str:
    """Why a worker or replica could not load ``spec``'s model, in one line (finsent's own message as it is)."""
    if isinstance(exc, FinsentError):
        return exc.message
    first = next((line for line in str(exc).splitlines() if line.strip()), "")
    return f"cannot load {spec.model}: {type(exc).__name__}: {first}"


def get_engine(name: str) -> Engine:
    """The engine module called ``name``.

    Raises:
        FinsentError: no such engine (with a "did you mean").
    """
    if name not in ENGINES:
        close = difflib.get_close_matches(name, list(ENGINES), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise FinsentError(f"--engine: unknown engine '{name}'{hint}; choose {', '.join(ENGINES)}", exit_code=2)
    return importlib.import_module(ENGINES[name])  # type: ignore[return-value]
