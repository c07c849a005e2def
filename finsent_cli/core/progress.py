"""Progress reporting without a UI dependency.

Core code reports through a :class:`Reporter`; the CLI passes one that draws Rich progress bars on a
terminal and plain periodic log lines otherwise (see ``finsent_cli.ui``). Tests use the silent default.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol

UNITS = ("items", "bytes")
"""What a task counts: items (steps, texts; shown as done/total) or bytes of an input (shown as a
percentage, with ``fields`` such as the records done beside it)."""


class Task(Protocol):
    """A unit of long work with a known or unknown total."""

    def advance(self, n: int = 1, **fields: object) -> None:
        """Mark ``n`` more items done; ``fields`` (loss, lr, ...) are shown beside the bar (the last ones
        given stay shown until others come)."""


class Reporter(Protocol):
    """What core code needs from a user interface."""

    def log(self, message: str) -> None:
        """Report one line of information."""

    def warn(self, message: str) -> None:
        """Report one line of warning."""

    def task(self, description: str, total: int | None = None, unit: str = "items") -> contextlib.AbstractContextManager[Task]:
        """Open a progress task for ``total`` items (or bytes, see :data:`UNITS`); with a total the time
        left can be estimated, so give one whenever it is known."""


class _NullTask:
    def advance(self, n: int = 1, **fields: object) -> None:
        return None


class NullReporter:
    """A reporter that records messages and draws nothing (the default for library calls)."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.warnings: list[str] = []

    def log(self, message: str) -> None:
        self.messages.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    @contextlib.contextmanager
    def task(self, description: str, total: int | None = None, unit: str = "items") -> Iterator[Task]:
        yield _NullTask()


def counted(n: int, noun: str) -> str:
    """``1 record``, ``2 records``: a count with its noun in the right number (nouns ending in s: add es)."""
    if n == 1:
        return f"{n} {noun}"
    return f"{n} {noun}es" if noun.endswith("s") else f"{n} {noun}s"
