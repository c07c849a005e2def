"""User-facing errors.

A :class:`FinsentError` is a user mistake or bad input: the CLI prints its message as one line on stderr
and exits with its ``exit_code``, never with a traceback. Anything else that escapes is a bug.
"""

from __future__ import annotations

import os
import re

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class FinsentError(Exception):
    """An error caused by input or configuration, reported to the user as one line.

    Args:
        message: what went wrong, naming the file, line or key, and the fix where one is known.
        exit_code: process exit code (1 for bad input, 2 for usage and recipe errors).
    """

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, raised by core code once the work done so far is safe: ``message`` says what was kept and
    how to go on (``the finished chunks are kept in out.csv.partial: add --resume to continue``).

    The CLI prints it as THE line of the interruption (:func:`interruption_line`), so core code does not
    log one of its own. A :class:`KeyboardInterrupt` like any other: ``except KeyboardInterrupt`` sees it.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def interruption_line(exc: BaseException) -> str:
    """The one line for Ctrl-C: ``interrupted``, and what was kept, from the first :class:`Interrupted`
    in ``exc`` or in the exceptions it interrupted (a second Ctrl-C during the clean-up of the first
    still says what the first one kept)."""
    seen: set[int] = set()
    at: BaseException | None = exc
    while at is not None and id(at) not in seen:
        if isinstance(at, Interrupted):
            return f"interrupted; {at.message}"
        seen.add(id(at))
        at = at.__cause__ or at.__context__
    return "interrupted"


class FinsentNote(UserWarning):
    """Something the user should hear about while a model is built (a fallback taken, say). Core code
    ``warnings.warn``s it; flows pass it to their reporter as a warning line."""


class RecipeError(FinsentError):
    """All problems found while loading one recipe, reported together (exit code 2).

    Args:
        problems: one line per problem, each already naming the recipe file and dotted key.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems), exit_code=2)


def escape_controls(text: str) -> str:
    r"""``text`` with every C0/C1 control character (and DEL) shown as a ``\xNN`` escape.

    Messages echo file names and file content; raw control bytes in them could move the cursor,
    recolour or clear the user's terminal, or hide part of the message.
    """
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def os_error_message(exc: OSError) -> str:
    """One line for an :class:`OSError`: the path(s) it names and the reason.

    Returns:
        e.g. ``out/p.csv: No space left on device``, ``a -> b: Invalid cross-device link``, or only the
        reason when the error names no file.
    """
    reason = exc.strerror or str(exc) or exc.__class__.__name__
    names = [n for n in (exc.filename, exc.filename2) if n is not None]
    shown = [os.fsdecode(n) if isinstance(n, str | bytes) else str(n) for n in names]  # an fd is an int
    return f"{' -> '.join(shown)}: {reason}" if shown else reason
