"""Dependency noise stops at finsent's boundary.

finsent's output is a contract (one answer per input line on stdout, one ``error:`` or ``warning:`` line per
problem on stderr), and the libraries under it print at import or load time: progress bars from the hub and
transformers, log records such as bitsandbytes' note that the hub's ``kernels`` package is missing, or the
``kernels`` package's "Skipping publisher trust check ... offline mode" (new in kernels 0.19). Pinning
versions would only hide whichever line today's releases print, so finsent filters by *who* speaks:

- records from finsent's own loggers pass at WARNING and above;
- records from any other library pass only at ERROR and above (a failure the user must see);
- ``FINSENT_DEBUG=1`` lets everything through, for reporting a bug in a dependency.

The filter sits on Python's last-resort handler (``logging.lastResort``), which printed those lines: it is
used only while no handler is configured anywhere. A program that configures logging itself (a host
application using finsent as a library, ``logging.basicConfig``, pytest's capture) gets every record through
its own handlers, untouched, before or after finsent loads a model; nothing is added to the root logger.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

OWN_LOGGERS = ("finsent", "finsent_cli")
"""Logger names (and their children) that are finsent's own."""

DEBUG_ENV = "FINSENT_DEBUG"


class BoundaryFilter(logging.Filter):
    """Pass finsent's own records at WARNING+, other libraries' at ERROR+ (everything under ``FINSENT_DEBUG``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            return True
        own = any(record.name == name or record.name.startswith(name + ".") for name in OWN_LOGGERS)
        return record.levelno >= (logging.WARNING if own else logging.ERROR)


class _StderrHandler(logging.StreamHandler):
    """A stream handler that looks up ``sys.stderr`` at each record (tests and the CLI runner swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def install_boundary_filter() -> None:
    """Make the last-resort handler print through :class:`BoundaryFilter` (idempotent; imports nothing heavy,
    so the CLI installs it at start-up, before any command imports a dependency)."""
    if not isinstance(logging.lastResort, _StderrHandler):
        handler = _StderrHandler()
        handler.setLevel(logging.WARNING)
        handler.addFilter(BoundaryFilter())
        handler.setFormatter(logging.Formatter("%(message)s"))
        logging.lastResort = handler


def quiet_dependencies() -> None:
    """Install the boundary filter and turn off the dependencies' own progress bars and chatter.

    Call it before importing a library that talks at import time (bitsandbytes, peft) and before loading a
    model; every model-loading path of finsent does (for Python API users as much as for the CLI).
    """
    install_boundary_filter()
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as hf_logging

    if os.environ.get(DEBUG_ENV, "") in ("", "0"):
        disable_progress_bars()
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()  # transformers has a handler of its own (it does not propagate)
    # peft asks transformers 5 for a renamed attribute on every adapter load: noise, not the user's business
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
