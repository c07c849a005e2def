"""Where `finsent predict` writes its rows: streamed, in input order, and never half a file.

Rows are rendered chunk by chunk (:class:`RowFormat`). A file output (:class:`PartialOutput`) grows as
``FILE.partial`` beside a state file ``FILE.partial.json`` that is rewritten atomically after every
complete chunk with what the chunk boundary means: rows and bytes written, input bytes read and their
SHA-256, the model's fingerprint and the options. Only a finished run renames ``FILE.partial`` to
``FILE``. After an interruption (Ctrl-C, ``kill -9``, a power cut), ``--resume`` cuts the partial file
back to the last recorded boundary, checks that the input, model, options and columns are those of the partial
file, and goes on; the finished file is byte-identical to an uninterrupted run's because the chunks,
and so the batches, are the same. Options that only group the work (``--batch-size``, ``--batch-tokens``,
``--chunk-size``, ``--threads``) may differ on resume: another grouping can move a probability's sixth
decimal, as it does between two uninterrupted runs; the rows and their lines are the same. Not so under the
int8 backends, which quantise activations per batch: there the grouping options must match too.

CSV output never carries a control character other than tab and line breaks: a NUL, an escape sequence
or a DEL from the input becomes U+FFFD in a csv cell, so the file is safe to ``cat`` and every CSV reader
can parse it. JSON and JSONL escape them (``\\u0000``) and keep the text exactly.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from finsent_cli.core.io import atomic_write_json, check_file_target
from finsent_cli.errors import FinsentError, escape_controls

STATE_VERSION = 3
"""2: the identity is keyed by option (--backend, ...), not one JSON string of options; 3: the rows carry
``score`` and the state records the columns, so rows of one layout are never appended to a file of another."""

_OLDER_STATES = {2: "its rows have no score column"}
"""Why a partial output of an older state version cannot be continued, by version."""

_CSV_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # C0 and C1 controls but \t \n \r, and DEL


def csv_safe(value: Any) -> Any:
    """``value`` for a csv cell: None as empty, control characters but tab and line breaks as U+FFFD."""
    if value is None:
        return ""
    return _CSV_CONTROL.sub("\ufffd", value) if isinstance(value, str) else value


class RowFormat:
    """Renders rows as ``csv`` (a header, then a line per row), ``jsonl`` or ``json`` (one array, a row per
    line), a chunk at a time: ``head() + chunk(rows) + ... + tail()`` is the whole output.

    Args:
        fmt: the format.
        columns: the csv header (every row has exactly these keys).
    """

    def __init__(self, fmt: str, columns: Sequence[str]) -> None:
        if fmt not in ("csv", "json", "jsonl"):
            raise FinsentError(f"cannot serialise rows as '{fmt}' (choose csv, json, jsonl)", exit_code=2)
        self.fmt, self.columns = fmt, list(columns)

    def head(self) -> str:
        if self.fmt == "csv":
            return self._csv([dict(zip(self.columns, self.columns))])
        return "[" if self.fmt == "json" else ""

    def chunk(self, rows: Sequence[dict[str, Any]], first: bool) -> str:
        """The text of ``rows``; ``first`` says whether any row was rendered before (json needs commas)."""
        if self.fmt == "csv":
            return self._csv([{k: csv_safe(v) for k, v in row.items()} for row in rows])
        if self.fmt == "jsonl":
            return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        lines = [json.dumps(row, ensure_ascii=False) for row in rows]
        if not lines:
            return ""
        return ("\n" if first else ",\n") + ",\n".join(lines)

    def tail(self, any_rows: bool) -> str:
        if self.fmt == "json":
            return "\n]\n" if any_rows else "]\n"
        return ""

    def _csv(self, rows: list[dict[str, Any]]) -> str:
        buf = io.StringIO()
        csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n").writerows(rows)
        return buf.getvalue()


def _shown(value: Any) -> str:
    return "not given" if value is None else escape_controls(str(value))


class StreamOutput:
    """Rows written straight to a stream (stdout): as they are predicted, nothing kept."""

    def __init__(self, stream: IO[str], fmt: RowFormat) -> None:
        self.stream, self.fmt, self.rows_written = stream, fmt, 0

    def open(self) -> dict[str, Any]:
        self.stream.write(self.fmt.head())
        return {}

    def write(self, rows: Sequence[dict[str, Any]], details: Sequence[dict[str, Any]] = (), **state: Any) -> None:
        self.stream.write(self.fmt.chunk(rows, self.rows_written == 0))
        self.stream.flush()
        self.rows_written += len(rows)

    def close(self) -> None:
        self.stream.write(self.fmt.tail(self.rows_written > 0))
        self.stream.flush()

    def abandon(self) -> None:
        """Nothing to keep: what reached the stream is there."""


class PartialOutput:
    """A file output written through ``FILE.partial`` and resumable from its last complete chunk (see the
    module docstring), with an optional second file (``--details``) that grows in step with it.

    Args:
        path: the final output file.
        fmt: how rows are rendered.
        identity: what a resumed run must share with the partial file (input, model, options), as
            ``{option: value}``; every difference is named in the refusal by its option.
        resume: continue a partial file (an error if there is none).
        fresh: discard a partial file left by an interrupted run.
        details: the ``--details`` file and its format, or None.
    """

    def __init__(
        self,
        path: str | Path,
        fmt: RowFormat,
        identity: dict[str, Any],
        *,
        resume: bool = False,
        fresh: bool = False,
        details: tuple[Path, RowFormat] | None = None,
    ) -> None:
        self.path = Path(path)
        check_file_target(self.path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.state_path = self.path.with_name(self.path.name + ".partial.json")
        self.fmt, self.identity = fmt, identity
        self.details = details
        self.details_partial = details[0].with_name(details[0].name + ".partial") if details else None
        self.state: dict[str, Any] = {}
        self._files: list[IO[bytes]] = []
        if resume and fresh:
            raise FinsentError("give --resume (continue the partial output) or --fresh (start over), not both", exit_code=2)
        exists = self.state_path.is_file() and self.partial.is_file()
        if resume and not exists:
            raise FinsentError(f"{self.partial}: no partial output to resume (run without --resume)", exit_code=2)
        if exists and not resume and not fresh:
            done = self._read_state().get("rows", 0)
            raise FinsentError(
                f"{self.partial} holds {done} rows of an interrupted run: add --resume to continue it, or --fresh to start over",
                exit_code=2,
            )
        self.resuming = resume

    def _read_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise FinsentError(f"{self.state_path}: unreadable state of the partial output ({exc.__class__.__name__}); use --fresh") from None
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            versioned = isinstance(state, dict) and "version" in state
            why = f": {_OLDER_STATES[state['version']]}" if versioned and state["version"] in _OLDER_STATES else ""
            made = f"written by another finsent version (state version {state['version']}{why})" if versioned else "not a finsent partial-output state"
            raise FinsentError(f"{self.state_path}: {made}, this one reads version {STATE_VERSION}; use --fresh to start over")
        return state

    def _columns(self) -> dict[str, list[str]]:
        """The columns of the output (and of the details file): what the partial file's rows already have."""
        return {"columns": self.fmt.columns, **({"details_columns": self.details[1].columns} if self.details is not None else {})}

    def open(self) -> dict[str, Any]:
        """Start the output, or reopen a partial one after checking it belongs to this run.

        Returns:
            The state of the last complete chunk (``rows``, ``records``, ``input_bytes``, ``input_sha256``
            and the counters) or ``{}`` for a fresh start.

        Raises:
            FinsentError: the partial output was made with another input, model or options (naming each).
        """
        if self.resuming:
            state = self._read_state()
            was = state.get("identity", {})
            changed = [f"{key} (was {_shown(was.get(key))}, now {_shown(value)})" for key, value in self.identity.items() if was.get(key) != value]
            # a key that one side lacks (the grouping, kept only under the int8 backends) follows from one both
            # have (--backend): name that one alone
            grouping = ("--batch-size", "--batch-tokens", "--chunk-size")
            changed = [c for c in changed if c.split(" (", 1)[0] in was or c.split(" (", 1)[0] not in grouping] or changed
            if changed:
                raise FinsentError(
                    f"{self.path}: --resume with other settings than the interrupted run: {', '.join(changed)}; "
                    "rerun with the same options, or with --fresh to start over",
                    exit_code=2,
                )
            other = [k for k, cols in self._columns().items() if state.get(k) != cols]
            if other:  # same options, another layout of the rows: appending would mix two headers in one file
                was = ",".join(state.get(other[0]) or [])
                raise FinsentError(
                    f"{self.path}: the interrupted run wrote the columns {was or 'unknown'}, this one writes {','.join(self._columns()[other[0]])}; "
                    "use --fresh to start over",
                    exit_code=2,
                )
            self._files = [self._reopen(self.partial, state["bytes"])]
            if self.details is not None and self.details_partial is not None:
                if not self.details_partial.exists() and self.details[0].is_file():
                    # stopped between the two renames of close(): the details file got its name, the output not
                    os.replace(self.details[0], self.details_partial)
                self._files.append(self._reopen(self.details_partial, state.get("details_bytes", 0)))
            self.state = state
            return state
        self.state = {"version": STATE_VERSION, "identity": self.identity, **self._columns(), "rows": 0, "details_rows": 0}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.details is not None:
                self.details[0].parent.mkdir(parents=True, exist_ok=True)
            self._files = [self.partial.open("wb")]
            self._files[0].write(self.fmt.head().encode("utf-8"))
            if self.details is not None and self.details_partial is not None:
                self._files.append(self.details_partial.open("wb"))
                self._files[1].write(self.details[1].head().encode("utf-8"))
            self._commit()
        except OSError as exc:
            self._fail(exc)
        return {}

    def _reopen(self, path: Path, size: int) -> IO[bytes]:
        if not path.is_file() or path.stat().st_size < size:
            raise FinsentError(f"{path}: shorter than its state says ({size} bytes); the partial output is damaged, use --fresh")
        fh = path.open("r+b")
        fh.truncate(size)  # drop what a chunk wrote after the last recorded boundary
        fh.seek(size)
        return fh

    def write(self, rows: Sequence[dict[str, Any]], details: Sequence[dict[str, Any]] = (), **state: Any) -> None:
        """Append one complete chunk and record its boundary (``state``: the input position and counters)."""
        committed = dict(self.state)
        try:
            self._files[0].write(self.fmt.chunk(rows, committed["rows"] == 0).encode("utf-8"))
            if self.details is not None:
                self._files[1].write(self.details[1].chunk(details, committed["details_rows"] == 0).encode("utf-8"))
            self.state.update(state, rows=committed["rows"] + len(rows), details_rows=committed["details_rows"] + len(details))
            self._commit()
        except OSError as exc:
            self.state = committed  # the state file still says where the last complete chunk ends
            self._fail(exc)

    def _commit(self) -> None:
        for fh in self._files:
            fh.flush()
            os.fsync(fh.fileno())
        self.state["bytes"] = self._files[0].tell()
        if len(self._files) > 1:
            self.state["details_bytes"] = self._files[1].tell()
        atomic_write_json(self.state_path, self.state)

    def close(self) -> None:
        """Finish the files and give them their names (the details file first, the output last)."""
        try:
            self._files[0].write(self.fmt.tail(self.state["rows"] > 0).encode("utf-8"))
            if self.details is not None:
                self._files[1].write(self.details[1].tail(self.state["details_rows"] > 0).encode("utf-8"))
            for fh in self._files:
                fh.flush()
                os.fsync(fh.fileno())
                fh.close()
            if self.details is not None and self.details_partial is not None:
                os.replace(self.details_partial, self.details[0])
            os.replace(self.partial, self.path)
            self.state_path.unlink(missing_ok=True)
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        """One error line for a write that failed (a full disk, say); the finished chunks stay for --resume,
        and a run that finished none leaves no file behind.

        Raises:
            FinsentError: always.
        """
        self.abandon()
        done = self.state.get("rows", 0)
        if not done:
            for path in (self.partial, self.state_path, self.details_partial):
                if path is not None:
                    path.unlink(missing_ok=True)
        reason = exc.strerror or str(exc)
        fix = "free the space, then add --resume" if exc.errno == errno.ENOSPC else "fix that, then add --resume"
        kept = f"; the {done} rows done stay in {self.partial}: {fix}" if done else ""
        raise FinsentError(f"{exc.filename or self.path}: {reason}{kept}") from None

    def abandon(self) -> None:
        """Close the files and leave the partial output for ``--resume``."""
        for fh in self._files:
            fh.close()
