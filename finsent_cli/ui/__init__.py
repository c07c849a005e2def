"""Everything that draws on a terminal: the only module (with commands/) that imports rich.

On a TTY long work shows Rich progress bars; otherwise plain log lines every few seconds, so logs of
batch jobs stay readable. Both show the time left whenever the task has a total (items, or the bytes of
an input file: ``finsent predict`` counts those, so a .gz or a CSV with multi-line records gets an ETA too).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from finsent_cli.errors import escape_controls

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def error(message: str) -> None:
    """Print a user error: each line of ``message`` prefixed with ``error:`` on stderr, no traceback.

    Only ``\\n`` separates lines; every other control character (a NUL or an escape sequence from a
    file, a carriage return) is printed as a ``\\xNN`` escape, never raw.
    """
    for line in message.rstrip("\n").split("\n"):
        shown = escape(escape_controls(line))
        err_console.print(f"[bold red]error:[/] {shown}", markup=True, soft_wrap=True, highlight=False)


def warn(message: str) -> None:
    """``warning: MESSAGE`` on stderr; control characters escaped."""
    shown = escape(escape_controls(message))
    err_console.print(f"[yellow]warning:[/] {shown}", markup=True, highlight=False, soft_wrap=True)


def draws_colour(c: Console) -> bool:
    """Whether ``c`` draws colour now: a terminal with colours, and no ``NO_COLOR`` in the environment.

    Checked at each call, not when the console was made: tests and pipes swap the streams and the
    environment after import.
    """
    return c.is_terminal and c.color_system is not None and not c.no_color and not os.environ.get("NO_COLOR")


def _fmt_fields(fields: dict[str, object]) -> str:
    parts = []
    for k, v in fields.items():
        parts.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(parts)


def _eta(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class _PlainTask:
    """Plain progress lines (not a terminal): at most one every ``every`` seconds, and one at the end."""

    def __init__(self, description: str, total: int | None, every: float, unit: str = "items", clock: Callable[[], float] = time.monotonic) -> None:
        self.description, self.total, self.every, self.unit, self.clock = description, total, every, unit, clock
        self.done = 0
        self.fields: dict[str, object] = {}
        self.start = self.last = clock()
        self.ended = False

    def advance(self, n: int = 1, **fields: object) -> None:
        self.done += n
        self.fields.update(fields)
        now = self.clock()
        end = self.total is not None and self.done >= self.total and not self.ended
        if now - self.last >= self.every or end:
            self.last, self.ended = now, self.ended or end
            if self.unit == "bytes":
                shown = f"{100 * self.done / self.total:.1f}%" if self.total else f"{self.done:,} bytes"
            else:
                shown = f"{self.done}/{self.total}" if self.total else f"{self.done}"
            extra = f" {_fmt_fields(self.fields)}" if self.fields else ""
            if self.total and 0 < self.done < self.total:  # the time left at the rate so far
                extra += f" eta={_eta((now - self.start) / self.done * (self.total - self.done))}"
            print(f"[{now - self.start:7.1f}s] {self.description}: {shown}{extra}", file=sys.stderr, flush=True)


class _SilentTask:
    def advance(self, n: int = 1, **fields: object) -> None:
        return None


class _RichTask:
    def __init__(self, progress: Progress, task_id: int) -> None:
        self.progress, self.task_id = progress, task_id
        self.fields: dict[str, object] = {}

    def advance(self, n: int = 1, **fields: object) -> None:
        self.fields.update(fields)  # a batch's advance keeps the chunk's fields shown
        self.progress.update(self.task_id, advance=n, fields=_fmt_fields(self.fields))  # type: ignore[arg-type]


class ConsoleReporter:
    """A :class:`finsent_cli.core.progress.Reporter` for the CLI.

    Args:
        quiet: only warnings.
        every: seconds between plain log lines when stderr is not a terminal.
    """

    def __init__(self, quiet: bool = False, every: float = 5.0) -> None:
        self.quiet, self.every = quiet, every
        self.tty = err_console.is_terminal

    SPEED_WINDOW_S = 120.0
    """Seconds of progress that Rich's time-left estimate averages over: longer than a slow batch, so the
    estimate shows (Rich needs two updates within the window) and does not jump."""

    def log(self, message: str) -> None:
        """One progress line on stderr (not with ``quiet``); control characters escaped, as in :func:`error`."""
        if not self.quiet:
            err_console.print(escape_controls(message), markup=False, highlight=False, soft_wrap=True)

    def warn(self, message: str) -> None:
        """``warning: MESSAGE`` on stderr, even with ``quiet``; control characters escaped."""
        warn(message)

    @contextlib.contextmanager
    def task(self, description: str, total: int | None = None, unit: str = "items") -> Iterator[object]:
        """A progress task (see :class:`finsent_cli.core.progress.Reporter`): silent with ``quiet``, plain
        lines when stderr is no terminal, else a Rich bar with done/total (items) or a percentage (bytes)."""
        if self.quiet:
            yield _SilentTask()
            return
        if not self.tty:
            yield _PlainTask(description, total, self.every, unit)
            return
        count: ProgressColumn = TaskProgressColumn() if unit == "bytes" else MofNCompleteColumn()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            count,
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[fields]}"),
            console=err_console,
            transient=False,
            speed_estimate_period=self.SPEED_WINDOW_S,
        ) as progress:
            yield _RichTask(progress, progress.add_task(description, total=total, fields=""))


class RunResult(Protocol):
    """What :func:`run_end` reads of a fine-tuning or pretraining result."""

    stop_reason: str | None
    steps: int
    resumed_from: Path | None
    seconds: float
    run_dir: Path
    moved_aside: Path | None


def run_end(result: RunResult, detail: str, contents: str) -> None:
    """The closing lines of a training command: how the run stopped, what it wrote, where an old run went.

    Args:
        result: the flow's result.
        detail: what follows the training time (misclassified examples, the best held-out loss).
        contents: what the run folder holds, in words.
    """
    how = f"resumed from {result.resumed_from.name}, " if result.resumed_from else ""
    console.print(
        f"{result.stop_reason or 'stopped'} after {result.steps} steps ({how}{result.seconds:.0f}s of training){detail}"
    )
    console.print(f"wrote {result.run_dir} ({contents})")
    if result.moved_aside is not None:
        console.print(f"the previous run is kept in {result.moved_aside}")


def _cell(v: object) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def table(
    title: str, columns: list[str], rows: list[list[object]], *, right_from: int = 1, left: tuple[int, ...] = ()
) -> Table:
    """A simple Rich table; columns from ``right_from`` on are right-aligned (numbers), except ``left``."""
    t = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        t.add_column(col, justify="right" if i >= right_from and i not in left else "left", no_wrap=i == 0)
    for row in rows:
        t.add_row(*[v if isinstance(v, Text) else Text(_cell(v)) for v in row])
    return t
