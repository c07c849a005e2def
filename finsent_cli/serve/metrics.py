"""What ``GET /metrics`` shows, in Prometheus' text format (the official ``prometheus-client``).

Each app has its own registry, so two apps in one process (tests) never share counters.

Several worker processes (``finsent serve --workers N``) use prometheus-client's multiprocess mode: every
process writes its values to files in ``$PROMETHEUS_MULTIPROC_DIR`` (set by the supervisor before the workers
start), and a scrape of any worker sums them, so counters and histograms count every request whichever worker
answered it. Gauges are summed over the live workers (``livesum``); the throughput gauge is refreshed by each
worker every second (:meth:`ServeMetrics.tick`), since a gauge computed at scrape time would see one worker only.
"""

from __future__ import annotations

import asyncio
import collections
import os
import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

ENDPOINTS = ("/", "/health", "/metrics", "/v1/predict", "/v1/predict/file", "/v1/explain", "/docs", "/openapi.json")
"""Paths counted by name; any other path is counted as ``other`` (bounded label values)."""

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus-client's switch to multiprocess mode: a folder every worker writes its values to."""


def multiprocess_dir() -> str | None:
    """The folder of multiprocess mode when this process runs in it (prometheus-client decides at import)."""
    return os.environ.get(MULTIPROC_ENV) or None


class ServeMetrics:
    """Request counts by endpoint and status, latency, batch sizes and throughput."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, window_s: float = 10.0) -> None:
        self.multiprocess = multiprocess_dir() is not None
        self.registry = CollectorRegistry()
        self.requests = Counter("finsent_requests", "HTTP requests by endpoint and status code.", ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram(
            "finsent_request_latency_seconds", "Time from request to response, by endpoint.", ["endpoint"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.batch_texts = Histogram("finsent_batch_texts", "Texts per gathered batch (micro-batching).", buckets=BATCH_BUCKETS, registry=self.registry)
        self.batch_requests = Histogram("finsent_batch_requests", "Requests per gathered batch (micro-batching).", buckets=BATCH_BUCKETS, registry=self.registry)
        self.batch_seconds = Histogram("finsent_batch_seconds", "Model time per gathered batch.", buckets=LATENCY_BUCKETS, registry=self.registry)
        self.texts = Counter("finsent_texts", "Texts classified.", registry=self.registry)
        live = {"multiprocess_mode": "livesum"}  # ignored in one process
        self.texts_per_second = Gauge("finsent_texts_per_second", f"Texts classified per second over the last {window_s:g} s.", registry=self.registry, **live)
        self.in_flight = Gauge("finsent_requests_in_flight", "Requests being answered now.", registry=self.registry, **live)
        if not self.multiprocess:
            self.texts_per_second.set_function(self._rate)
        self._window_s = window_s
        self._recent: collections.deque[tuple[float, int]] = collections.deque()
        self._lock = threading.Lock()

    @staticmethod
    def endpoint(path: str) -> str:
        """The label of a path: itself when known, else ``other`` (static files: ``/static``)."""
        if path in ENDPOINTS:
            return path
        return "/static" if path.startswith("/static/") else "other"

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        name = self.endpoint(path)
        self.requests.labels(name, str(status)).inc()
        self.latency.labels(name).observe(seconds)

    def observe_batch(self, texts: int, requests: int, seconds: float) -> None:
        self.batch_texts.observe(texts)
        self.batch_requests.observe(requests)
        self.batch_seconds.observe(seconds)
        self.texts.inc(texts)
        with self._lock:
            self._recent.append((time.monotonic(), texts))

    def _rate(self) -> float:
        now = time.monotonic()
        with self._lock:
            while self._recent and self._recent[0][0] < now - self._window_s:
                self._recent.popleft()
            return sum(n for _, n in self._recent) / self._window_s

    async def tick(self, every_s: float = 1.0) -> None:
        """Multiprocess mode: keep this worker's share of the throughput gauge current (run as a task)."""
        while True:
            self.texts_per_second.set(self._rate())
            await asyncio.sleep(every_s)

    def render(self) -> bytes:
        if not self.multiprocess:
            return generate_latest(self.registry)
        registry = CollectorRegistry()  # every worker's values, read from the shared folder at each scrape
        MultiProcessCollector(registry)
        return generate_latest(registry)
