"""What an experiment tracker should know about a run beyond its recipe: the group it belongs to.

``finsent tune`` trains each trial through the ordinary training flows, whose signatures say nothing about
studies; it sets the group around a trial (:func:`tracker_group`) and the loop's W&B run joins it, so the
runs of one study sit together in W&B. Free of torch, so the study code can import it cheaply.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_GROUP: ContextVar[str | None] = ContextVar("finsent_tracker_group", default=None)


@contextmanager
def tracker_group(name: str | None) -> Iterator[None]:
    """Runs trained inside the block join the W&B group ``name`` (None: no group)."""
    token = _GROUP.set(name)
    try:
        yield
    finally:
        _GROUP.reset(token)


def current_group() -> str | None:
    """The group set by the innermost :func:`tracker_group`, if any."""
    return _GROUP.get()
