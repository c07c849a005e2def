"""Streaming predict: lines in = rows out on hostile input, chunking changes no byte, --resume after a real
kill -9 gives the uninterrupted file, and every refusal of a partial output that is not this run's."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from finsent_cli.core.inference.classifier import plan_batches
from finsent_cli.core.predict.run import PredictOptions, predict_input
from finsent_cli.core.progress import NullReporter
from finsent_cli.errors import FinsentError
from finsent_cli.extras import install_hint
from tests.classifier_fakes import sharpened_copy
from tests.helpers import HANG_GUARD_S, REPO, cli_env

HOSTILE_LINES = 8


@pytest.fixture(scope="module")
def sharp(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sharpened_copy(tiny_bert, tmp_path_factory.mktemp("sharp"))


def hostile_file(folder: Path) -> Path:
    """Empty lines, invalid UTF-8, a 1 MB line and a 5,000-word line among ordinary headlines."""
    words = " ".join(["profit"] * 5000)
    one_mb = ("loss " * (1 << 18))[: 1 << 20]
    lines = [b"Profits rose sharply", b"", b"bad \xff\xfe bytes here", one_mb.encode(), words.encode(), b"   ", b"Shares fell", b"\xc3"]
    path = folder / "hostile.txt"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert len(lines) == HOSTILE_LINES
    return path


def test_hostile_input_one_row_per_line(sharp: Path, tmp_path: Path) -> None:
    reporter = NullReporter()
    result = predict_input(hostile_file(tmp_path), sharp, reporter=reporter, chunk_size=3, batch_tokens=256)
    assert [r["line"] for r in result.rows] == list(range(1, HOSTILE_LINES + 1))
    assert [r["status"] for r in result.rows] == ["ok", "empty", "ok", "truncated", "truncated", "empty", "ok", "ok"]
    assert result.replaced == 2 and result.truncated == 2 and result.empty == 2
    assert "\ufffd" in result.rows[2]["text"] and len(result.rows[3]["text"]) == 1 << 20
    assert any("--per document" in w for w in reporter.warnings)  # the truncation warning says the fix


def test_per_document_windows_long_sentences(sharp: Path, tmp_path: Path) -> None:
    out, details = tmp_path / "docs.csv", tmp_path / "details.jsonl"
    reporter = NullReporter()
    result = predict_input(
        hostile_file(tmp_path), sharp, reporter=reporter, output=out, details=details, per="document", aggregate="confidence",
    )  # fmt: skip
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["line"] for r in rows] == [str(n) for n in range(1, HOSTILE_LINES + 1)]
    assert [r["status"] for r in rows] == ["ok", "empty", "ok", "ok", "ok", "empty", "ok", "ok"]  # nothing truncated
    assert {r["aggregation"] for r in rows} == {"confidence"}
    pieces = [json.loads(line) for line in details.read_text(encoding="utf-8").splitlines()]
    long_words = [p for p in pieces if p["line"] == 5]
    assert len(long_words) > 1 and all(p["parts"] == len(long_words) for p in long_words)  # a sentence in windows
    assert all(0 < len(p["text"]) < 1000 for p in long_words)  # each window row holds its own words
    assert result.windowed == 2  # the 1 MB line and the 5,000 words
    # each document row is the confidence-weighted mean of its pieces
    for row in rows:
        mine = [p for p in pieces if p["line"] == int(row["line"])]
        if not mine:
            continue
        probs = np.array([[p["p_negative"], p["p_neutral"], p["p_positive"]] for p in mine])
        ent = -(np.clip(probs, 1e-12, 1) * np.log(np.clip(probs, 1e-12, 1))).sum(1) / np.log(3)
        w = 1 - ent
        want = (w[:, None] * probs).sum(0) / w.sum() if w.sum() > 1e-9 else probs.mean(0)
        got = [float(row["p_negative"]), float(row["p_neutral"]), float(row["p_positive"])]
        assert np.allclose(got, want, atol=2e-5)
    assert not list(tmp_path.glob("*.partial*"))


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl"])
def test_chunking_and_batching_change_no_byte(sharp: Path, tmp_path: Path, fmt: str) -> None:
    src = tmp_path / "in.jsonl"
    texts = ["Profits rose sharply", "", "Shares fell 8% after a profit warning", "EUR 13.1 mn"] * 5
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    a, b = tmp_path / f"a.{fmt}", tmp_path / f"b.{fmt}"
    predict_input(src, sharp, output=a, fmt=fmt, chunk_size=3, batch_size=2)
    predict_input(src, sharp, output=b, fmt=fmt, chunk_size=4096, batch_tokens=None)
    # probabilities are rounded to 6 places: batch composition may move the 7th
    assert a.read_bytes() == b.read_bytes() or _rows_close(a, b, fmt)
    if fmt == "json":
        assert [r["line"] for r in json.loads(a.read_text())] == list(range(1, 21))


def _rows_close(a: Path, b: Path, fmt: str) -> bool:
    def load(p: Path) -> list[dict]:
        if fmt == "csv":
            return list(csv.DictReader(p.open(encoding="utf-8")))
        return json.loads(p.read_text()) if fmt == "json" else [json.loads(x) for x in p.read_text().splitlines()]

    ra, rb = load(a), load(b)
    return len(ra) == len(rb) and all(
        x["label"] == y["label"] and (x["p_positive"] in ("", None) or abs(float(x["p_positive"]) - float(y["p_positive"])) < 1e-5)
        for x, y in zip(ra, rb)
    )


def test_stream_to_stdout_like_file(sharp: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("up\n\ndown\n", encoding="utf-8")
    buf = io.StringIO()
    result = predict_input(src, sharp, stream=buf, fmt="json", chunk_size=1)
    assert result.rows == [] and result.records == 3  # nothing kept in memory
    assert [r["status"] for r in json.loads(buf.getvalue())] == ["ok", "empty", "ok"]


def test_plan_batches_token_budget() -> None:
    lengths = [10, 500, 12, 11, 480, 9]
    batches = plan_batches(lengths, batch_size=64, batch_tokens=900)
    assert batches == [[1], [4], [2, 3, 0, 5]]  # long texts alone, short ones together, longest first
    assert plan_batches(lengths, batch_size=2, batch_tokens=None) == [[1, 4], [2, 3], [0, 5]]
    assert plan_batches([3000], 64, 100) == [[0]]  # a text longer than the budget still gets a batch


def _partial_run(tmp_path: Path, model: Path, src: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "finsent_cli", "predict", str(src), "-m", str(model), "-o", str(out), "-q", "--chunk-size", "500", *extra]
    return subprocess.Popen(cmd, cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_resume_after_kill_9_is_byte_identical(sharp: Path, tmp_path: Path) -> None:
    src = tmp_path / "many.csv"
    rng = np.random.default_rng(0)
    words = ["profit", "loss", "shares", "fell", "rose", "bank", "guidance", "cut", "record", '"quoted, text"']
    with src.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text"])
        for i in range(20_000):
            w.writerow([i, " ".join(rng.choice(words, size=int(rng.integers(0, 12))))])
    ref, out = tmp_path / "ref.csv", tmp_path / "out.csv"
    victim = _partial_run(tmp_path, sharp, src, out)
    state = tmp_path / "out.csv.partial.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and victim.poll() is None:
        if state.is_file() and json.loads(state.read_text()).get("rows", 0) >= 1000:
            victim.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    victim.wait(60)
    assert victim.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not out.exists() and (tmp_path / "out.csv.partial").is_file()
    # without --resume the partial output is not overwritten by accident
    again = _partial_run(tmp_path, sharp, src, out)
    assert again.wait(120) == 2 and b"--resume" in again.stderr.read()
    done = _partial_run(tmp_path, sharp, src, out, "--resume")
    assert done.wait(240) == 0, done.stderr.read()
    whole = _partial_run(tmp_path, sharp, src, ref)
    assert whole.wait(240) == 0
    assert out.read_bytes() == ref.read_bytes()
    assert sum(1 for _ in out.open(encoding="utf-8")) == 20_001
    assert not list(tmp_path.glob("*.partial*"))


def _interrupted(sharp: Path, tmp_path: Path, src: Path, out: Path, fmt: str = "csv") -> None:
    """Leave a partial output after two chunks, as an interruption would."""
    state = tmp_path / f"{out.name}.partial.json"

    class Stop(Exception):
        pass

    class Task:
        def advance(self, n: int = 1, **fields: object) -> None:
            if fields.get("records") == 4:  # the second chunk is written
                raise Stop

    class Reporter(NullReporter):
        def task(self, description: str, total: int | None = None, unit: str = "items"):  # type: ignore[override]
            import contextlib

            return contextlib.nullcontext(Task())

    with pytest.raises(Stop):
        predict_input(src, sharp, output=out, fmt=fmt, chunk_size=2, reporter=Reporter())
    assert json.loads(state.read_text())["rows"] == 4


def test_resume_refuses_another_input_model_or_options(sharp: Path, tiny_bert: Path, tmp_path: Path) -> None:
    src, out = tmp_path / "in.txt", tmp_path / "out.csv"
    src.write_text("".join(f"headline {i}\n" for i in range(10)), encoding="utf-8")
    _interrupted(sharp, tmp_path, src, out)
    with pytest.raises(FinsentError, match="holds 4 rows of an interrupted run: add --resume"):
        predict_input(src, sharp, output=out, chunk_size=2)
    with pytest.raises(FinsentError, match=r"--resume with other settings than the interrupted run: --model \(was [0-9a-f]{16}, now [0-9a-f]{16}\);"):
        predict_input(src, tiny_bert, output=out, chunk_size=2, resume=True)
    with pytest.raises(FinsentError) as info:
        predict_input(src, sharp, output=out, fmt="jsonl", per="document", resume=True)
    assert info.value.message == (
        f"{out}: --resume with other settings than the interrupted run: --format (was csv, now jsonl), "
        "--per (was record, now document), --aggregate (was not given, now mean); "
        "rerun with the same options, or with --fresh to start over"
    )  # every option that differs, named as typed
    assert info.value.exit_code == 2
    other = tmp_path / "other.txt"
    other.write_bytes(src.read_bytes())
    with pytest.raises(FinsentError, match=r"--resume with other settings than the interrupted run: INPUT \(was .*in\.txt, now .*other\.txt\)"):
        predict_input(other, sharp, output=out, chunk_size=2, resume=True)
    src.write_text("HEADLINE 0 changed\n" + "".join(f"headline {i}\n" for i in range(1, 10)), encoding="utf-8")
    with pytest.raises(FinsentError, match="changed since the partial output was written"):
        predict_input(src, sharp, output=out, chunk_size=2, resume=True)
    result = predict_input(src, sharp, output=out, chunk_size=2, fresh=True)
    assert result.records == 10 and not (tmp_path / "out.csv.partial").exists()
    with pytest.raises(FinsentError, match="no partial output to resume"):
        predict_input(src, sharp, output=out, resume=True)


def test_resume_continues_a_partial_file(sharp: Path, tmp_path: Path) -> None:
    src, out, ref = tmp_path / "in.txt", tmp_path / "out.jsonl", tmp_path / "ref.jsonl"
    src.write_text("".join(f"headline {i}\n" for i in range(11)), encoding="utf-8")
    _interrupted(sharp, tmp_path, src, out, "jsonl")
    with (tmp_path / "out.jsonl.partial").open("ab") as fh:
        fh.write(b'{"line": 5, "half a row')  # what a kill in the middle of a chunk leaves
    reporter = NullReporter()
    result = predict_input(src, sharp, output=out, fmt="jsonl", chunk_size=2, resume=True, reporter=reporter)
    assert result.resumed == 4 and result.records == 7
    assert any("resuming after 4 records" in m for m in reporter.messages)
    predict_input(src, sharp, output=ref, fmt="jsonl", chunk_size=2)
    assert out.read_bytes() == ref.read_bytes()


def test_option_refusals(sharp: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("a\n", encoding="utf-8")
    cases = [
        ({"per": "page"}, "unknown --per 'page'"),
        ({"aggregate": "max"}, "unknown --aggregate 'max'"),
        ({"details": tmp_path / "d.csv", "output": tmp_path / "o.csv"}, "add --per document"),
        ({"resume": True}, "give --output"),
        ({"per": "document", "target": "Nokia"}, "--per document scores sentence-level models"),
        ({"chunk_size": 0}, "--chunk-size must be at least 1"),
    ]
    for kwargs, needle in cases:
        with pytest.raises(FinsentError, match=needle.replace("(", r"\(")):
            predict_input(src, sharp, **kwargs)
    with pytest.raises(FinsentError, match="stdin cannot be read again"):
        predict_input("-", sharp, output=tmp_path / "o.csv", resume=True, stdin=io.BytesIO(b"a\n"))
    assert PredictOptions(per="document").columns()[-4:] == ["score", "sentences", "aggregation", "status"]


def test_cli_progress_lines_when_not_a_tty(sharp: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("".join(f"headline {i}\n" for i in range(50)), encoding="utf-8")
    res = subprocess.run(
        [sys.executable, "-m", "finsent_cli", "predict", str(src), "-m", str(sharp), "-o", str(tmp_path / "o.csv"), "--chunk-size", "10"],
        check=False, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=HANG_GUARD_S,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert re.search(r"predict: 100\.0% records=50 rate=\d+/s\n", res.stderr) and "records/s" in res.stderr
    assert res.stderr.count("predict: 100.0%") == 1  # the closing line once, with the chunk's counts


def test_ray_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from finsent_cli.core.predict.ray_engine import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(FinsentError, match=re.escape(install_hint("ray"))):
        import_ray()


def test_output_or_details_equal_to_the_input_is_refused(sharp: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("text\nProfits rose\n", encoding="utf-8")
    with pytest.raises(FinsentError, match="is the input file"):
        predict_input(src, sharp, output=src)
    with pytest.raises(FinsentError, match="is the input file"):
        predict_input(src, sharp, output=tmp_path / "o.csv", details=src, per="document")
    (tmp_path / "folder").mkdir()
    with pytest.raises(FinsentError, match="folder"):  # checked before any work, not after the last chunk
        predict_input(src, sharp, output=tmp_path / "o.csv", details=tmp_path / "folder", per="document")
    assert src.read_text(encoding="utf-8") == "text\nProfits rose\n"


def test_corrupt_gzip_and_pipes(sharp: Path, tmp_path: Path) -> None:
    import gzip

    good = gzip.compress(b"".join(b"headline number %d\n" % i for i in range(3000)))
    bad = tmp_path / "bad.txt.gz"
    bad.write_bytes(good[:40] + bytes(b ^ 0x5A for b in good[40:400]) + good[400:])
    with pytest.raises(FinsentError, match=r"bad\.txt\.gz: cannot read"):
        predict_input(bad, sharp)
    # a named pipe is read once: the line count for the ETA must not swallow it
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    import threading

    writer = threading.Thread(target=lambda: fifo.write_text("".join(f"headline {i}\n" for i in range(500)), encoding="utf-8"))
    writer.start()
    result = predict_input(fifo, sharp, chunk_size=64)
    writer.join()
    assert result.records == 500 and result.rows[-1]["text"] == "headline 499"


def test_resume_after_a_stop_between_the_final_renames(sharp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from finsent_cli.core.predict import output as output_mod

    src, out, details = tmp_path / "in.txt", tmp_path / "docs.csv", tmp_path / "sentences.csv"
    src.write_text("Profits rose. Shares fell.\nGuidance cut.\n", encoding="utf-8")
    real_replace, calls = os.replace, []

    def stop_at_the_second(a: object, b: object) -> None:
        calls.append(b)
        if Path(str(b)) == out:
            raise KeyboardInterrupt  # as a kill between the details rename and the output rename
        real_replace(a, b)

    monkeypatch.setattr(output_mod.os, "replace", stop_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        predict_input(src, sharp, output=out, details=details, per="document", chunk_size=1)
    monkeypatch.setattr(output_mod.os, "replace", real_replace)
    assert details.exists() and not out.exists()
    predict_input(src, sharp, output=out, details=details, per="document", chunk_size=1, resume=True)
    ref, ref_details = tmp_path / "ref.csv", tmp_path / "ref_sentences.csv"
    predict_input(src, sharp, output=ref, details=ref_details, per="document", chunk_size=1)
    assert out.read_bytes() == ref.read_bytes() and details.read_bytes() == ref_details.read_bytes()


# --- issue 22: never a lost line, on input either ---------------------------------------------------


def _csv_with_a_broken_quote(folder: Path, n: int = 301, broken: int = 251) -> tuple[Path, list[str]]:
    """``n`` records (one of them a legitimate two-line quoted field), the ``broken``-th given an opening
    quote that never closes properly: what a hand-edited export looks like."""
    texts = [f"headline {i} rose" if i != 100 else "a quoted\ntwo-line headline, 100" for i in range(1, n + 1)]
    src = folder / "broken.csv"
    with src.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows([["id", "text"], *([i, t] for i, t in enumerate(texts, start=1))])
    lines = src.read_text(encoding="utf-8").split("\n")
    at = broken + 1  # the header is line 1, and record 100 takes two lines
    assert lines[at].startswith(f"{broken},")
    lines[at] = lines[at].replace(",", ',"', 1)  # 251,"headline 251 rose
    lines[at + 3] = lines[at + 3].replace(",", ',"quoted" ', 1)  # a later quote closes it, followed by text
    src.write_text("\n".join(lines), encoding="utf-8")
    return src, texts


def test_a_broken_quote_is_one_malformed_row_and_nothing_is_merged_or_lost(sharp: Path, tmp_path: Path) -> None:
    src, texts = _csv_with_a_broken_quote(tmp_path)
    reporter = NullReporter()
    result = predict_input(src, sharp, reporter=reporter, chunk_size=64)
    rows = result.rows
    assert len(rows) == 301 == result.records  # rows in == rows out
    bad = [r for r in rows if r["status"] == "malformed"]
    assert [(r["line"], r["text"], r["label"], r["score"]) for r in bad] == [(253, '251,"headline 251 rose', None, None)]
    assert result.malformed == 1
    good = [r for r in rows if r["status"] != "malformed"]
    assert [r["text"] for r in good] == [t if i != 254 else "quoted headline 254 rose" for i, t in enumerate(texts, start=1) if i != 251]
    assert rows[99]["text"] == "a quoted\ntwo-line headline, 100" and rows[100]["line"] == 103  # a legit multi-line field: one record
    warning = next(w for w in reporter.warnings if "malformed" in w)
    assert warning == (
        "1 malformed record not classified (status 'malformed'): line 253: the quote opened here closes on line 256, "
        "where a comma does not follow it"
    )


def test_malformed_jsonl_lines_keep_their_place(sharp: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "Profits rose"}\n{"text": "Shares fell"\n[1, 2]\n\n{"body": "no text"}\n{"text": "Guidance cut"}\n', encoding="utf-8")
    reporter = NullReporter()
    result = predict_input(src, sharp, reporter=reporter)
    assert [(r["line"], r["status"]) for r in result.rows] == [(1, "ok"), (2, "malformed"), (3, "malformed"), (4, "empty"), (5, "malformed"), (6, "ok")]
    assert result.rows[1]["text"] == '{"text": "Shares fell"' and result.malformed == 3
    assert any("3 malformed records not classified (status 'malformed'): line 2: invalid JSON" in w and "line 5: no field 'text'" in w for w in reporter.warnings)
    src.write_text('{"text": "Shares fell"\n{"text": "Profits rose"}\n', encoding="utf-8")  # the first line decides the format
    with pytest.raises(FinsentError, match=r"in\.jsonl:1: invalid JSON"):
        predict_input(src, sharp)


def test_resume_after_a_malformed_record_ends_a_chunk_is_exact(sharp: Path, tmp_path: Path) -> None:
    """The lines read past a broken record are parsed again after it; a chunk boundary (the unit of
    --resume) right after it must not lose or repeat them."""
    src, out, ref = tmp_path / "in.csv", tmp_path / "out.csv", tmp_path / "ref.csv"
    lines = ["id,text", "1,Profits rose", "2,Shares fell", "3,Guidance cut", '4,"broken quote', "5,Loss widened", "6,Bank merged",
             '7,"quoted, text" tail', "8,Record sales", "9,Dividend raised"]  # fmt: skip
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _interrupted(sharp, tmp_path, src, out)  # two chunks of two records: the malformed line 5 ends the second
    state = json.loads((tmp_path / "out.csv.partial.json").read_text())
    assert state["line"] == 5 and state["counts"]["malformed"] == 1
    result = predict_input(src, sharp, output=out, chunk_size=2, resume=True)
    predict_input(src, sharp, output=ref, chunk_size=2)
    assert out.read_bytes() == ref.read_bytes()
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [(r["line"], r["status"]) for r in rows] == [(str(n), "ok") for n in (2, 3, 4)] + [("5", "malformed")] + [(str(n), "ok") for n in range(6, 11)]
    assert result.malformed == 1 and result.resumed == 4 and result.records == 5


def test_resume_accepts_other_batching_and_refusals_name_the_option(sharp: Path, tmp_path: Path) -> None:
    src, out, ref = tmp_path / "in.txt", tmp_path / "out.csv", tmp_path / "ref.csv"
    src.write_text("".join(f"headline {i} rose\n" for i in range(11)), encoding="utf-8")
    _interrupted(sharp, tmp_path, src, out)
    result = predict_input(src, sharp, output=out, resume=True, batch_size=1, batch_tokens=None, chunk_size=3, threads=1)
    assert result.resumed == 4 and result.records == 7
    predict_input(src, sharp, output=ref, chunk_size=2)
    assert out.read_bytes() == ref.read_bytes() or _rows_close(out, ref, "csv")


def test_control_characters_never_reach_a_csv_file(sharp: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"  # JSON can carry a NUL (as \u0000) past the binary-file check
    src.write_text(json.dumps({"text": "Profit\u0000 rose \u001b[2J\u0007 sharply\u007f\u009b\tnow"}) + "\n", encoding="utf-8")
    out_csv, out_jsonl = tmp_path / "o.csv", tmp_path / "o.jsonl"
    predict_input(src, sharp, output=out_csv)
    predict_input(src, sharp, output=out_jsonl, fmt="jsonl")
    raw = out_csv.read_text(encoding="utf-8")
    assert not any(c in raw for c in "\x00\x1b\x07\x7f\x9b")
    assert next(csv.DictReader(io.StringIO(raw)))["text"] == "Profit\ufffd rose \ufffd[2J\ufffd sharply\ufffd\ufffd\tnow"
    assert json.loads(out_jsonl.read_text(encoding="utf-8"))["text"] == "Profit\u0000 rose \u001b[2J\u0007 sharply\u007f\u009b\tnow"


class _Recorder(NullReporter):
    """Records the progress task: its total and unit, and each advance with what was written by then."""

    def __init__(self, out: Path | None = None) -> None:
        super().__init__()
        self.out, self.opened, self.steps = out, [], []

    def task(self, description: str, total: int | None = None, unit: str = "items"):  # type: ignore[override]
        import contextlib

        self.opened.append((description, total, unit))
        recorder = self

        class Task:
            def advance(self, n: int = 1, **fields: object) -> None:
                state = recorder.out.with_name(recorder.out.name + ".partial.json") if recorder.out else None
                rows = json.loads(state.read_text())["rows"] if state and state.is_file() else 0
                recorder.steps.append((n, dict(fields), rows))

        return contextlib.nullcontext(Task())


@pytest.mark.parametrize("gz", [False, True])
def test_progress_counts_input_bytes_and_moves_within_the_first_chunk(sharp: Path, tmp_path: Path, gz: bool) -> None:
    import gzip

    data = "".join(f"headline number {i} rose sharply\n" for i in range(3000)).encode()
    src = tmp_path / ("in.txt.gz" if gz else "in.txt")
    src.write_bytes(gzip.compress(data) if gz else data)
    out = tmp_path / "o.csv"
    reporter = _Recorder(out)
    predict_input(src, sharp, output=out, reporter=reporter, batch_size=100, batch_tokens=None)  # one chunk of 3,000
    size = src.stat().st_size
    assert reporter.opened == [("predict", size, "bytes")]  # a total: the bar can show the time left
    assert sum(n for n, _, _ in reporter.steps) == size  # ends at 100%, .gz counted in compressed bytes
    before_first_write = [s for s in reporter.steps if s[2] == 0 and s[0] > 0]
    assert len(before_first_write) >= 20  # per batch (30 batches), not once per 4,096-line chunk
    assert reporter.steps[-1][1]["records"] == 3000 and str(reporter.steps[-1][1]["rate"]).endswith("/s")
    stdin = _Recorder()
    predict_input("-", sharp, stdin=io.BytesIO(data[:400]), reporter=stdin)
    assert stdin.opened == [("predict", None, "bytes")]  # a pipe has no size


def test_ctrl_c_keeps_the_chunks_and_says_so_once(sharp: Path, tmp_path: Path) -> None:
    from finsent_cli.errors import Interrupted, interruption_line

    src, out = tmp_path / "in.txt", tmp_path / "out.csv"
    src.write_text("".join(f"headline {i}\n" for i in range(10)), encoding="utf-8")

    class Reporter(NullReporter):
        def task(self, description: str, total: int | None = None, unit: str = "items"):  # type: ignore[override]
            import contextlib

            class Task:
                def advance(self, n: int = 1, **fields: object) -> None:
                    if fields.get("records") == 4:
                        raise KeyboardInterrupt  # as Ctrl-C

            return contextlib.nullcontext(Task())

    with pytest.raises(Interrupted) as info:
        predict_input(src, sharp, output=out, chunk_size=2, reporter=Reporter())
    assert interruption_line(info.value) == f"interrupted; the finished chunks are kept in {out}.partial: add --resume to continue"
    assert json.loads((tmp_path / "out.csv.partial.json").read_text())["rows"] == 4
    with pytest.raises(KeyboardInterrupt) as bare:  # to stdout nothing is kept: a plain Ctrl-C
        predict_input(src, sharp, stream=io.StringIO(), chunk_size=2, reporter=Reporter())
    assert not isinstance(bare.value, Interrupted)


def test_under_the_int8_backends_the_grouping_is_part_of_the_resume_identity() -> None:
    """int8 and onnx-int8 quantise activations per batch, so another --batch-size changes rows: refused on resume."""
    from finsent_cli.core.predict.rows import PredictOptions
    from finsent_cli.core.predict.run import resume_identity

    def ident(**kw):
        return resume_identity(PredictOptions(**kw), "csv", "fingerprint", "in.txt")

    assert ident(backend="torch", batch_size=8) == ident(backend="torch", batch_size=64)
    assert ident(backend="onnx", chunk_size=8) == ident(backend="onnx", chunk_size=4096)
    for backend in ("int8", "onnx-int8"):
        assert ident(backend=backend, batch_size=8) != ident(backend=backend, batch_size=64)
        assert ident(backend=backend, chunk_size=8) != ident(backend=backend, chunk_size=4096)
        assert ident(backend=backend, batch_tokens=512)["--batch-tokens"] == 512


def test_a_resumed_run_counts_only_what_is_left(sharp: Path, tmp_path: Path) -> None:
    """The bar of a resumed run covers the bytes not yet done, so its rate (and the time left) is honest."""
    src, out = tmp_path / "in.txt", tmp_path / "out.csv"
    src.write_text("".join(f"headline {i} rose\n" for i in range(11)), encoding="utf-8")
    _interrupted(sharp, tmp_path, src, out)
    rec = _Recorder()
    predict_input(src, sharp, output=out, resume=True, reporter=rec)
    [(_, total, unit)] = rec.opened
    assert unit == "bytes" and 0 < total < src.stat().st_size
    assert sum(n for n, _, _ in rec.steps) == total


def _as_before_the_score_column(partial: Path, state_path: Path) -> dict:
    """Rewrite an interrupted csv output as a finsent without the score column left it: rows without
    ``score``, a state of version 2 that names no columns."""
    rows = list(csv.DictReader(io.StringIO(partial.read_text(encoding="utf-8"))))
    buf = io.StringIO()
    old = [c for c in rows[0] if c != "score"]
    writer = csv.DictWriter(buf, fieldnames=old, lineterminator="\n")
    writer.writeheader()
    writer.writerows({c: r[c] for c in old} for r in rows)
    partial.write_text(buf.getvalue(), encoding="utf-8")
    state = json.loads(state_path.read_text())
    state.update(version=2, bytes=partial.stat().st_size)
    del state["columns"]
    state_path.write_text(json.dumps(state))
    return state


def test_an_interrupted_output_without_the_score_column_is_never_continued_with_it(sharp: Path, tmp_path: Path) -> None:
    """A partial output of a finsent before ``score``: resuming it would mix two headers in one file."""
    src, out = tmp_path / "in.txt", tmp_path / "out.csv"
    src.write_text("".join(f"headline {i} rose\n" for i in range(10)), encoding="utf-8")
    _interrupted(sharp, tmp_path, src, out)
    partial, state_path = tmp_path / "out.csv.partial", tmp_path / "out.csv.partial.json"
    state = json.loads(state_path.read_text())
    assert state["version"] == 3 and state["columns"][-3:] == ["p_positive", "score", "status"]
    _as_before_the_score_column(partial, state_path)
    before = partial.read_bytes()
    with pytest.raises(FinsentError) as info:
        predict_input(src, sharp, output=out, chunk_size=2, resume=True)
    assert info.value.message == (
        f"{state_path}: written by another finsent version (state version 2: its rows have no score column), "
        "this one reads version 3; use --fresh to start over"
    )
    assert partial.read_bytes() == before and not out.exists()  # nothing appended
    predict_input(src, sharp, output=out, chunk_size=2, fresh=True)
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == 10 and all(float(r["score"]) == round(float(r["p_positive"]) - float(r["p_negative"]), 6) for r in rows)


def test_resume_refuses_a_partial_output_with_other_columns(sharp: Path, tmp_path: Path) -> None:
    """The state names the columns its rows have: a layout that differs from this run's is refused, naming both."""
    src, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    src.write_text("".join(f"headline {i} rose\n" for i in range(10)), encoding="utf-8")
    _interrupted(sharp, tmp_path, src, out, "jsonl")
    state_path = tmp_path / "out.jsonl.partial.json"
    state = json.loads(state_path.read_text())
    state["columns"] = [c for c in state["columns"] if c != "score"]
    state_path.write_text(json.dumps(state))
    with pytest.raises(FinsentError) as info:
        predict_input(src, sharp, output=out, fmt="jsonl", chunk_size=2, resume=True)
    assert info.value.message == (
        f"{out}: the interrupted run wrote the columns line,text,label,confidence,p_negative,p_neutral,p_positive,status, "
        "this one writes line,text,label,confidence,p_negative,p_neutral,p_positive,score,status; use --fresh to start over"
    )
    assert info.value.exit_code == 2
