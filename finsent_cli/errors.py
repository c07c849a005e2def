"""User-facing errors.

A :class:`FinsentError` is a user mistake or bad input: the CLI prints its message as one line on stderr
and exits with its ``exit_code``, never with a traceback. Anything else that escapes is a bug.
"""

from __future__ import annotations


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


class RecipeError(FinsentError):
    """All problems found while loading one recipe, reported together (exit code 2).

    Args:
        problems: one line per problem, each already naming the recipe file and dotted key.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems), exit_code=2)
