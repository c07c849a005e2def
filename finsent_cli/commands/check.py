"""`finsent check [MODEL]`: capability tests (negation, shrinking losses, expectations...) after CheckList."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from finsent_cli import ui
from finsent_cli.commands.options import BackendOpt, BatchSizeOpt, DeviceOpt, QuietOpt, guarded, output_option
from finsent_cli.core.check.suite import load_suite
from finsent_cli.core.io import check_writable
from finsent_cli.core.progress import counted
from finsent_cli.errors import FinsentError
from finsent_cli.ui.check import render_check


@guarded
def check_cmd(
    model: Annotated[str | None, typer.Argument(metavar="[MODEL]", help="Model, LoRA or run folder, or a built-in model's name such as news or default (finsent models lists them). Default: $FINSENT_MODEL, else runs/latest, else the one picked with finsent models use NAME, else the shipped default model.", show_default=False)] = None,
    suite: Annotated[list[Path] | None, typer.Option("--suite", metavar="FILE", help="A suite file of your own (format: README.md beside the built-in suite, finsent_cli/resources/checks/); repeat for more. Added to the built-in suite.", show_default=False)] = None,
    suite_only: Annotated[bool, typer.Option("--suite-only", help="Run only the --suite files, not the built-in suite.")] = False,
    capability: Annotated[list[str] | None, typer.Option("--capability", "-c", metavar="NAME", help="Run only this capability; repeat for more (default: all).", show_default=False)] = None,
    output: Annotated[Path | None, output_option("Write the JSON report here: pass rates per capability and template, and every failure.")] = None,
    failures: Annotated[int, typer.Option("--failures", min=0, metavar="K", help="Example failures shown per capability (0: none).")] = 3,
    min_pass: Annotated[float | None, typer.Option("--min-pass", min=0.0, max=1.0, metavar="RATE", help="Exit with code 1 when a capability passes fewer than RATE (0-1) of its cases.", show_default=False)] = None,
    batch_size: BatchSizeOpt = 64,
    backend: BackendOpt = "torch",
    device: DeviceOpt = "cpu",
    quiet: QuietOpt = False,
) -> None:
    """Test a model on templated sentences a finance reader finds easy, capability by capability.

    A measurement: the exit code is 0 whatever the pass rates, unless --min-pass is given.
    """
    if suite_only and not suite:
        raise FinsentError("--suite-only needs at least one --suite FILE", exit_code=2)
    # a bad suite file, an unknown capability or an unwritable report fail before torch loads
    chosen = load_suite(list(suite or []), builtin=not suite_only).select(list(capability or []))
    if output is not None:
        check_writable(output, folder=False)
    reporter = ui.ConsoleReporter(quiet=quiet)
    reporter.log("check: loading torch and the model")
    from finsent_cli.core.check.run import run_check, write_report

    report = run_check(model, chosen, batch_size=batch_size, device=device, backend=backend, reporter=reporter)
    render_check(report, failures)
    if output is not None:
        write_report(report, output)
        reporter.log(f"wrote {output} ({counted(report.cases, 'case')})")
    if min_pass is not None:
        below = report.below(min_pass)
        if below:
            listed = ", ".join(f"{c.name} {c.pass_rate:.1%}" for c in below)
            raise FinsentError(f"below --min-pass {min_pass:g}: {listed}")
