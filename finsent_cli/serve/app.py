"""The app factory: :func:`create_app` puts one loaded classifier behind FastAPI.

Endpoints (OpenAPI docs at ``/docs``):

- ``POST /v1/predict`` ``{"texts": [...], "target": optional}``: one row per text, in order, with the fields of
  ``finsent predict``'s rows (``core.predict.run``), the signed ``score`` (p_positive - p_negative) among them.
- ``POST /v1/predict/file``: a txt/csv/tsv/jsonl file as the raw body; the rows as a CSV download.
- ``POST /v1/explain`` ``{"text": ..., "target": optional}``: the occlusion explanation, as ``finsent explain
  --format json`` prints it.
- ``GET /health`` (the model, whether it takes a target, the limits, the process that answered), ``GET /metrics`` (Prometheus), ``GET /``
  (the page, from ``static/``; its icon also at ``/favicon.ico``).

Every refusal is a JSON object ``{"error": MESSAGE, "field": FIELD}``, never a stack trace. ``field`` names
the part of the request to blame (a body field such as ``texts[2]`` or ``target``, ``body``, ``file``,
``api_key``, ``path``, ``method``) and is null when nothing in the request is (503, 500): 401 (API key), 404
(path), 405 (method), 413 (body size), 422 (malformed JSON or not UTF-8, wrong types, empty list, too many
texts, a text too long, a target the model does not take), 503 (shutting down), 500 (a bug; logged).

Every use of the model goes through one thread (``model_pool``), every use of the tokenizer through a lock
(Hugging Face's fast tokenizers refuse concurrent calls that set truncation), so the event loop only
routes requests and never waits for the model.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from finsent_cli.core.data.readers import check_not_binary
from finsent_cli.core.explain.occlusion import explain_occlusion, explanation_to_dict
from finsent_cli.core.inference.classifier import pass_cost
from finsent_cli.core.predict.inputs import InputRecord, LineSource, detect_input_format, iter_records
from finsent_cli.core.predict.rows import CHARS_PER_TOKEN, Chunk, PredictOptions, chunk_rows, encode_records
from finsent_cli.core.predict.run import render_rows
from finsent_cli.errors import FinsentError
from finsent_cli.labels import LABELS
from finsent_cli.serve.batcher import MicroBatcher
from finsent_cli.serve.metrics import ServeMetrics
from finsent_cli.serve.schemas import ExplainRequest, PredictRequest, ServeConfig

if TYPE_CHECKING:
    from finsent_cli.core.inference.classifier import Classifier

STATIC = Path(__file__).resolve().parent / "static"
PROTECTED = ("/v1/", "/metrics")
"""Paths that need the API key when one is set; the page, its files, ``/health`` and the docs do not."""

log = logging.getLogger("finsent.serve")


class ApiError(StarletteHTTPException):
    """A refusal answered as ``{"error": message, "field": field}`` with ``status``. An HTTP exception, so
    that FastAPI lets it through even from inside its body parsing (the body limit)."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(status, message)
        self.status, self.message, self.field = status, message, field


def error_body(message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    """The body of every refusal: ``field`` is always there (null when nothing in the request is to blame)."""
    return {"error": message, "field": field, **extra}


@dataclass
class ServeState:
    """What the server and the app share: whether it drains (SIGTERM) and how many requests are in flight."""

    draining: bool = False
    in_flight: int = 0
    idle: asyncio.Event | None = None  # set whenever in_flight is 0 (created in the app's loop)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def drain(self) -> None:
        """Refuse new requests (503) from now on; the ones in flight go on."""
        self.draining = True


class Guard:
    """Pure ASGI middleware in front of every request: drain (503), API key (401), body size (413), the
    in-flight count and the request metrics. Pure ASGI, so the body limit holds for chunked bodies too."""

    def __init__(self, app: Any, config: ServeConfig, state: ServeState, metrics: ServeMetrics) -> None:
        self.app, self.config, self.state, self.metrics = app, config, state, metrics
        self._key = config.api_key.encode() if config.api_key else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, started, status = scope["path"], time.perf_counter(), [500]
        started_response = [False]

        async def send_status(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0], started_response[0] = message["status"], True
            await send(message)

        try:
            refusal = self._refusal(scope, path)
            if refusal is not None:
                await refusal(scope, receive, send_status)
                return
            limit = self.config.max_upload_bytes if path == "/v1/predict/file" else self.config.max_body_bytes
            seen = [0]

            async def counted_receive() -> dict[str, Any]:
                message = await receive()
                if message["type"] == "http.request":
                    seen[0] += len(message.get("body", b""))
                    if seen[0] > limit:
                        raise ApiError(413, f"request body over {limit} bytes", "body")
                return message

            self.state.in_flight += 1
            self.metrics.in_flight.set(self.state.in_flight)
            if self.state.idle is not None:
                self.state.idle.clear()
            try:
                await self.app(scope, counted_receive, send_status)
            except ApiError as exc:  # the body limit, hit outside a route (no handler there)
                if started_response[0]:
                    raise
                await JSONResponse(error_body(exc.message, exc.field), status_code=exc.status)(scope, receive, send_status)
            finally:
                self.state.in_flight -= 1
                self.metrics.in_flight.set(self.state.in_flight)
                if self.state.in_flight == 0 and self.state.idle is not None:
                    self.state.idle.set()
        finally:
            self.metrics.observe_request(path, status[0], time.perf_counter() - started)

    def _refusal(self, scope: dict[str, Any], path: str) -> Response | None:
        if self.state.draining:
            return JSONResponse(
                error_body("the server is shutting down; send the request to another instance", status="draining"),
                status_code=503, headers={"Connection": "close", "Retry-After": "1"},
            )  # fmt: skip
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        if self._key is not None and path.startswith(PROTECTED) and scope.get("method") != "OPTIONS":
            given = headers.get("x-api-key", b"")
            auth = headers.get("authorization", b"")
            if auth[:7].lower() == b"bearer ":
                given = auth[7:].strip()
            if not hmac.compare_digest(given, self._key):  # constant time: no timing hint about the key
                return JSONResponse(
                    error_body("missing or wrong API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'", "api_key"),
                    status_code=401, headers={"WWW-Authenticate": "Bearer"},
                )  # fmt: skip
        length = headers.get("content-length")
        limit = self.config.max_upload_bytes if path == "/v1/predict/file" else self.config.max_body_bytes
        if length is not None and length.isdigit() and int(length) > limit:
            return _too_large(limit)
        return None


def _too_large(limit: int) -> Response:
    return JSONResponse(error_body(f"request body over {limit} bytes", "body"), status_code=413, headers={"Connection": "close"})


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "texts", 2)`` -> ``texts[2]``."""
    parts = [p for p in loc if p != "body"] if len(loc) > 1 else list(loc)
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


def _http_refusal(request: Request, exc: StarletteHTTPException) -> tuple[int, str, str | None]:
    """Starlette's and FastAPI's own refusals (no route, wrong method, an unreadable body) as ``(status,
    message, field)`` in this API's words."""
    path, status = request.url.path, exc.status_code
    if status == 404:
        return 404, f"{path}: no such page or endpoint (the API is described at /docs)", "path"
    if status == 405:
        allowed = (exc.headers or {}).get("Allow")
        return 405, f"{request.method} {path}: method not allowed" + (f"; use {allowed}" if allowed else ""), "method"
    cause = exc.__cause__
    if isinstance(cause, UnicodeDecodeError):  # FastAPI answers 400 with no detail; malformed JSON is 422
        bad = cause.object[cause.start]
        return 422, f"the body is not UTF-8 text (byte 0x{bad:02x} at offset {cause.start}); send JSON encoded as UTF-8", "body"
    if status == 400:
        return 400, str(exc.detail), "body"
    return status, str(exc.detail), None


def _validation_message(err: dict[str, Any]) -> tuple[str, str]:
    kind, loc = err.get("type", ""), err.get("loc", ())
    if kind == "json_invalid":
        where = loc[1] if len(loc) > 1 else "?"
        return f"malformed JSON (at character {where}): {err.get('ctx', {}).get('error', err.get('msg'))}", "body"
    name = _field(loc)
    if kind == "missing" and name == "body":
        return "the body is empty; send a JSON object", "body"
    if kind == "missing":
        return f"{name}: required field missing", name
    if kind == "extra_forbidden":
        return f"{name}: unknown field", name
    return f"{name}: {err.get('msg', 'invalid value')}", name


def create_app(
    clf: Classifier, config: ServeConfig | None = None, state: ServeState | None = None, metrics: ServeMetrics | None = None
) -> FastAPI:
    """A FastAPI app serving ``clf``.

    Args:
        clf: the loaded classifier (``core.inference.loading.load_classifier``).
        config: limits, batching, API key, CORS.
        state: shared with the server (drain on SIGTERM); a fresh one by default.
        metrics: where requests and batches are counted; a fresh registry by default (in multiprocess mode
            when ``$PROMETHEUS_MULTIPROC_DIR`` is set: ``--workers N``).

    Returns:
        The app; its lifespan starts and stops the batcher and the model's thread.
    """
    config = config or ServeConfig()
    problems = config.problems()
    if problems:
        raise FinsentError("; ".join(problems), exit_code=2)
    state = state or ServeState()
    metrics = metrics or ServeMetrics()
    model_pool = ThreadPoolExecutor(1, thread_name_prefix="finsent-model")
    token_pool = ThreadPoolExecutor(1, thread_name_prefix="finsent-tokenizer")
    tokenizer_lock = threading.Lock()

    cost = {"pass": config.pass_cost}  # None: measured at start; the passes of a micro-batch are cut by plan_passes

    def run_probs(ids: list[list[int]]) -> Any:
        return clf.probs_from_ids(ids, config.batch_size, None, config.batch_tokens, pass_cost=cost["pass"])

    batcher = MicroBatcher(
        run_probs, model_pool, max_wait_s=config.max_wait_ms / 1000, max_batch_tokens=config.max_batch_tokens,
        batching=config.batching, on_batch=metrics.observe_batch,
    )  # fmt: skip

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.idle = asyncio.Event()
        state.idle.set()
        if cost["pass"] is None:  # the measurement warms the model up too
            cost["pass"] = await asyncio.get_running_loop().run_in_executor(model_pool, pass_cost, clf)
        await batcher.start()
        ticker = asyncio.create_task(metrics.tick()) if metrics.multiprocess else None
        try:
            yield
        finally:
            if ticker is not None:
                ticker.cancel()
            await batcher.stop()
            model_pool.shutdown(wait=True)
            token_pool.shutdown(wait=True)

    app = FastAPI(
        title="finsent", summary="Financial-news sentiment: negative, neutral or positive, with explanations.",
        version=_version(), lifespan=lifespan,
    )  # fmt: skip
    app.state.finsent = state
    app.state.metrics = metrics
    app.state.batcher = batcher
    app.state.config = config
    app.add_middleware(Guard, config=config, state=state, metrics=metrics)
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
        )  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [_validation_message(e) for e in exc.errors()]
        message, name = errors[0]
        extra = {"errors": [{"error": m, "field": f} for m, f in errors]} if len(errors) > 1 else {}
        return JSONResponse(error_body(message, name, **extra), status_code=422)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.message, exc.field), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status, message, name = _http_refusal(request, exc)
        return JSONResponse(error_body(message, name), status_code=status, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("error while answering %s %s", request.method, request.url.path)
        return JSONResponse(error_body(f"internal error ({type(exc).__name__}); see the server log"), status_code=500)

    def check_target(target: str | None) -> None:
        if target is not None and not target.strip():
            raise ApiError(422, "target: empty; name the company, or leave target out", "target")
        if clf.target_conditioned and target is None:
            raise ApiError(422, "target: required; this model judges the sentiment toward a named company", "target")
        if target is not None and not clf.target_conditioned:
            raise ApiError(422, "target: this model is sentence-level (trained without targets); leave target out", "target")

    def check_text(text: str, name: str) -> None:
        if len(text) > config.max_chars:
            raise ApiError(422, f"{name}: {len(text)} characters; at most {config.max_chars} per text", name)

    async def classify(records: list[InputRecord], target: str | None) -> list[dict[str, Any]]:
        opts = PredictOptions(target=target)
        chunk = Chunk(records, 0, "")

        def encode() -> None:
            with tokenizer_lock:
                encode_records(clf, chunk, opts)

        await asyncio.get_running_loop().run_in_executor(token_pool, encode)
        probs = await batcher.submit(chunk.ids)
        rows, _ = chunk_rows(chunk, probs, opts)
        return rows

    @app.post("/v1/predict", summary="Classify texts: one row per text, in order, with predict's fields (label, probabilities, score).")
    async def predict(body: PredictRequest) -> dict[str, Any]:
        if not body.texts:
            raise ApiError(422, "texts: empty list; send at least one text", "texts")
        if len(body.texts) > config.max_texts:
            raise ApiError(422, f"texts: {len(body.texts)} texts; at most {config.max_texts} per request", "texts")
        for i, text in enumerate(body.texts):
            check_text(text, f"texts[{i}]")
        check_target(body.target)
        rows = await classify([InputRecord(i, t, body.target) for i, t in enumerate(body.texts, start=1)], body.target)
        return {"results": rows}

    @app.post(
        "/v1/predict/file",
        summary="Classify every record of a txt/csv/tsv/jsonl file sent as the raw body; the rows as a CSV download.",
    )  # fmt: skip
    async def predict_file(
        request: Request, filename: str = "input.txt", format: str = "auto", column: str = "text", target: str | None = None
    ) -> Response:
        data = await request.body()
        check_target(target)
        if not data.strip():
            raise ApiError(422, f"file: {filename}: empty; send the file as the request body", "file")

        def parse() -> list[InputRecord]:
            fmt = detect_input_format(filename, format)
            check_not_binary(data, filename)  # before LineSource, which would call the bytes "stdin"
            lines = LineSource("-", io.BytesIO(data))
            lines.source = filename
            return list(iter_records(lines, fmt, column, column))

        try:
            records = await asyncio.to_thread(parse)  # megabytes of CSV: off the event loop
        except FinsentError as exc:
            raise ApiError(422, f"file: {exc.message}", "file") from None
        if not records:
            raise ApiError(422, "file: no records; send a non-empty file", "file")
        rows: list[dict[str, Any]] = []
        # cut what no model reads, but past the length at which a row says "truncated", as predict's would
        keep = max(config.max_chars * 4, clf.max_length * CHARS_PER_TOKEN + 1)
        for at in range(0, len(records), config.max_texts):  # a request's share at a time: others interleave
            part = [InputRecord(r.line, r.text[:keep], target) for r in records[at : at + config.max_texts]]
            rows.extend(await classify(part, target))
        stem = Path(filename).name.rsplit(".", 1)[0] or "input"
        return Response(
            render_rows(rows, "csv"), media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{_safe_name(stem)}.predictions.csv"'},
        )  # fmt: skip

    @app.post("/v1/explain", summary="Explain one prediction by occlusion (finsent explain --format json).")
    async def explain(body: ExplainRequest) -> dict[str, Any]:
        if not body.text.strip():
            raise ApiError(422, "text: empty; send the text to explain", "text")
        check_text(body.text, "text")
        check_target(body.target)

        def run() -> dict[str, Any]:
            with tokenizer_lock:
                return explanation_to_dict(explain_occlusion(clf, body.text, top_k=body.top_k, target=body.target))

        try:
            return await asyncio.get_running_loop().run_in_executor(model_pool, run)
        except FinsentError as exc:
            raise ApiError(422, f"text: {exc.message}", "text") from None

    @app.get("/health", summary="Whether the model is loaded, and which.")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok", "model_loaded": True, "pid": os.getpid(), "model": str(clf.path) if clf.path else None,
            "kind": clf.meta.get("kind", "hf_encoder"), "backend": clf.backend, "labels": list(LABELS),
            "target_conditioned": clf.target_conditioned, "max_length": clf.max_length, "auth": config.api_key is not None,
            "limits": {"max_texts": config.max_texts, "max_chars": config.max_chars, "max_body_bytes": config.max_body_bytes,
                       "max_upload_bytes": config.max_upload_bytes},
            "batching": {"on": config.batching, "max_wait_ms": config.max_wait_ms, "max_batch_tokens": config.max_batch_tokens},
        }  # fmt: skip

    @app.get("/metrics", summary="Prometheus metrics (text format).")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:  # what a browser asks for where no page names an icon (/health)
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _safe_name(stem: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:100] or "input"


def _version() -> str:
    from finsent_cli import __version__

    return __version__
