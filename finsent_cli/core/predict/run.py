"""`finsent predict`: which model, the prediction of every input record, and the output formats.

The model comes from ``--model``, else ``$FINSENT_MODEL``, else the newest trained model
(``runs/latest``, a symlink written by ``finsent finetune`` and ``finsent quickstart``, or the text file
``runs/LATEST`` holding a path where symlinks are unavailable; see ``core.runs.resolve_model``), else
finsent's shipped default model. Records stream through in chunks: each is read (and tokenised, in a
background thread, while the model runs the previous one), predicted in length-sorted batches under a token
budget and written, so memory stays flat. Stdout gets rows as they come; an ``--output`` file grows as
``FILE.partial`` and is renamed only when complete, resumable from its last complete chunk
(``core.predict.output``). ``--per document`` is ``core.predict.documents``; ``--engine ray`` is
``core.predict.ray_engine``.
"""

from __future__ import annotations

import itertools
import json
import os
import stat
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from finsent_cli.core.io import atomic_write_text, check_file_target
from finsent_cli.core.predict.documents import AGGREGATIONS, Piece, aggregate, split_sentences, windows
from finsent_cli.core.predict.inputs import (
    InputRecord,
    LineSource,
    check_target_column,
    detect_input_format,
    iter_records,
)
from finsent_cli.core.predict.output import PartialOutput, RowFormat, StreamOutput
from finsent_cli.core.progress import NullReporter, Reporter, counted
from finsent_cli.core.runs import find_model, model_fingerprint

if TYPE_CHECKING:  # numpy and torch load only when there is work: `finsent predict --help` stays fast
    import numpy as np

    from finsent_cli.core.inference.classifier import Classifier
from finsent_cli.errors import FinsentError
from finsent_cli.labels import LABELS

COLUMNS = ["line", "text", "label", "confidence", "p_negative", "p_neutral", "p_positive", "status"]
OUTPUT_FORMATS = ("csv", "json", "jsonl", "table")


def check_output_format(
    fmt: str, output: str | Path | None = None, formats: tuple[str, ...] = OUTPUT_FORMATS, terminal: str = "table"
) -> str:
    """Validate ``--format`` and ``--output`` before any work is done.

    Args:
        fmt: the format asked for.
        output: the output file, if any.
        formats: the formats the command knows.
        terminal: the format that only draws on the terminal (cannot go to a file).

    Raises:
        FinsentError: unknown format, the terminal format with an output file, or an output path
            that is a folder (exit code 2).
    """
    if fmt not in formats:
        raise FinsentError(f"unknown --format '{fmt}' (choose {', '.join(formats)})", exit_code=2)
    if fmt == terminal and output is not None:
        others = ", ".join(f for f in formats if f != terminal)
        raise FinsentError(f"--format {terminal} draws on the terminal; use {others} with --output", exit_code=2)
    if output is not None:
        check_file_target(output)
    return fmt


DEFAULT_CHUNK = 4096
"""Records read, predicted and written together: the unit of memory, of overlap and of ``--resume``."""

RAY_CHUNK = 65536
"""The chunk of ``--engine ray``: each chunk starts a pool of model actors, so chunks are larger."""

ENGINES = ("local", "ray")

DEFAULT_BATCH_TOKENS = 8192
"""Padded tokens per forward pass (inputs x longest): 128 headlines of 64 tokens, or 16 paragraphs of 512."""

PER = ("record", "document")


@dataclass
class PredictResult:
    """Counts for the summary, and the rows themselves when they were kept (no output file or stream)."""

    rows: list[dict[str, Any]]
    model: Path
    labels: Counter[str] = field(default_factory=Counter)
    records: int = 0
    empty: int = 0
    truncated: int = 0
    replaced: int = 0
    no_target: int = 0
    windowed: int = 0
    resumed: int = 0  # records that an earlier, interrupted run had done
    seconds: float = 0.0


@dataclass
class PredictOptions:
    """How records become rows (everything of ``predict``'s command line but input, model and output).

    Attributes:
        batch_size: most texts per forward pass.
        batch_tokens: most padded tokens per forward pass (length-sorted batches, see ``plan_batches``).
        chunk_size: records read, predicted and written at once (constant memory; the unit of ``--resume``).
        per: ``record`` (a row per record) or ``document`` (split into sentences, one aggregated row).
        aggregate: ``mean`` or ``confidence`` (``per document``; see ``core.predict.documents``).
        backend: ``torch``, ``int8`` or ``onnx`` (``core.inference.backends``).
        threads: CPU threads for the model (None: the library's default).
        device: inference device.
        target: the company every record is judged toward; target_column: the column naming it per record.
        engine: ``local`` (this process) or ``ray`` (a pool of model actors, ``core.predict.ray_engine``).
        ray_address: the Ray cluster (default ``$RAY_ADDRESS``, else a local Ray).
        workers: model actors on Ray (default: one per CPU of the cluster).
    """

    batch_size: int = 64
    batch_tokens: int | None = DEFAULT_BATCH_TOKENS
    chunk_size: int | None = None  # None: DEFAULT_CHUNK, or RAY_CHUNK with engine ray
    per: str = "record"
    aggregate: str = "mean"
    backend: str = "torch"
    threads: int | None = None
    device: str = "cpu"
    target: str | None = None
    target_column: str | None = None
    engine: str = "local"
    ray_address: str | None = None
    workers: int | None = None

    def check(self) -> None:
        """Refuse impossible combinations before any work (exit code 2)."""
        if self.target is not None and self.target_column is not None:
            raise FinsentError("give --target NAME (one target for every record) or --target-column COL, not both", exit_code=2)
        if self.target is not None and not self.target.strip():
            raise FinsentError("--target is empty; name the company", exit_code=2)
        if self.per not in PER:
            raise FinsentError(f"unknown --per '{self.per}' (choose {', '.join(PER)})", exit_code=2)
        if self.aggregate not in AGGREGATIONS:
            raise FinsentError(f"unknown --aggregate '{self.aggregate}' (choose {', '.join(AGGREGATIONS)})", exit_code=2)
        if self.per == "document" and self.with_targets:
            raise FinsentError("--per document scores sentence-level models; drop --target / --target-column", exit_code=2)
        if self.engine not in ENGINES:
            raise FinsentError(f"unknown --engine '{self.engine}' (choose {', '.join(ENGINES)})", exit_code=2)
        if self.engine != "ray" and (self.ray_address is not None or self.workers is not None):
            raise FinsentError("--ray-address and --workers are options of --engine ray", exit_code=2)
        for name in ("batch_size", "chunk_size", "workers"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise FinsentError(f"--{name.replace('_', '-')} must be at least 1", exit_code=2)
        if self.batch_tokens is not None and self.batch_tokens < 1:
            raise FinsentError("--batch-tokens must be at least 1", exit_code=2)
        if self.threads is not None and self.threads < 1:
            raise FinsentError("--threads must be at least 1", exit_code=2)

    @property
    def with_targets(self) -> bool:
        return self.target is not None or self.target_column is not None

    def columns(self) -> list[str]:
        """The output columns."""
        if self.per == "document":
            return ["line", "text", "label", "confidence", *PROB_COLUMNS, "sentences", "aggregation", "status"]
        return [*(["line", "text", "target"] if self.with_targets else ["line", "text"]), *COLUMNS[2:]]


PROB_COLUMNS = [f"p_{name}" for name in LABELS]
DETAIL_COLUMNS = ["line", "sentence", "part", "parts", "text", "label", "confidence", *PROB_COLUMNS]


def _scores(p: np.ndarray) -> dict[str, Any]:
    label = LABELS[int(p.argmax())]
    return {"label": label, "confidence": round(float(p.max()), 6), **{c: round(float(p[k]), 6) for k, c in enumerate(PROB_COLUMNS)}}


def _unscored() -> dict[str, Any]:
    return {"label": None, "confidence": None, **dict.fromkeys(PROB_COLUMNS)}


class Chunk:
    """One chunk of records, encoded (in the reader thread) and then predicted and rendered as rows."""

    def __init__(self, records: list[InputRecord], input_bytes: int, input_sha256: str) -> None:
        self.records, self.input_bytes, self.input_sha256 = records, input_bytes, input_sha256
        self.ids: list[list[int]] = []
        self.cut: list[bool] = []
        self.owner: list[int] = []  # record index of each encoded input
        self.pieces: list[Piece] = []  # per document: what each encoded input is


def encode_records(clf: Classifier, chunk: Chunk, opts: PredictOptions) -> None:
    todo = [i for i, r in enumerate(chunk.records) if r.text.strip() and (not opts.with_targets or (r.target or "").strip())]
    targets = [str(chunk.records[i].target) for i in todo] if opts.with_targets else None
    chunk.ids, chunk.cut = clf.encode([chunk.records[i].text for i in todo], targets)
    chunk.owner = todo


def special_wrap(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special tokens a tokenizer puts before and after a single text (``[CLS]``/``[SEP]``, ``</s>``)."""
    plain = tokenizer("finance", add_special_tokens=False)["input_ids"]
    full = tokenizer("finance")["input_ids"]
    at = next(i for i in range(len(full) - len(plain) + 1) if full[i : i + len(plain)] == plain)
    return full[:at], full[at + len(plain) :]


def _encode_documents(clf: Classifier, chunk: Chunk, opts: PredictOptions) -> None:
    tok = clf.tokenizer
    before, after = special_wrap(tok)
    room = clf.max_length - len(before) - len(after)
    stride = max(1, room * 3 // 4)  # windows overlap by a quarter
    for i, rec in enumerate(chunk.records):
        sentences = split_sentences(rec.text)
        if not sentences:
            continue
        encoded = tok(sentences, add_special_tokens=False, return_offsets_mapping=True)
        for n, (sentence, ids, offsets) in enumerate(zip(sentences, encoded["input_ids"], encoded["offset_mapping"]), start=1):
            parts = windows(range(len(ids)), room, stride)
            for k, part in enumerate(parts, start=1):
                chunk.ids.append(before + [ids[t] for t in part] + after)
                chunk.owner.append(i)
                text = sentence if len(parts) == 1 else sentence[offsets[part[0]][0] : offsets[part[-1]][1]]
                chunk.pieces.append(Piece(i, n, k, len(parts), text))


def chunk_rows(chunk: Chunk, probs: np.ndarray, opts: PredictOptions) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The output rows of a chunk, and the ``--details`` rows (a row per sentence or window) per document."""
    by_record: dict[int, list[int]] = {}
    for k, owner in enumerate(chunk.owner):
        by_record.setdefault(owner, []).append(k)
    rows, details = [], []
    for i, rec in enumerate(chunk.records):
        row: dict[str, Any] = {"line": rec.line, "text": rec.text}
        if opts.with_targets:
            row["target"] = rec.target
        mine = by_record.get(i)
        if mine is None:
            row.update(_unscored())
            if opts.per == "document":
                row.update({"sentences": 0, "aggregation": opts.aggregate})
            row["status"] = "empty" if not rec.text.strip() else "no_target"
        elif opts.per == "document":
            row.update(_scores(aggregate(probs[mine], opts.aggregate)))
            pieces = [chunk.pieces[k] for k in mine]
            row.update({"sentences": pieces[-1].sentence, "aggregation": opts.aggregate, "status": "ok"})
            for k, piece in zip(mine, pieces):
                details.append({"line": rec.line, "sentence": piece.sentence, "part": piece.part, "parts": piece.parts, "text": piece.text, **_scores(probs[k])})
        else:
            row.update(_scores(probs[mine[0]]))
            row["status"] = "truncated" if chunk.cut[mine[0]] else "ok"
        rows.append(row)
    return rows, details


def encode_chunk(clf: Classifier, chunk: Chunk, opts: PredictOptions) -> None:
    """Token ids of a chunk's records (one per record), or of their sentences and windows (``per document``)."""
    (_encode_documents if opts.per == "document" else encode_records)(clf, chunk, opts)


def predict_records(clf: Classifier, records: list[InputRecord], opts: PredictOptions) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows (and ``--details`` rows) for records held in memory: what one Ray worker does with a batch."""
    chunk = Chunk(records, 0, "")
    encode_chunk(clf, chunk, opts)
    return chunk_rows(chunk, clf.probs_from_ids(chunk.ids, opts.batch_size, None, opts.batch_tokens), opts)


def tally(rows: list[dict[str, Any]], details: list[dict[str, Any]], result: PredictResult) -> None:
    """Count a chunk's rows into the summary (labels and statuses; documents with windowed sentences)."""
    for row in rows:
        status = row["status"]
        if row["label"] is not None:
            result.labels[row["label"]] += 1
        result.empty += status == "empty"
        result.no_target += status == "no_target"
        result.truncated += status == "truncated"
    result.windowed += len({d["line"] for d in details if d["parts"] > 1})
    result.records += len(rows)


def _chunks(records: Iterator[InputRecord], lines: LineSource, size: int) -> Iterator[Chunk]:
    while True:
        batch = list(itertools.islice(records, size))
        if not batch:
            return
        yield Chunk(batch, lines.consumed, lines.digest())


def _total_lines(path: str) -> int | None:
    """Lines in a plain file (a fast newline count, for the progress bar's ETA); None for stdin, pipes and .gz."""
    if path == "-" or path.lower().endswith(".gz") or not stat.S_ISREG(os.stat(path).st_mode):
        return None  # a pipe (/dev/stdin, <(zcat ...)) would be read up by the count
    n, last = 0, b"\n"
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")


def predict_input(
    path: str | Path,
    model: str | Path | None = None,
    options: PredictOptions | None = None,
    *,
    input_format: str = "auto",
    column: str = "text",
    field_name: str = "text",
    stdin: BinaryIO | None = None,
    env: Mapping[str, str] | None = None,
    runs_dir: str | Path = "runs",
    reporter: Reporter | None = None,
    output: str | Path | None = None,
    fmt: str = "csv",
    stream: IO[str] | None = None,
    details: str | Path | None = None,
    resume: bool = False,
    fresh: bool = False,
    **option_values: Any,
) -> PredictResult:
    """Classify every record of an input, in input order, streaming: records are read, predicted and
    written a chunk at a time, so memory stays flat however long the input.

    Args:
        path: input file (``.gz`` too) or ``-`` (stdin).
        model: model/run folder; see ``core.runs.find_model`` for the fallbacks (the default model last).
        options: how records become rows; keyword arguments named like its fields override it.
        input_format: ``auto``, ``txt``, ``csv``, ``tsv`` or ``jsonl``.
        column: CSV/TSV text column.
        field_name: JSONL text field.
        stdin: stream read for ``-``.
        env: environment for ``$FINSENT_MODEL`` (default ``os.environ``).
        runs_dir: where ``latest`` is looked for.
        reporter: progress (stderr) and warnings.
        output: write rows to this file (through ``FILE.partial``, resumable; see ``core.predict.output``).
        fmt: ``csv``, ``json`` or ``jsonl`` (for ``output`` and ``stream``).
        stream: write rows to this text stream as they come instead.
        details: ``per document``: write the per-sentence rows to this file too.
        resume: continue ``output`` from its partial file.
        fresh: discard a partial ``output`` file left by an interrupted run.

    Returns:
        The counts; ``rows`` holds every row (:meth:`PredictOptions.columns`) only when there is neither
        ``output`` nor ``stream``. Empty records have ``status`` ``empty``, records with an empty target
        ``no_target``, and no label.

    Raises:
        FinsentError: no or bad model, missing/empty input, malformed input (naming the line), a
            partial output that belongs to another input, model or options.
    """
    import torch  # torch: only when there is work

    from finsent_cli.core.inference.loading import load_classifier

    opts = replace(options or PredictOptions(), **option_values)
    opts.check()
    if opts.chunk_size is None:
        opts = replace(opts, chunk_size=RAY_CHUNK if opts.engine == "ray" else DEFAULT_CHUNK)
    reporter = reporter or NullReporter()
    started = time.monotonic()
    if details is not None and opts.per != "document":
        raise FinsentError("--details writes the sentences of --per document; add --per document", exit_code=2)
    if details is not None and output is None:
        raise FinsentError("--details needs --output (both files are written together)", exit_code=2)
    if (resume or fresh) and output is None:
        raise FinsentError("--resume and --fresh continue or restart an --output file; give --output", exit_code=2)
    if resume and str(path) == "-":
        raise FinsentError("--resume needs a file input (stdin cannot be read again)", exit_code=2)
    if output is not None and details is not None and Path(output).resolve() == Path(details).resolve():
        raise FinsentError("--details must be another file than --output", exit_code=2)
    for name, target in (("--output", output), ("--details", details)):
        if target is not None and str(path) != "-" and Path(target).resolve() == Path(path).resolve():
            raise FinsentError(f"{name} {target} is the input file; write the rows elsewhere", exit_code=2)
    if details is not None:
        check_file_target(details)
    model_path = find_model(model, env, runs_dir, note=reporter.warn)  # shown with --quiet too: not the user's model
    fmt_in = detect_input_format(str(path), input_format)
    check_target_column(fmt_in, "stdin" if str(path) == "-" else str(path), opts.target_column)
    lines = LineSource(path, stdin)
    sink: PartialOutput | StreamOutput | None = None
    try:
        records = iter_records(lines, fmt_in, column, field_name, opts.target_column)
        first = next(records, None)  # a missing column or a malformed first line shows before the model loads
        records = itertools.chain([first] if first is not None else [], records)
        if opts.target is not None:
            records = (replace(r, target=opts.target) for r in records)
        sink = _open_sink(output, stream, fmt, details, opts, model_path, path, resume, fresh)  # refusals before loading
        if opts.threads is not None:
            torch.set_num_threads(opts.threads)
        reporter.log(f"loading model {model_path}" + (f" (backend {opts.backend})" if opts.backend != "torch" else ""))
        clf = load_classifier(model_path, device=opts.device, backend=opts.backend)
        clf.check_targets(opts.with_targets)  # before any work
        engine = None
        if opts.engine == "ray":
            from finsent_cli.core.predict.ray_engine import RayEngine

            reporter.log("starting Ray" if not (opts.ray_address or os.environ.get("RAY_ADDRESS")) else f"connecting to Ray at {opts.ray_address or os.environ['RAY_ADDRESS']}")
            engine = RayEngine(str(clf.path or model_path), opts)
            reporter.log(f"Ray: {counted(engine.workers, 'model actor')}, chunks of {opts.chunk_size} records")
        result = PredictResult([], clf.path or model_path)
        done = sink.open() if sink is not None else {}
        if done:
            _skip_done(records, lines, done, result, reporter)
        if opts.per == "document":
            reporter.log(
                f"per document: sentences (rule-based splitter), sentences over {clf.max_length} tokens in windows "
                f"overlapping by a quarter, probabilities aggregated by {opts.aggregate}"
            )
        total = _total_lines(str(path))
        with reporter.task("predict", total=total) as task, ThreadPoolExecutor(1) as pool:
            chunks = _chunks(records, lines, opts.chunk_size)

            def prepare() -> Chunk | None:
                chunk = next(chunks, None)
                if chunk is not None and engine is None:
                    encode_chunk(clf, chunk, opts)
                return chunk

            if done:
                task.advance(done.get("line", 0))
            started = time.monotonic()  # the rate counts prediction, not loading
            pending = pool.submit(prepare)  # the next chunk is read and tokenised while the model runs
            last_line = done.get("line", 0)
            while (chunk := pending.result()) is not None:
                pending = pool.submit(prepare)
                if engine is not None:
                    rows, detail_rows = engine.predict(chunk.records)
                else:
                    rows, detail_rows = chunk_rows(chunk, clf.probs_from_ids(chunk.ids, opts.batch_size, None, opts.batch_tokens), opts)
                tally(rows, detail_rows, result)
                if sink is not None:
                    sink.write(
                        rows, detail_rows, records=result.records + result.resumed, line=chunk.records[-1].line,
                        input_bytes=chunk.input_bytes, input_sha256=chunk.input_sha256, counts=_counts(result),
                    )  # fmt: skip
                else:
                    result.rows.extend(rows)
                rate = result.records / max(time.monotonic() - started, 1e-9)
                task.advance(chunk.records[-1].line - last_line, lines_s=round(rate))
                last_line = chunk.records[-1].line
        if sink is not None:
            sink.close()
    except BaseException:
        if sink is not None:
            sink.abandon()  # a file output stays behind as FILE.partial for --resume
        raise
    finally:
        lines.close()
    result.replaced = lines.replaced  # a resumed run read the finished part again too
    result.seconds = time.monotonic() - started
    _warn(result, clf.max_length, opts, reporter)
    return result


def _open_sink(
    output: str | Path | None, stream: IO[str] | None, fmt: str, details: str | Path | None, opts: PredictOptions,
    model_path: Path, path: str | Path, resume: bool, fresh: bool,
) -> PartialOutput | StreamOutput | None:  # fmt: skip
    row_format = RowFormat(fmt, opts.columns()) if output is not None or stream is not None else None
    if output is not None and row_format is not None:
        identity = {
            "input": str(Path(path).resolve()), "model": model_fingerprint(model_path, calibration=True)[:16],
            "options": _identity_options(opts, fmt), "details": str(Path(details).resolve()) if details is not None else None,
            "device": opts.device.split(":")[0],  # CPU and CUDA may differ in the sixth decimal
        }  # fmt: skip
        extra = (Path(details), RowFormat(_details_format(details), DETAIL_COLUMNS)) if details is not None else None
        return PartialOutput(output, row_format, identity, resume=resume, fresh=fresh, details=extra)
    if stream is not None and row_format is not None:
        return StreamOutput(stream, row_format)
    return None


def _identity_options(opts: PredictOptions, fmt: str) -> str:
    """What decides the bytes of the output: not threads or device, which change only the speed."""
    keep = ("batch_size", "batch_tokens", "chunk_size", "per", "aggregate", "backend", "engine", "target", "target_column")
    return json.dumps({"format": fmt, **{k: getattr(opts, k) for k in keep}}, sort_keys=True)


def _details_format(details: str | Path) -> str:
    suffix = Path(details).suffix.lower().lstrip(".")
    return suffix if suffix in ("csv", "json", "jsonl") else "csv"


def _counts(result: PredictResult) -> dict[str, Any]:
    return {
        "labels": dict(result.labels), "empty": result.empty, "truncated": result.truncated,
        "no_target": result.no_target, "windowed": result.windowed,
    }  # fmt: skip


def _skip_done(records: Iterator[InputRecord], lines: LineSource, done: dict[str, Any], result: PredictResult, reporter: Reporter) -> None:
    """Read past the records that the partial output already answers and check the input is the same."""
    n = int(done.get("records", 0))
    if n == 0:
        return
    for _ in itertools.islice(records, n):
        pass
    if lines.consumed != done.get("input_bytes") or lines.digest() != done.get("input_sha256"):
        raise FinsentError(
            f"{lines.source}: changed since the partial output was written (its first {done.get('input_bytes', 0)} bytes differ); "
            "run with --fresh to start over",
            exit_code=2,
        )
    counts = done.get("counts", {})
    result.labels.update(counts.get("labels", {}))
    for key in ("empty", "truncated", "no_target", "windowed"):
        setattr(result, key, int(counts.get(key, 0)))
    result.resumed = n
    reporter.log(f"resuming after {counted(n, 'record')} (line {done.get('line', 0)})")


def _warn(result: PredictResult, max_length: int, opts: PredictOptions, reporter: Reporter) -> None:
    if result.truncated:
        reporter.warn(
            f"truncated {counted(result.truncated, 'text')} longer than {max_length} tokens (status 'truncated'); "
            "--per document scores every sentence instead"
        )
    if result.windowed:
        reporter.warn(f"{counted(result.windowed, 'document')} had sentences over {max_length} tokens, scored in overlapping windows")
    if result.replaced:
        reporter.warn(f"replaced invalid UTF-8 bytes with U+FFFD in {counted(result.replaced, 'line')}")
    if result.empty:
        reporter.warn(f"{counted(result.empty, 'empty record')} not classified (status 'empty')")
    if result.no_target:
        reporter.warn(f"{counted(result.no_target, 'record')} with an empty target not classified (status 'no_target')")


def render_rows(rows: list[dict[str, Any]], fmt: str) -> str:
    """Serialise rows held in memory as ``csv`` (header + one line per record), ``json`` (an array, a row per
    line) or ``jsonl``: the same text that a streamed ``predict`` writes.

    Raises:
        FinsentError: ``fmt`` is not a text format.
    """
    out = RowFormat(fmt, list(rows[0]) if rows else COLUMNS)
    return out.head() + out.chunk(rows, first=True) + out.tail(bool(rows))


def write_rows(rows: list[dict[str, Any]], fmt: str, output: str | Path) -> Path:
    """Write rendered rows to ``output`` atomically (a crash leaves no partial file)."""
    text = render_rows(rows, fmt)
    atomic_write_text(output, text)
    return Path(output)
