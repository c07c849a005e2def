"""A bounded load test against a real server on localhost: 2,000 requests, 16 at a time, each of 1-32
headlines; it stops by itself. Nothing may be lost, reordered, refused or wrong, concurrent requests share
forward passes, and memory stays flat. Behaviour only: throughput and latency are measured by
``bench/serve_speed.py``, never asserted here (a loaded machine is slow, not wrong)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from tests.helpers import HANG_GUARD_S

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
    rows_of: dict[int, list[dict[str, Any]]] = {}

    async def worker(client: httpx.AsyncClient) -> None:
        for i in todo:
            res = await client.post("/v1/predict", json={"texts": bodies[i]})
            if res.status_code != 200:
                errors.append(f"request {i}: {res.status_code} {res.text[:200]}")
                continue
            rows = res.json()["results"]
            if [r["text"] for r in rows] != bodies[i] or any(r["status"] != "ok" for r in rows):
                errors.append(f"request {i}: rows lost or out of order")
            rows_of[i] = rows
            answered[0] += 1
            if answered[0] == WARMUP:
                rss["warm"] = _rss_mb()

    async with httpx.AsyncClient(base_url=url, timeout=HANG_GUARD_S) as client:
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
    rss["end"] = _rss_mb()
    return {"errors": errors, "answered": answered[0], "bodies": bodies, "rows": rows_of, "rss": rss}


def assert_matches_predict(out: dict[str, Any], clf: Any) -> None:
    """Every answer of a :func:`_drive` run is what ``predict`` says of its text, whatever it was batched with."""
    from finsent_cli.core.predict.inputs import InputRecord
    from finsent_cli.core.predict.run import PredictOptions, predict_records

    texts = [t for body in out["bodies"] for t in body]  # every answer is predict's, whatever it was batched with
    want, _ = predict_records(clf, [InputRecord(n, t) for n, t in enumerate(texts, start=1)], PredictOptions())
    got = [row for i in range(len(out["bodies"])) for row in out["rows"][i]]
    assert [r["text"] for r in got] == [r["text"] for r in want]
    for g, w in zip(got, want):
        probs = [w["p_negative"], w["p_neutral"], w["p_positive"]]
        assert [g["p_negative"], g["p_neutral"], g["p_positive"]] == pytest.approx(probs, abs=1e-5), g["text"]
        second, top = sorted(probs)[-2:]
        assert g["label"] == w["label"] or top - second < 1e-4, (g, w)  # a near tie may fall either way


@pytest.fixture
def one_torch_thread() -> Any:
    """The model on one thread: the event loop, the client and the tokenizer need the other core."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_load_nothing_lost_reordered_refused_or_wrong_and_memory_flat(live_server: Any, serve_clf: Any, one_torch_thread: Any) -> None:

    url, server, _ = live_server(max_wait_ms=2)
    out = asyncio.run(_drive(url))
    assert out["errors"] == [], out["errors"][:5]
    assert out["answered"] == REQUESTS

    assert_matches_predict(out, serve_clf)

    metrics = server.config.app.state.metrics.registry
    batches = metrics.get_sample_value("finsent_batch_requests_count")
    assert metrics.get_sample_value("finsent_batch_requests_sum") == REQUESTS
    assert batches < REQUESTS, "no two concurrent requests ever shared a forward pass"
    growth = out["rss"]["end"] - out["rss"]["warm"]
    assert growth < 60, f"memory grew {growth:.0f} MB after warm-up ({out['rss']})"
    print(f"\nload: {REQUESTS} requests ({sum(map(len, out['bodies']))} texts) at {CONCURRENCY} concurrent in {batches:.0f} batches, RSS {out['rss']}")
