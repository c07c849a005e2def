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
import os
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, BinaryIO

from finsent_cli.core.data.readers import replaced_message
from finsent_cli.core.io import atomic_write_text, check_file_target
from finsent_cli.core.predict.inputs import (
    MALFORMED,
    InputRecord,
    LineSource,
    check_input_exists,
    check_target_column,
    detect_input_format,
    iter_records,
)
from finsent_cli.core.predict.output import PartialOutput, RowFormat, StreamOutput
from finsent_cli.core.predict.rows import (  # noqa: F401 - COLUMNS, DEFAULT_BATCH_TOKENS, encode_records, predict_records: callers import them from here
    COLUMNS,
    DEFAULT_BATCH_TOKENS,
    DETAIL_COLUMNS,
    Chunk,
    PredictOptions,
    chunk_rows,
    encode_chunk,
    encode_records,
    predict_records,
)
from finsent_cli.core.progress import NullReporter, Reporter, Task, counted
from finsent_cli.core.runs import find_model, model_fingerprint
from finsent_cli.errors import FinsentError, Interrupted

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
    malformed: int = 0
    malformed_lines: list[tuple[int, str]] = field(default_factory=list)  # the first few: (line, problem)
    first_replaced: int | None = None  # the first line in which invalid UTF-8 was replaced
    source: str = ""  # the input, as messages name it
    resumed: int = 0  # records that an earlier, interrupted run had done
    seconds: float = 0.0


MALFORMED_SHOWN = 3
"""Malformed records named (line and problem) in the closing warning."""


def tally(rows: list[dict[str, Any]], details: list[dict[str, Any]], result: PredictResult) -> None:
    """Count a chunk's rows into the summary (labels and statuses; documents with windowed sentences)."""
    for row in rows:
        status = row["status"]
        if row["label"] is not None:
            result.labels[row["label"]] += 1
        result.empty += status == "empty"
        result.no_target += status == "no_target"
        result.truncated += status == "truncated"
        result.malformed += status == MALFORMED
    result.windowed += len({d["line"] for d in details if d["parts"] > 1})
    result.records += len(rows)


def _note_malformed(records: list[InputRecord], result: PredictResult) -> None:
    """Keep the line and problem of the first few malformed records for the closing warning."""
    for rec in records:
        if rec.status == MALFORMED and len(result.malformed_lines) < MALFORMED_SHOWN:
            result.malformed_lines.append((rec.line, rec.problem or MALFORMED))


def _chunks(records: Iterator[InputRecord], lines: LineSource, size: int) -> Iterator[Chunk]:
    while True:
        batch = list(itertools.islice(records, size))
        if not batch:
            return
        yield Chunk(batch, lines.consumed, lines.digest(), lines.position())


class _ChunkProgress:
    """Moves the progress task through a chunk's share of the input (its bytes) batch by batch, as the
    classifier reports its inputs done, so the bar moves (and Rich estimates the time left) within the
    first chunk too. Batches run in length order, so the share done is the share of inputs done."""

    def __init__(self, task: Task, start: int, chunk: Chunk) -> None:
        self.task, self.start, self.end = task, start, max(start, chunk.position)
        self.inputs, self.done, self.at = max(1, len(chunk.ids)), 0, start

    def advance(self, n: int = 1, **fields: object) -> None:
        self.done += n
        if self.done < self.inputs:  # the last step is the chunk's, once its rows are written (finish)
            self._to(self.start + (self.end - self.start) * self.done // self.inputs)

    def finish(self, **fields: object) -> None:
        self._to(self.end, **fields)

    def _to(self, position: int, **fields: object) -> None:
        if position > self.at or fields:
            self.task.advance(position - self.at, **fields)
            self.at = position


def _predict_chunk(clf: Any, engine: Any, chunk: Chunk, opts: PredictOptions, progress: _ChunkProgress) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows of one chunk: on this process's classifier, or on Ray (which is given only the records
    that are read well; the malformed ones are answered here, in their place)."""
    if engine is None:
        return chunk_rows(chunk, clf.probs_from_ids(chunk.ids, opts.batch_size, progress, opts.batch_tokens), opts)
    good = [r for r in chunk.records if r.status is None]
    if len(good) == len(chunk.records):
        return engine.predict(chunk.records)  # type: ignore[no-any-return]
    rows, details = engine.predict(good) if good else ([], [])
    mine = Chunk([r for r in chunk.records if r.status is not None], 0, "")
    bad_rows, _ = chunk_rows(mine, _no_probs(), opts)
    by_line = {row["line"]: row for row in [*rows, *bad_rows]}
    return [by_line[r.line] for r in chunk.records], details


def _no_probs() -> Any:
    """Probabilities for no inputs (``chunk_rows`` of records that are all unscored)."""
    import numpy as np

    return np.zeros((0, 3), dtype=np.float32)


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
        ``no_target``, broken CSV/TSV records and JSONL lines ``malformed`` (one row per broken line, see
        ``core.predict.inputs``), and no label; a text the model could not read whole is ``truncated``.

    Raises:
        FinsentError: no or bad model, missing/empty input, a missing column or field, a malformed header
            or first JSONL line (naming the line), a partial output that belongs to another input, model or
            options (naming which).
        Interrupted: Ctrl-C while writing ``output``; the finished chunks stay for ``resume``.
    """
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
    check_input_exists(path, only_text=True)
    model_path = find_model(model, env, runs_dir, note=reporter.warn)  # shown with --quiet too: not the user's model
    fmt_in = detect_input_format(str(path), input_format)
    check_target_column(fmt_in, "stdin" if str(path) == "-" else str(path), opts.target_column)
    lines = LineSource(path, stdin)
    sink: PartialOutput | StreamOutput | None = None
    try:
        records = iter_records(lines, fmt_in, column, field_name, opts.target_column, malformed="mark")
        first = next(records, None)  # a missing column or a malformed header shows before the model loads
        records = itertools.chain([first] if first is not None else [], records)
        if opts.target is not None:
            records = (replace(r, target=opts.target) for r in records)
        text_field = field_name if fmt_in == "jsonl" else column if fmt_in != "txt" else None
        sink = _open_sink(output, stream, fmt, details, opts, model_path, path, resume, fresh, fmt_in, text_field)  # refusals before loading
        import torch  # torch: only when there is work, after every refusal

        from finsent_cli.core.inference.loading import load_classifier

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
        # A resumed run's bar covers what is left: counting the skipped bytes as done in the first second
        # would make the rate, and so the time left, ten times too good at 90%.
        position = lines.position() if done else 0  # past what an interrupted run did, when resuming
        left = lines.size - position if lines.size is not None else None
        with reporter.task("predict", total=left, unit="bytes") as task, ThreadPoolExecutor(1) as pool:
            chunks = _chunks(records, lines, opts.chunk_size)

            def prepare() -> Chunk | None:
                chunk = next(chunks, None)
                if chunk is not None and engine is None:
                    encode_chunk(clf, chunk, opts)
                return chunk

            started = time.monotonic()  # the rate counts prediction, not loading
            pending = pool.submit(prepare)  # the next chunk is read and tokenised while the model runs
            while (chunk := pending.result()) is not None:
                pending = pool.submit(prepare)
                progress = _ChunkProgress(task, position, chunk)
                rows, detail_rows = _predict_chunk(clf, engine, chunk, opts, progress)
                tally(rows, detail_rows, result)
                _note_malformed(chunk.records, result)
                if sink is not None:
                    sink.write(
                        rows, detail_rows, records=result.records + result.resumed, line=chunk.records[-1].line,
                        input_bytes=chunk.input_bytes, input_sha256=chunk.input_sha256, counts=_counts(result),
                    )  # fmt: skip
                else:
                    result.rows.extend(rows)
                rate = result.records / max(time.monotonic() - started, 1e-9)
                progress.finish(records=result.records + result.resumed, rate=f"{rate:.0f}/s")
                position = progress.end
        if sink is not None:
            sink.close()
    except BaseException as exc:
        if sink is not None:
            sink.abandon()  # a file output stays behind as FILE.partial for --resume
        if isinstance(exc, KeyboardInterrupt) and isinstance(sink, PartialOutput) and sink.partial.is_file():
            raise Interrupted(f"the finished chunks are kept in {sink.partial}: add --resume to continue") from exc
        raise
    finally:
        lines.close()
    result.replaced = lines.replaced  # a resumed run read the finished part again too
    result.first_replaced, result.source = lines.first_replaced, lines.source
    result.seconds = time.monotonic() - started
    _warn(result, clf.max_length, opts, reporter)
    return result


def _open_sink(
    output: str | Path | None, stream: IO[str] | None, fmt: str, details: str | Path | None, opts: PredictOptions,
    model_path: Path, path: str | Path, resume: bool, fresh: bool, input_format: str = "txt", text_field: str | None = None,
) -> PartialOutput | StreamOutput | None:  # fmt: skip
    row_format = RowFormat(fmt, opts.columns()) if output is not None or stream is not None else None
    if output is not None and row_format is not None:
        identity = resume_identity(opts, fmt, model_fingerprint(model_path, calibration=True)[:16], path, details, input_format, text_field)
        extra = (Path(details), RowFormat(_details_format(details), DETAIL_COLUMNS)) if details is not None else None
        return PartialOutput(output, row_format, identity, resume=resume, fresh=fresh, details=extra)
    if stream is not None and row_format is not None:
        return StreamOutput(stream, row_format)
    return None


GROUPING_SENSITIVE_BACKENDS = ("int8", "onnx-int8")
"""Backends whose rows depend on the other texts of their batch (dynamic quantisation of activations)."""


def resume_identity(
    opts: PredictOptions, fmt: str, model: str, path: str | Path, details: str | Path | None = None,
    input_format: str = "txt", text_field: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """What a resumed run must share with the partial output, keyed by the option that sets it: whatever
    decides the rows. Not ``--batch-size``, ``--batch-tokens``, ``--chunk-size``, ``--threads``, Ray's
    address and workers: they change the speed and the grouping, never a row (batch composition can move
    the seventh decimal of a probability, and the rows are rounded to six), except under the int8 backends,
    whose activations are quantised per batch: there a headline alone and in a batch of two differ by 3e-3
    (the default model), so their grouping options stay. The device kind is kept: CPU and CUDA may differ in
    the sixth."""
    identity: dict[str, Any] = {
        "INPUT": str(Path(path).resolve()), "--model": model, "--input-format": input_format, "--text-column": text_field,
        "--format": fmt, "--per": opts.per, "--backend": opts.backend, "--engine": opts.engine,
        "--target": opts.target, "--target-column": opts.target_column, "--device": opts.device.split(":")[0],
    }  # fmt: skip
    if opts.backend in GROUPING_SENSITIVE_BACKENDS:  # activations quantised per batch: the batch decides the rows
        identity.update({"--batch-size": opts.batch_size, "--batch-tokens": opts.batch_tokens, "--chunk-size": opts.chunk_size})
    if opts.per == "document":  # only documents are aggregated and have details
        identity["--aggregate"] = opts.aggregate
        identity["--details"] = str(Path(details).resolve()) if details is not None else None
    return identity


def _details_format(details: str | Path) -> str:
    suffix = Path(details).suffix.lower().lstrip(".")
    return suffix if suffix in ("csv", "json", "jsonl") else "csv"


def _counts(result: PredictResult) -> dict[str, Any]:
    return {
        "labels": dict(result.labels), "empty": result.empty, "truncated": result.truncated,
        "no_target": result.no_target, "windowed": result.windowed, "malformed": result.malformed,
        "malformed_lines": [list(x) for x in result.malformed_lines],
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
    for key in ("empty", "truncated", "no_target", "windowed", "malformed"):
        setattr(result, key, int(counts.get(key, 0)))
    result.malformed_lines = [(int(line), str(problem)) for line, problem in counts.get("malformed_lines", [])]
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
    if result.malformed:
        shown = "; ".join(f"line {line}: {problem}" for line, problem in result.malformed_lines)
        more = "; ..." if result.malformed > len(result.malformed_lines) else ""
        reporter.warn(f"{counted(result.malformed, 'malformed record')} not classified (status 'malformed'): {shown}{more}")
    if result.replaced:
        reporter.warn(replaced_message(result.source, result.replaced, result.first_replaced))
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
