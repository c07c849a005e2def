"""`finsent serve`: a model behind an HTTP API (FastAPI under uvicorn) and a page at ``/``."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

from finsent_cli import ui
from finsent_cli.commands.options import BackendOpt, BatchSizeOpt, DeviceOpt, ModelOpt, QuietOpt, guarded
from finsent_cli.errors import FinsentError

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def _opt(flag: str, help: str, metavar: str = "N") -> object:
    return typer.Option(flag, metavar=metavar, help=help)


@guarded
def serve_cmd(
    model: ModelOpt = None,
    host: Annotated[str, _opt("--host", "Address to listen on; 127.0.0.1 keeps it on this machine (0.0.0.0: every interface).", "HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, metavar="PORT", help="Port (0: a free one, printed).")] = 8000,
    api_key: Annotated[str | None, typer.Option("--api-key", metavar="KEY", help="Require this key on /v1/* and /metrics (Authorization: Bearer KEY or X-API-Key); default $FINSENT_API_KEY, else none.", show_default=False)] = None,
    cors_origin: Annotated[list[str] | None, typer.Option("--cors-origin", metavar="URL", help="Allow browser calls from this origin (repeat for more); CORS is off without it.", show_default=False)] = None,
    max_texts: Annotated[int, _opt("--max-texts", "Most texts per /v1/predict request.")] = 256,
    max_chars: Annotated[int, _opt("--max-chars", "Most characters per text.")] = 5000,
    max_body_bytes: Annotated[int, _opt("--max-body-bytes", "Most bytes in a JSON request (413 beyond).")] = 1 << 20,
    max_upload_bytes: Annotated[int, _opt("--max-upload-bytes", "Most bytes in an uploaded file (413 beyond).")] = 8 << 20,
    max_wait_ms: Annotated[float, _opt("--max-wait-ms", "Micro-batching: how long to wait for more requests after the first of a batch.", "MS")] = 5.0,
    max_batch_tokens: Annotated[int, _opt("--max-batch-tokens", "Micro-batching: most tokens of the requests gathered into one batch.")] = 16384,
    batching: Annotated[bool, typer.Option("--batching/--no-batching", help="Gather concurrent requests into shared forward passes.")] = True,
    backend: BackendOpt = "torch",
    batch_size: BatchSizeOpt = 64,
    threads: Annotated[int | None, typer.Option("--threads", min=1, metavar="N", help="CPU threads for the model (default: the library's choice).", show_default=False)] = None,
    drain_timeout: Annotated[float, _opt("--drain-timeout", "On SIGTERM: seconds the requests in flight may take before the server stops anyway.", "S")] = 30.0,
    log_level: Annotated[str, typer.Option("--log-level", metavar="LEVEL", help=f"uvicorn's log: {', '.join(LOG_LEVELS)} (debug adds the access log).")] = "warning",
    workers: Annotated[int, typer.Option("--workers", min=1, metavar="N", help="Processes on one port (--engine local) or replicas (--engine ray), each with its own model and micro-batcher.")] = 1,
    engine: Annotated[str, typer.Option("--engine", metavar="ENGINE", help="local: uvicorn on this machine; ray: Ray Serve replicas (needs the ray extra).")] = "local",
    ray_address: Annotated[str | None, typer.Option("--ray-address", metavar="ADDR", help="--engine ray: the cluster to join (default $RAY_ADDRESS, else a local Ray).", show_default=False)] = None,
    device: DeviceOpt = "cpu",
    quiet: QuietOpt = False,
) -> None:
    """Serve a model over HTTP: POST /v1/predict, /v1/explain, GET /health, /metrics, a page at /, docs at /docs."""
    try:  # the serve extra: FastAPI, uvicorn, prometheus-client
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        from finsent_cli.serve import SERVE_EXTRA_HINT

        raise FinsentError(f"finsent serve needs {exc.name}, from the serve extra: {SERVE_EXTRA_HINT}") from None
    from finsent_cli.serve.schemas import ServeConfig, api_key_from

    if log_level not in LOG_LEVELS:
        raise FinsentError(f"unknown --log-level '{log_level}' (choose {', '.join(LOG_LEVELS)})", exit_code=2)
    config = ServeConfig(
        max_texts=max_texts, max_chars=max_chars, max_body_bytes=max_body_bytes, max_upload_bytes=max_upload_bytes,
        max_wait_ms=max_wait_ms, max_batch_tokens=max_batch_tokens, batching=batching, batch_size=batch_size,
        api_key=api_key_from(api_key), cors_origins=tuple(cors_origin or ()), drain_timeout_s=drain_timeout,
    )  # fmt: skip
    if config.problems():
        raise FinsentError("; ".join(config.problems()), exit_code=2)
    reporter = ui.ConsoleReporter(quiet=quiet)
    if not _loopback(host) and config.api_key is None:
        reporter.warn(f"listening on {host} without an API key: anyone who reaches this port can use the model (--api-key)")

    from finsent_cli.core.runs import find_model
    from finsent_cli.serve.engines import ServeSpec, get_engine

    chosen = get_engine(engine)
    folder = find_model(model, note=reporter.warn)
    reporter.log(f"loading model {folder}" + (f" (backend {backend})" if backend != "torch" else ""))
    spec = ServeSpec(
        model=folder, backend=backend, device=device, threads=threads, host=host, port=port, workers=workers,
        config=config, log_level=log_level, ray_address=ray_address,
    )  # fmt: skip
    chosen.serve(spec, note=reporter.log, warn=reporter.warn)
    reporter.log("stopped")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

