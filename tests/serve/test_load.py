"""A bounded load test against a real server on localhost: 2,000 requests, 16 at a time, each of 1-32
headlines; it stops by itself. Nothing may be lost, reordered or refused, and memory stays flat."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest

REQUESTS, CONCURRENCY, WARMUP = 2000, 16, 200
WORDS = ["shares", "rose", "fell", "profit", "loss", "bank", "quarter", "revenue", "guidance", "dividend", "merger", "oil"]


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        line = next(x for x in fh if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def _request(i: int, rng: random.Random) -> list[str]:
    return [f"{i}-{k} " + " ".join(rng.choices(WORDS, k=rng.randint(3, 14))) for k in range(rng.randint(1, 32))]


async def _drive(url: str) -> dict[str, Any]:
    import httpx

    rng = random.Random(0)
    bodies = [_request(i, rng) for i in range(REQUESTS)]
    todo = iter(range(REQUESTS))
    errors: list[str] = []
    answered = [0]
    rss: dict[str, float] = {}

    async def worker(client: httpx.AsyncClient) -> None:
        for i in todo:
            res = await client.post("/v1/predict", json={"texts": bodies[i]})
            if res.status_code != 200:
                errors.append(f"request {i}: {res.status_code} {res.text[:200]}")
                continue
            rows = res.json()["results"]
            if [r["text"] for r in rows] != bodies[i] or any(r["status"] != "ok" for r in rows):
                errors.append(f"request {i}: rows lost or out of order")
            answered[0] += 1
            if answered[0] == WARMUP:
                rss["warm"] = _rss_mb()

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
    rss["end"] = _rss_mb()
    return {"errors": errors, "answered": answered[0], "texts": sum(len(b) for b in bodies), "rss": rss}


@pytest.fixture
def one_torch_thread() -> Any:
    """The model on one thread: the event loop, the client and the tokenizer need the other core."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_load_nothing_lost_reordered_or_refused_and_memory_flat(live_server: Any, one_torch_thread: Any) -> None:
    url, _, _ = live_server(max_wait_ms=2)
    started = time.monotonic()
    out = asyncio.run(_drive(url))
    seconds = time.monotonic() - started
    assert out["errors"] == [], out["errors"][:5]
    assert out["answered"] == REQUESTS
    growth = out["rss"]["end"] - out["rss"]["warm"]
    assert growth < 60, f"memory grew {growth:.0f} MB after warm-up ({out['rss']})"
    print(f"\nload: {REQUESTS} requests ({out['texts']} texts) at {CONCURRENCY} concurrent in {seconds:.1f} s, RSS {out['rss']}")
