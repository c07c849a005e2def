"""Micro-batching: concurrent requests share forward passes, and each gets its own answer.

A request hands its encoded texts to :meth:`MicroBatcher.submit` and awaits a future. One worker task takes
the first waiting request, then gathers more until the token budget is spent, waiting at most ``max_wait_s``
(and at most a tenth of the last batch's model time, so a fast model is not left idle) and only while the batch holds fewer requests than were outstanding at once in the last second or two (about
the number of busy clients, who tend to come back together); past that it takes only what is already queued.
So a lone client never pays the wait, and busy clients are gathered without being cut short. It runs the gathered texts as one call of the model (passes
cut by length, ``Classifier.probs_from_ids``) in the model's own thread, so the event loop keeps accepting
requests meanwhile, and splits the probabilities back per request. After the dynamic batching of inference
servers (Triton's ``max_queue_delay``, TorchServe's ``batch_delay``).

A batch that fails is run again request by request, so one bad request fails alone; a request whose client
went away (its future cancelled) is dropped before the pass. Requests wait in arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

RunProbs = Callable[[list[list[int]]], np.ndarray]
"""``ids -> (N, 3)`` probabilities, run in the model's thread."""
IDLE_SHARE = 0.1
"""The longest gathering wait, as a share of the last batch's model time (with ``max_wait_s`` above it)."""
OnBatch = Callable[[int, int, float], None]
"""``(texts, requests, seconds)`` after each gathered batch (metrics)."""


@dataclass
class _Job:
    ids: list[list[int]]
    future: asyncio.Future[np.ndarray]
    tokens: int = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = sum(len(x) for x in self.ids)


class MicroBatcher:
    """Gathers concurrent requests into shared calls of the model.

    Args:
        run_probs: computes probabilities for encoded inputs (runs in ``executor``).
        executor: the model's thread (one worker: every use of the model goes through it).
        max_wait_s: how long to wait for more requests after the first of a batch (0: only those already
            waiting).
        max_batch_tokens: a batch closes before its token count (unpadded) would pass this; a larger
            request goes alone.
        batching: off, every request gets its own call (the baseline of the benchmark).
        on_batch: called after each batch with its texts, requests and seconds.
    """

    def __init__(
        self,
        run_probs: RunProbs,
        executor: Executor,
        *,
        max_wait_s: float = 0.005,
        max_batch_tokens: int = 16384,
        batching: bool = True,
        on_batch: OnBatch | None = None,
    ) -> None:
        self.run_probs, self.executor = run_probs, executor
        self.max_wait_s, self.max_batch_tokens, self.batching = max_wait_s, max_batch_tokens, batching
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Job] | None = None
        self._carry: _Job | None = None  # a request that did not fit the last batch: first of the next
        self._worker: asyncio.Task[None] | None = None
        self._outstanding = 0  # submitted, not yet answered
        self._last_pass_s = float("inf")  # the model time of the last batch (none yet: max_wait_s alone)
        self._clients = _Peak()  # requests outstanding at once lately: how many a batch waits for

    async def start(self) -> None:
        """Start the worker (in the running event loop)."""
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run(), name="finsent-batcher")

    async def stop(self) -> None:
        """Stop the worker; requests still waiting get an error."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        pending = [self._carry] if self._carry is not None else []
        while self._queue is not None and not self._queue.empty():
            pending.append(self._queue.get_nowait())
        for job in pending:
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server is shutting down"))
        self._carry = None

    @property
    def waiting(self) -> int:
        """Requests waiting for a batch."""
        return (self._queue.qsize() if self._queue is not None else 0) + (self._carry is not None)

    async def submit(self, ids: list[list[int]]) -> np.ndarray:
        """Probabilities ``(len(ids), 3)`` for one request's encoded texts, computed with whatever other
        requests arrive meanwhile.

        Raises:
            RuntimeError: the batcher is not running.
            Exception: whatever the model raised on this request's own texts.
        """
        if not ids:
            return np.zeros((0, 3), dtype=np.float32)
        if self._queue is None or self._worker is None or self._worker.done():
            raise RuntimeError("the batcher is not running")
        loop = asyncio.get_running_loop()
        job = _Job(ids, loop.create_future())
        self._outstanding += 1
        self._clients.saw(self._outstanding, loop.time())
        try:
            await self._queue.put(job)
            return await job.future
        finally:
            self._outstanding -= 1

    async def _next(self, timeout: float | None) -> _Job | None:
        assert self._queue is not None
        if self._carry is not None:
            job, self._carry = self._carry, None
            return job
        if timeout is None:
            return await self._queue.get()
        if timeout <= 0 or not self._queue.empty():
            return self._queue.get_nowait() if not self._queue.empty() else None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            return None

    async def _gather(self) -> list[_Job]:
        first = await self._next(None)
        batch, tokens = [first], first.tokens
        if not self.batching:
            return batch
        loop = asyncio.get_running_loop()
        # the model idles while a batch gathers: never for more than a tenth of what the last batch took
        deadline = loop.time() + min(self.max_wait_s, IDLE_SHARE * self._last_pass_s)
        while tokens < self.max_batch_tokens:
            # wait only while fewer requests are gathered than were outstanding at once lately (about the
            # number of busy clients), then take what is already queued: a lone client never waits
            wait = deadline - loop.time() if len(batch) < self._clients.peak(loop.time()) else 0.0
            job = await self._next(wait)
            if job is None:
                break
            if tokens + job.tokens > self.max_batch_tokens:
                self._carry = job
                break
            batch.append(job)
            tokens += job.tokens
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [job for job in await self._gather() if not job.future.done()]  # cancelled: client gone
            if not batch:
                continue
            started = loop.time()
            try:
                await self._answer(batch)
                self._last_pass_s = loop.time() - started
                if self.on_batch is not None:
                    self.on_batch(sum(len(job.ids) for job in batch), len(batch), self._last_pass_s)
            except Exception as exc:  # noqa: BLE001 - the worker must outlive any batch: answer it, go on
                for job in batch:
                    _settle(job.future, error=exc)

    async def _answer(self, batch: Sequence[_Job]) -> None:
        loop = asyncio.get_running_loop()
        ids = [x for job in batch for x in job.ids]
        try:
            probs = await loop.run_in_executor(self.executor, self.run_probs, ids)
        except Exception as exc:  # noqa: BLE001 - answered per request below
            if len(batch) == 1:
                _settle(batch[0].future, error=exc)
                return
            for job in batch:  # one request's failure must not fail the others: each alone
                await self._answer([job])
            return
        at = 0
        for job in batch:
            _settle(job.future, probs[at : at + len(job.ids)])
            at += len(job.ids)


class _Peak:
    """The most requests outstanding at once over the last one to two ``window_s`` (two buckets)."""

    def __init__(self, window_s: float = 1.0) -> None:
        self.window_s = window_s
        self._bucket, self._now, self._before = -1, 0, 0

    def _roll(self, t: float) -> None:
        bucket = int(t / self.window_s)
        if bucket != self._bucket:
            self._before = self._now if bucket == self._bucket + 1 else 0
            self._bucket, self._now = bucket, 0

    def saw(self, outstanding: int, t: float) -> None:
        self._roll(t)
        self._now = max(self._now, outstanding)

    def peak(self, t: float) -> int:
        self._roll(t)
        return max(self._now, self._before, 1)


def _settle(future: asyncio.Future[Any], value: Any = None, error: BaseException | None = None) -> None:
    if future.done():  # cancelled meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
