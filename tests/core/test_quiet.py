"""Dependency noise stops at finsent's boundary (finsent_cli/core/quiet.py)."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import HANG_GUARD_S, REPO, cli_env

# what kernels 0.19 logs (through the standard logging module) when bitsandbytes imports it offline
SCRIPT = """
import logging
from finsent_cli.core.quiet import install_boundary_filter
install_boundary_filter()
install_boundary_filter()  # idempotent: one handler, one line per record
logging.getLogger("kernels._internals.hf_hub").warning(
    "Skipping publisher trust check for 'kernels-community/quantization-bitsandbytes' because Hugging Face Hub is in offline mode.")
logging.getLogger("bitsandbytes.backends.cpu.ops").warning("kernels package not found")
logging.getLogger("some_dependency").error("a real failure in a dependency")
logging.getLogger("finsent.serve").warning("finsent's own warning")
logging.getLogger("finsent_cli.core.models.t5.layers").info("finsent's own info")
"""


def _stderr(extra_env: dict[str, str] | None = None) -> list[str]:
    env = {k: v for k, v in cli_env().items() if k != "FINSENT_DEBUG"}
    env.update(extra_env or {})
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=HANG_GUARD_S, check=True)  # fmt: skip
    return proc.stderr.splitlines()


def test_dependency_warnings_are_dropped_errors_and_own_warnings_pass() -> None:
    assert _stderr() == ["a real failure in a dependency", "finsent's own warning"]


def test_finsent_debug_lets_everything_through() -> None:
    lines = _stderr({"FINSENT_DEBUG": "1"})
    assert len(lines) == 4 and lines[0].startswith("Skipping publisher trust check"), lines


def test_the_cli_installs_the_filter_before_any_command(monkeypatch) -> None:
    import logging

    from finsent_cli import main as main_module
    from finsent_cli.core.quiet import BoundaryFilter

    monkeypatch.setattr(main_module, "app", lambda: None)
    monkeypatch.setattr(logging, "lastResort", logging.lastResort)  # restored after the test
    before = list(logging.getLogger().handlers)
    main_module.main()
    assert any(isinstance(f, BoundaryFilter) for f in logging.lastResort.filters)
    assert logging.getLogger().handlers == before  # the root logger is left to the host program


HOST = """
import logging
from finsent_cli.core.quiet import quiet_dependencies
quiet_dependencies()  # what loading a model does
logging.basicConfig(level=logging.INFO, format="APP %(name)s %(message)s")  # the host configures logging after
logging.getLogger("myapp").warning("host warning")
logging.getLogger("some_dependency").error("dependency error")
logging.getLogger("finsent.serve").warning("own warning")
"""


def test_a_host_program_that_configures_logging_keeps_every_record_once() -> None:
    proc = subprocess.run([sys.executable, "-c", HOST], cwd=REPO, env=cli_env(), capture_output=True, text=True,
                          timeout=HANG_GUARD_S, check=True)  # fmt: skip
    assert proc.stderr.splitlines() == ["APP myapp host warning", "APP some_dependency dependency error", "APP finsent.serve own warning"]
