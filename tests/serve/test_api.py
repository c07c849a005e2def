"""The HTTP API with FastAPI's test client: every endpoint, every limit, auth, order, micro-batching."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from finsent_cli.core.explain.occlusion import explain_occlusion, explanation_to_dict
from finsent_cli.core.predict.inputs import InputRecord
from finsent_cli.core.predict.run import PredictOptions, predict_records
from tests.classifier_fakes import keyword_classifier
from tests.helpers import HANG_GUARD_S

HEADLINES = [
    "Shares of Halvard Telecom fell 8% after a profit warning",
    "Nordbank raises its dividend and beats estimates",
    "",
    "The board meets on Tuesday",
    "Oil prices were little changed",
]


def test_predict_gives_predicts_rows_in_order(client: Any, serve_clf: Any) -> None:
    res = client.post("/v1/predict", json={"texts": HEADLINES})
    assert res.status_code == 200, res.text
    rows = res.json()["results"]
    expected, _ = predict_records(serve_clf, [InputRecord(i, t) for i, t in enumerate(HEADLINES, start=1)], PredictOptions())
    assert [r["text"] for r in rows] == HEADLINES
    assert list(rows[0]) == ["line", "text", "label", "confidence", "p_negative", "p_neutral", "p_positive", "score", "status"]
    for got, want in zip(rows, expected):
        assert got.keys() == want.keys()
        assert got["label"] == want["label"] and got["status"] == want["status"]
        for key in ("confidence", "p_negative", "p_neutral", "p_positive", "score"):
            assert got[key] == pytest.approx(want[key], abs=1e-5)
    assert rows[2]["status"] == "empty" and rows[2]["label"] is None and rows[2]["score"] is None
    scored = [r for r in rows if r["status"] == "ok"]
    assert all(r["score"] == round(r["p_positive"] - r["p_negative"], 6) and -1 <= r["score"] <= 1 for r in scored)
    want = serve_clf.predict_scores([r["text"] for r in scored])  # the Python API gives the same numbers
    assert [r["score"] for r in scored] == pytest.approx(want.tolist(), abs=2e-6)


def test_predict_order_is_kept_across_many_texts(client: Any) -> None:
    texts = [f"headline {i} " + "shares rose " * (i % 7) for i in range(200)]  # lengths vary: sorted inside
    rows = client.post("/v1/predict", json={"texts": texts}).json()["results"]
    assert [r["text"] for r in rows] == texts
    assert [r["line"] for r in rows] == list(range(1, 201))


def test_truncated_texts_say_so(make_client: Any) -> None:
    rows = make_client().post("/v1/predict", json={"texts": ["profit " * 400]}).json()["results"]
    assert rows[0]["status"] == "truncated"
    assert rows[0]["score"] == round(rows[0]["p_positive"] - rows[0]["p_negative"], 6)  # still a prediction


@pytest.mark.parametrize(
    ("body", "status", "field", "needle"),
    [
        ({"texts": []}, 422, "texts", "empty list"),
        ({"texts": ["a"] * 5}, 422, "texts", "at most 4"),
        ({"texts": ["ok", "x" * 101]}, 422, "texts[1]", "at most 100 per text"),
        ({"texts": ["ok", 3]}, 422, "texts[1]", "valid string"),
        ({"texts": "one string"}, 422, "texts", "valid list"),
        ({}, 422, "texts", "required"),
        ({"texts": ["a"], "colour": 1}, 422, "colour", "unknown field"),
        ({"texts": ["a"], "target": "Nokia"}, 422, "target", "sentence-level"),
        ({"texts": ["a"], "target": " "}, 422, "target", "empty"),
        ('{"texts": [', 422, "body", "malformed JSON"),
        ("", 422, "body", "empty"),
        ([1, 2], 422, "body", "valid dictionary"),
    ],
)
def test_predict_limits_and_bad_bodies(make_client: Any, body: Any, status: int, field: str, needle: str) -> None:
    client = make_client(max_texts=4, max_chars=100)
    content = body if isinstance(body, str) else json.dumps(body)
    res = client.post("/v1/predict", content=content, headers={"Content-Type": "application/json"})
    assert res.status_code == status, res.text
    err = res.json()
    assert err["field"] == field and needle in err["error"], err
    assert "Traceback" not in res.text


def test_body_size_limit_is_413_with_or_without_content_length(make_client: Any) -> None:
    client = make_client(max_body_bytes=1000)
    big = json.dumps({"texts": ["shares rose"] * 200}).encode()
    res = client.post("/v1/predict", content=big, headers={"Content-Type": "application/json"})
    assert res.status_code == 413 and res.json()["field"] == "body"

    def chunks():  # no Content-Length: the limit counts the bytes as they arrive
        for i in range(0, len(big), 256):
            yield big[i : i + 256]

    res = client.post("/v1/predict", content=chunks(), headers={"Content-Type": "application/json"})
    assert res.status_code == 413, res.text
    assert "over 1000 bytes" in res.json()["error"]
    assert client.post("/v1/predict", json={"texts": ["fine"]}).status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "offset", "byte"),
    [("/v1/predict", b'{"texts": ["caf\xe9 shares rose"]}', 15, 0xE9), ("/v1/explain", b'{"text": "\xff"}', 10, 0xFF)],
)
def test_a_body_that_is_not_utf8_is_a_422_naming_the_byte(client: Any, path: str, body: bytes, offset: int, byte: int) -> None:
    res = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert res.status_code == 422, res.text
    assert res.json() == {
        "error": f"the body is not UTF-8 text (byte 0x{byte:02x} at offset {offset}); send JSON encoded as UTF-8", "field": "body",
    }  # fmt: skip


def test_explain_gives_explain_json(client: Any, serve_clf: Any) -> None:
    text = "Shares of Halvard Telecom fell 8% after a profit warning"
    res = client.post("/v1/explain", json={"text": text})
    assert res.status_code == 200, res.text
    want = json.loads(json.dumps(explanation_to_dict(explain_occlusion(serve_clf, text))))
    got = res.json()
    assert got.keys() == want.keys()
    assert [w["word"] for w in got["words"]] == [w["word"] for w in want["words"]]
    assert got["label"] == want["label"] and got["top_k"] == want["top_k"]
    assert got["words"][0]["delta"] == pytest.approx(want["words"][0]["delta"], abs=1e-5)
    assert got["score"] == pytest.approx(got["probs"]["positive"] - got["probs"]["negative"], abs=1e-9)
    assert got["score"] == pytest.approx(want["score"], abs=1e-5)


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [({"text": "  "}, "text", "empty"), ({"text": "x" * 101}, "text", "at most 100"), ({}, "text", "required"),
     ({"text": "a", "top_k": 0}, "top_k", "greater than"), ({"text": "a", "target": "Nokia"}, "target", "sentence-level")],
)  # fmt: skip
def test_explain_limits(make_client: Any, body: dict[str, Any], field: str, needle: str) -> None:
    res = make_client(max_chars=100).post("/v1/explain", json=body)
    assert res.status_code == 422 and res.json()["field"] == field and needle in res.json()["error"], res.text


def test_health(client: Any, serve_model: Path) -> None:
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["model_loaded"] is True
    assert h["model"] == str(serve_model) and h["labels"] == ["negative", "neutral", "positive"]
    assert h["kind"] and h["backend"] == "torch" and h["auth"] is False


def test_metrics_count_requests_latency_batches_and_throughput(client: Any) -> None:
    client.post("/v1/predict", json={"texts": ["a", "b", "c"]})
    client.post("/v1/predict", json={"texts": []})
    text = client.get("/metrics").text
    assert 'finsent_requests_total{endpoint="/v1/predict",status="200"} 1.0' in text
    assert 'finsent_requests_total{endpoint="/v1/predict",status="422"} 1.0' in text
    assert 'finsent_request_latency_seconds_bucket{endpoint="/v1/predict",le="+Inf"} 2.0' in text
    assert "finsent_batch_texts_sum 3.0" in text and "finsent_batch_requests_count 1.0" in text
    assert "finsent_texts_total 3.0" in text
    rate = next(line for line in text.splitlines() if line.startswith("finsent_texts_per_second "))
    assert float(rate.split()[1]) > 0


def test_auth_off_by_default_and_on_with_a_key(make_client: Any) -> None:
    assert make_client().post("/v1/predict", json={"texts": ["a"]}).status_code == 200
    client = make_client(api_key="s3cret")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "s3cre"}):
        res = client.post("/v1/predict", json={"texts": ["a"]}, headers=headers)
        assert res.status_code == 401 and "API key" in res.json()["error"] and res.json()["field"] == "api_key"
    assert client.get("/metrics").status_code == 401
    assert client.post("/v1/explain", json={"text": "a"}).status_code == 401
    assert client.post("/v1/predict", json={"texts": ["a"]}, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.post("/v1/predict", json={"texts": ["a"]}, headers={"X-API-Key": "s3cret"}).status_code == 200
    assert client.get("/metrics", headers={"X-API-Key": "s3cret"}).status_code == 200
    assert client.get("/health").json()["auth"] is True  # the page learns it must ask for a key
    assert client.get("/").status_code == 200


def test_api_key_comes_from_the_environment() -> None:
    from finsent_cli.serve.schemas import api_key_from

    assert api_key_from(None, {"FINSENT_API_KEY": "k"}) == "k"
    assert api_key_from("given", {"FINSENT_API_KEY": "k"}) == "given"
    assert api_key_from(None, {}) is None


def test_cors_off_unless_configured(make_client: Any) -> None:
    origin = {"Origin": "https://desk.example", "Access-Control-Request-Method": "POST"}
    res = make_client().options("/v1/predict", headers=origin)
    assert "access-control-allow-origin" not in res.headers
    res = make_client(cors_origins=("https://desk.example",)).options("/v1/predict", headers=origin)
    assert res.headers.get("access-control-allow-origin") == "https://desk.example"


def test_page_and_its_files_come_from_the_package(client: Any) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'name="viewport"' in page.text and 'for="texts"' in page.text
    for name in ("app.js", "style.css"):
        res = client.get(f"/static/{name}")
        assert res.status_code == 200
        assert "http://" not in res.text and "https://" not in res.text  # no CDN
    assert "https://" not in page.text and "http://" not in page.text
    assert client.get("/docs").status_code == 200
    assert "/v1/predict" in client.get("/openapi.json").json()["paths"]


def test_health_says_whether_the_model_takes_a_target(make_client: Any, serve_clf: Any) -> None:
    assert make_client().get("/health").json()["target_conditioned"] is False
    targeted = dataclasses.replace(serve_clf, meta={**serve_clf.meta, "targets": True})
    assert make_client(targeted).get("/health").json()["target_conditioned"] is True


def test_the_page_names_an_icon_that_is_served(client: Any) -> None:
    import re

    page = client.get("/").text
    link = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', page)
    assert link, "the page names no icon: browsers then ask for /favicon.ico"
    for path in (link.group(1), "/favicon.ico"):  # /favicon.ico: what a browser asks for on /health
        res = client.get(path)
        assert res.status_code == 200 and res.headers["content-type"].startswith("image/svg+xml"), path
        assert res.text.startswith("<svg") and "<script" not in res.text


@pytest.mark.parametrize(
    ("method", "path", "status", "field", "error", "allow"),
    [("GET", "/v2/nothing", 404, "path", "/v2/nothing: no such page or endpoint (the API is described at /docs)", None),
     ("GET", "/static/nothing.js", 404, "path", "/static/nothing.js: no such page or endpoint (the API is described at /docs)", None),
     ("GET", "/v1/predict", 405, "method", "GET /v1/predict: method not allowed; use POST", "POST"),
     ("DELETE", "/health", 405, "method", "DELETE /health: method not allowed; use GET", "GET")],
)  # fmt: skip
def test_unknown_paths_and_methods_are_refused_like_every_other_error(
    client: Any, method: str, path: str, status: int, field: str, error: str, allow: str | None
) -> None:
    res = client.request(method, path)
    assert res.status_code == status and res.json() == {"error": error, "field": field}, res.text
    assert res.headers.get("allow") == allow


def test_file_upload_returns_the_csv_of_predict(client: Any) -> None:
    csv_in = "id,text\n1,Shares fell after a profit warning\n2,\n3,Dividend raised\n"
    res = client.post("/v1/predict/file?filename=news.csv", content=csv_in.encode())
    assert res.status_code == 200, res.text
    assert res.headers["content-type"].startswith("text/csv")
    assert 'filename="news.predictions.csv"' in res.headers["content-disposition"]
    lines = res.text.splitlines()
    assert lines[0] == "line,text,label,confidence,p_negative,p_neutral,p_positive,score,status"
    assert [line.split(",")[0] for line in lines[1:]] == ["2", "3", "4"]
    assert lines[2].endswith(",,empty")  # no probabilities, no score
    for row in csv.DictReader(io.StringIO(res.text)):
        if row["status"] == "ok":
            assert float(row["score"]) == round(float(row["p_positive"]) - float(row["p_negative"]), 6)
    txt = client.post("/v1/predict/file?filename=news.txt", content=b"one\ntwo\n").text.splitlines()
    assert len(txt) == 3 and txt[1].startswith("1,one,")



def test_a_file_line_too_long_to_read_says_truncated_as_predict_does(make_client: Any) -> None:
    client = make_client(max_chars=100)  # the per-text cut of the upload lies below the truncation check's length
    body = ("x" * 1_000_000 + "\nDividend raised\n").encode()  # one word of a million characters
    res = client.post("/v1/predict/file?filename=long.txt", content=body)
    assert res.status_code == 200, res.text
    assert [line.rsplit(",", 1)[1] for line in res.text.splitlines()[1:]] == ["truncated", "ok"]

@pytest.mark.parametrize(
    ("query", "body", "status", "needle"),
    [("filename=x.csv", b"headline\nfoo\n", 422, "text"), ("filename=x.pdf", b"x", 422, "format"),
     ("filename=x.txt", b"", 422, "empty"), ("filename=x.csv", b"text\n", 422, "no data rows")],
)  # fmt: skip
def test_file_upload_errors(client: Any, query: str, body: bytes, status: int, needle: str) -> None:
    res = client.post(f"/v1/predict/file?{query}", content=body)
    assert res.status_code == status and res.json()["field"] == "file" and needle in res.json()["error"], res.text


@pytest.mark.parametrize(
    ("body", "error"),
    [(b"shares\x00rose\n", "file: news.txt: looks like a binary file (NUL byte at offset 6), not text"),
     (b"\xff\xfes\x00h\x00", "file: news.txt: looks like UTF-16 text (byte-order mark), not UTF-8; re-encode the file as UTF-8"),
     (b"  \n\n \n", "file: news.txt: empty; send the file as the request body")],
)  # fmt: skip
def test_an_unreadable_upload_is_named_by_its_filename(client: Any, body: bytes, error: str) -> None:
    res = client.post("/v1/predict/file?filename=news.txt", content=body)
    assert res.status_code == 422 and res.json() == {"error": error, "field": "file"}, res.text


def test_upload_limit_is_its_own(make_client: Any) -> None:
    client = make_client(max_body_bytes=100, max_upload_bytes=300)
    assert client.post("/v1/predict/file?filename=x.txt", content=b"shares rose\n" * 20).status_code == 200
    assert client.post("/v1/predict/file?filename=x.txt", content=b"shares rose\n" * 30).status_code == 413


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds; fail only after :data:`HANG_GUARD_S` (a hang, not a budget)."""
    deadline = time.monotonic() + HANG_GUARD_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"hung waiting for {what}")
        time.sleep(0.005)


class _Gated(nn.Module):
    """Wraps a model: records each pass's batch size, fails any batch holding the ``poison`` token, and
    can hold its first pass until ``hold_until()`` is true, so that tests line requests up on events, not
    on timing. ``entered`` is set when the first pass starts."""

    def __init__(self, inner: nn.Module, poison: int | None = None) -> None:
        super().__init__()
        self.inner, self.poison = inner, poison
        self.calls: list[int] = []
        self.entered = threading.Event()
        self.hold_until: Callable[[], bool] | None = None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        self.calls.append(int(input_ids.shape[0]))
        self.entered.set()
        if len(self.calls) == 1 and self.hold_until is not None:
            wait_until(self.hold_until, "the test to release the model")
        if self.poison is not None and bool((input_ids == self.poison).any()):
            raise RuntimeError("poisoned input")
        return self.inner(input_ids=input_ids, attention_mask=attention_mask)


FULL = 1e9
"""A pass cost that makes every pass as full as the limits allow (the gathering, not plan_passes, under test)."""


def _keyword_clf(tiny_bert: Path, poison: str | None = None) -> Any:
    clf = keyword_classifier(tiny_bert, pos={"rose": 3.0}, neg={"fell": 3.0})
    clf.model = _Gated(clf.model, clf.tokenizer.convert_tokens_to_ids(poison) if poison else None)
    return clf


def _concurrently(client: Any, bodies: list[dict[str, Any]], path: str = "/v1/predict") -> list[Any]:
    out: list[Any] = [None] * len(bodies)
    barrier = threading.Barrier(len(bodies))

    def one(i: int) -> None:
        barrier.wait()
        out[i] = client.post(path, json=bodies[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_GUARD_S)
    return out


def _queued_together(client: Any, clf: Any, bodies: list[dict[str, Any]]) -> list[Any]:
    """Answer ``bodies`` concurrently, all of them waiting in the batcher at once: an opener request holds
    the model until every body is queued behind it. Returns the answers; ``clf.model.calls`` keeps only the
    passes after the opener's."""
    batcher = client.app.state.batcher
    clf.model.hold_until = lambda: batcher.waiting == len(bodies)
    opener = threading.Thread(target=lambda: client.post("/v1/predict", json={"texts": ["opener"]}))
    opener.start()
    assert clf.model.entered.wait(HANG_GUARD_S), "the opener never reached the model"
    results = _concurrently(client, bodies)
    opener.join(HANG_GUARD_S)
    assert clf.model.calls.pop(0) == 1  # the opener ran alone
    return results


def test_micro_batching_shares_forward_passes(make_client: Any, tiny_bert: Path) -> None:
    clf = _keyword_clf(tiny_bert)
    client = make_client(clf, max_wait_ms=0, pass_cost=FULL)  # no waiting: only what is queued is gathered
    bodies = [{"texts": [f"shares rose {i}", f"shares fell {i}"]} for i in range(16)]
    results = _queued_together(client, clf, bodies)
    assert all(r.status_code == 200 for r in results)
    for body, res in zip(bodies, results):  # each request answered with its own texts, in order
        rows = res.json()["results"]
        assert [r["text"] for r in rows] == body["texts"]
        assert [r["label"] for r in rows] == ["positive", "negative"]
    assert clf.model.calls == [32]  # 16 requests, one shared forward pass


def test_a_gathered_batch_is_cut_into_passes_by_length(make_client: Any, tiny_bert: Path) -> None:
    clf = _keyword_clf(tiny_bert)
    client = make_client(clf, max_wait_ms=0, pass_cost=0.0)  # passes cost nothing: no padding is worth it
    long = " ".join(["shares rose"] * 20)
    bodies = [{"texts": [f"shares rose {i}", long]} for i in range(4)]
    results = _queued_together(client, clf, bodies)
    assert all(r.status_code == 200 for r in results)
    assert [[r["text"] for r in res.json()["results"]] for res in results] == [b["texts"] for b in bodies]
    assert sorted(clf.model.calls) == [4, 4]  # the long texts together, the short ones together


def test_without_batching_every_request_has_its_own_pass(make_client: Any, tiny_bert: Path) -> None:
    clf = _keyword_clf(tiny_bert)
    client = make_client(clf, batching=False, pass_cost=FULL)
    results = _concurrently(client, [{"texts": [f"shares rose {i}"]} for i in range(8)])
    assert all(r.status_code == 200 for r in results)
    assert clf.model.calls == [1] * 8


def test_a_lone_client_does_not_wait_for_others(make_client: Any, tiny_bert: Path) -> None:
    import time

    client = make_client(_keyword_clf(tiny_bert), max_wait_ms=HANG_GUARD_S * 1000, pass_cost=FULL)
    started = time.monotonic()
    for i in range(3):  # one request at a time: nothing else is outstanding, so no gathering wait
        assert client.post("/v1/predict", json={"texts": [f"shares rose {i}"]}).status_code == 200
    assert time.monotonic() - started < HANG_GUARD_S  # a wait of max_wait_ms would take the guard three times over


def test_the_wait_counts_the_clients_seen_lately() -> None:
    from finsent_cli.serve.batcher import _Peak

    peak = _Peak(window_s=1.0)
    assert peak.peak(0.0) == 1  # nothing seen: a batch waits for nobody else
    peak.saw(8, 0.5)
    assert peak.peak(0.9) == 8 and peak.peak(1.5) == 8  # this second and the one before
    peak.saw(2, 1.6)
    assert peak.peak(2.1) == 2  # eight clients two seconds ago no longer count
    assert peak.peak(9.0) == 1


def test_a_failing_request_fails_alone(make_client: Any, tiny_bert: Path) -> None:
    clf = _keyword_clf(tiny_bert, poison="oil")
    client = make_client(clf, raise_server_exceptions=False, pass_cost=FULL)
    bodies = [{"texts": [f"shares rose {i}"]} for i in range(7)] + [{"texts": ["oil spill"]}]
    results = _queued_together(client, clf, bodies)
    assert [r.status_code for r in results] == [200] * 7 + [500]
    assert clf.model.calls == [8] + [1] * 8  # the shared pass failed: each request again, alone
    assert results[-1].json() == {"error": "internal error (RuntimeError); see the server log", "field": None}
    assert client.post("/v1/predict", json={"texts": ["shares fell"]}).status_code == 200  # still serving


def test_a_token_budget_splits_batches(make_client: Any, tiny_bert: Path) -> None:
    clf = _keyword_clf(tiny_bert)
    client = make_client(clf, max_batch_tokens=10, pass_cost=FULL)  # 5 tokens a request: two a batch
    results = _queued_together(client, clf, [{"texts": [f"shares rose {i}"]} for i in range(8)])
    assert all(r.status_code == 200 for r in results)
    assert clf.model.calls == [2, 2, 2, 2]


def test_config_problems_are_refused() -> None:
    from finsent_cli.errors import FinsentError
    from finsent_cli.serve.schemas import ServeConfig

    assert ServeConfig(max_texts=0, max_wait_ms=-1).problems() == ["--max-texts must be at least 1", "--max-wait-ms must be at least 0"]
    with pytest.raises(FinsentError, match="API key"):
        from finsent_cli.serve.app import create_app

        create_app(None, ServeConfig(api_key=" "))  # type: ignore[arg-type]
