"""Helpers for driving the real CLI in tests."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from finsent_cli.main import app


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]


def run_cli(*args: str, env: dict[str, str] | None = None, input: str | bytes | None = None) -> CliResult:
    """Run ``finsent ARGS`` in-process; stdout and stderr apart, exceptions not caught."""
    res = CliRunner().invoke(app, list(args), env=env, input=input, catch_exceptions=False, color=False)
    return CliResult(res.exit_code, res.stdout, res.stderr)


def assert_one_line_error(res: CliResult, *needles: str, code: int | None = None) -> str:
    """The run failed with exactly one ``error:`` line containing every needle, and no traceback."""
    assert res.exit_code != 0, res.stdout
    if code is not None:
        assert res.exit_code == code, (res.exit_code, res.stderr)
    assert "Traceback" not in res.stderr + res.stdout
    lines = res.error_lines
    assert len(lines) == 1, res.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


CORPUS_WORDS = [
    "profit",
    "loss",
    "shares",
    "rose",
    "fell",
    "bank",
    "quarter",
    "revenue",
    "guidance",
    "dividend",
    "merger",
    "stock",
    "market",
    "oil",
]
"""The vocabulary of the synthetic corpus fixture ``small_corpus``."""


REPO = Path(__file__).resolve().parents[1]

HANG_GUARD_S = 1200.0
"""How long a test waits for a subprocess, a server or an event before calling it hung.

A guard against a hang, never a time budget: on a loaded 2-core machine a step that takes 2 s idle can take a
minute, and a test must still pass. Tests synchronise on events (a file, a checkpoint, a log line), never on
sleeps; this only turns a real hang into a failure instead of a stuck suite.
"""


def cli_env() -> dict[str, str]:
    """Environment of a ``python -m finsent_cli`` subprocess: offline, one thread, this checkout first."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def stop_when(victim: subprocess.Popen, run: Path, sig: int, min_step: int) -> None:
    """Send ``sig`` to ``victim`` once its run folder holds a checkpoint at or past ``min_step``."""
    from finsent_cli.core.training.checkpoint import list_checkpoints

    deadline = time.monotonic() + HANG_GUARD_S
    while time.monotonic() < deadline and victim.poll() is None:
        steps = [s for s, _ in list_checkpoints(run)]
        if steps and max(steps) >= min_step:
            victim.send_signal(sig)
            return
        time.sleep(0.02)
