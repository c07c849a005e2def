"""--engine ray on a local Ray instance: rows in = rows out, in order, and the local engine's labels."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from finsent_cli.core.predict.run import predict_input
from finsent_cli.errors import FinsentError
from tests.classifier_fakes import sharpened_copy

ray = pytest.importorskip("ray", reason="the ray extra is not installed")


@pytest.fixture(scope="module")
def sharp(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sharpened_copy(tiny_bert, tmp_path_factory.mktemp("sharp"))


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _texts(n: int) -> list[str]:
    words = ["profit", "loss", "shares fell", "rose", "guidance cut", "record quarter", "Nokia", "EUR 13.1 mn"]
    return ["" if i % 37 == 0 else " ".join(words[(i * k) % len(words)] for k in range(1, 2 + i % 6)) for i in range(n)]


def test_ray_rows_match_local(sharp: Path, tmp_path: Path, local_ray: None) -> None:
    src = tmp_path / "in.txt"
    src.write_text("\n".join(_texts(300)) + "\n", encoding="utf-8")
    local, remote = tmp_path / "local.csv", tmp_path / "ray.csv"
    predict_input(src, sharp, output=local, chunk_size=128)
    result = predict_input(src, sharp, output=remote, chunk_size=150, engine="ray", workers=2)  # two chunks
    a = list(csv.DictReader(local.open(encoding="utf-8")))
    b = list(csv.DictReader(remote.open(encoding="utf-8")))
    assert len(b) == 300 and result.records == 300
    assert [r["line"] for r in b] == [str(i) for i in range(1, 301)]
    assert [r["label"] for r in b] == [r["label"] for r in a]
    assert [r["status"] for r in b] == [r["status"] for r in a] and result.empty == 9
    assert list(b[0]) == list(a[0]) and "score" in b[0]
    for x, y in zip(a, b):
        if x["p_positive"]:
            assert abs(float(x["p_positive"]) - float(y["p_positive"])) < 1e-5
            assert abs(float(x["score"]) - float(y["score"])) < 2e-5
            assert float(y["score"]) == round(float(y["p_positive"]) - float(y["p_negative"]), 6)
        else:
            assert x["score"] == y["score"] == ""


def test_ray_per_document_and_predictor_api(sharp: Path, tmp_path: Path, local_ray: None) -> None:
    from finsent_cli.core.predict.ray_engine import Predictor

    docs = ["Profits rose. Shares fell sharply on Monday. The CEO left.", "", "Guidance cut. Record quarter."]
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    local, remote = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    predict_input(src, sharp, output=local, fmt="jsonl", per="document", details=tmp_path / "d1.csv")
    predict_input(src, sharp, output=remote, fmt="jsonl", per="document", details=tmp_path / "d2.csv", engine="ray", workers=1)
    a = [json.loads(x) for x in local.read_text().splitlines()]
    b = [json.loads(x) for x in remote.read_text().splitlines()]
    assert [(r["line"], r["label"], r["sentences"]) for r in a] == [(r["line"], r["label"], r["sentences"]) for r in b] == [
        (1, a[0]["label"], 3), (2, None, 0), (3, a[2]["label"], 2),
    ]  # fmt: skip
    assert len((tmp_path / "d2.csv").read_text().splitlines()) == 1 + 5
    assert [list(r) for r in b] == [list(r) for r in a] and b[1]["score"] is None
    assert all(r["score"] == round(r["p_positive"] - r["p_negative"], 6) for r in b if r["label"])  # of the aggregate
    # the Python API on a Ray Dataset of texts
    ds = ray.data.from_items([{"text": t} for t in ["Profits rose", "Shares fell"]])
    out = ds.map_batches(Predictor, fn_constructor_kwargs={"model": str(sharp)}, concurrency=1, batch_format="pandas").take_all()
    rows = predict_input(_txt(tmp_path, ["Profits rose", "Shares fell"]), sharp).rows
    assert [r["label"] for r in out] == [r["label"] for r in rows]
    assert [r["score"] for r in out] == pytest.approx([r["score"] for r in rows], abs=2e-6)  # the score column too


def _txt(folder: Path, texts: list[str]) -> Path:
    p = folder / "two.txt"
    p.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return p


def test_engine_option_refusals(sharp: Path, tmp_path: Path) -> None:
    src = _txt(tmp_path, ["a"])
    with pytest.raises(FinsentError, match="unknown --engine 'dask'"):
        predict_input(src, sharp, engine="dask")
    with pytest.raises(FinsentError, match="options of --engine ray"):
        predict_input(src, sharp, workers=2)


def test_ray_answers_malformed_lines_in_their_place(sharp: Path, tmp_path: Path, local_ray: None) -> None:
    """The Ray workers get the records that read well; the malformed ones are answered beside them, in order."""
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "Profits rose"}\n{"text": \n{"text": "Shares fell"}\nnot json\n{"text": ""}\n', encoding="utf-8")
    local, remote = tmp_path / "local.csv", tmp_path / "ray.csv"
    predict_input(src, sharp, output=local)
    result = predict_input(src, sharp, output=remote, engine="ray", workers=1)
    b = list(csv.DictReader(remote.open(encoding="utf-8")))
    assert [(r["line"], r["status"]) for r in b] == [("1", "ok"), ("2", "malformed"), ("3", "ok"), ("4", "malformed"), ("5", "empty")]
    assert [r["label"] for r in b] == [r["label"] for r in csv.DictReader(local.open(encoding="utf-8"))]
    assert result.malformed == 2
