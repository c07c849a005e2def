"""Rich rendering of a capability check (``finsent check``): one row per capability, with example failures.

Sentences from suite files are passed as :class:`rich.text.Text`, never as markup.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from finsent_cli.ui import console
from finsent_cli.ui.reports import short_name, shown_text

_LABEL_STYLE = {"negative": "red", "neutral": "yellow", "positive": "green"}


def _failure_line(f: Any) -> Text:
    """``"text" [-> target] predicted (0.93), expected not negative``."""
    line = Text(f"\u201c{shown_text(f.case.text)}\u201d")
    if f.case.target is not None and f.case.template.outcomes and len(f.case.template.outcomes) > 1:
        line.append(f" toward {shown_text(f.case.target)}", style="dim")
    line.append(" \u2192 ")
    line.append(f.predicted, style=_LABEL_STYLE.get(f.predicted, ""))
    line.append(f" ({f.confidence:.2f}), expected {f.case.expect.spelled}", style="dim")
    return line


def _rate_style(rate: float) -> str:
    return "green" if rate >= 0.9 else "yellow" if rate >= 0.7 else "red"


def render_check(report: Any, failures: int = 3) -> None:
    """Draw a :class:`~finsent_cli.core.check.run.CheckReport` as a table on stdout: capability, cases,
    passed, pass rate and up to ``failures`` example failures (spread over the templates) per capability."""
    t = Table(title=f"capabilities of {short_name(report.model)}", title_justify="left", show_lines=failures > 0)
    t.add_column("capability", no_wrap=True)
    t.add_column("cases", justify="right")
    t.add_column("passed", justify="right")
    t.add_column("pass rate", justify="right")
    if failures > 0:
        t.add_column("example failures", ratio=1, min_width=20, overflow="fold")
    for c in report.capabilities:
        if c.pass_rate is None:
            row = [Text(c.name), Text("-"), Text("-"), Text("skipped", style="dim")]
            extra = [Text("")]
        else:
            row = [
                Text(c.name),
                Text(f"{c.cases:,}"),
                Text(f"{c.passed:,}"),
                Text(f"{c.pass_rate:.1%}", style=_rate_style(c.pass_rate)),
            ]
            extra = [Text("\n").join(_failure_line(f) for f in _spread(c.failures, failures))]
        t.add_row(*row, *(extra if failures > 0 else []))
    console.print(t)
    for c in report.capabilities:
        if c.pass_rate is None:
            console.print(Text(f"{c.name} skipped: {c.skipped_reason}", style="dim"))
    if report.cases:
        console.print(
            f"{report.passed:,} of {report.cases:,} cases passed ({report.passed / report.cases:.1%}) in {report.seconds:.1f} s"
        )


def _spread(items: list[Any], k: int) -> list[Any]:
    """Up to ``k`` failures, one per template first (the first of each), then the rest in order."""
    firsts, rest, seen = [], [], set()
    for f in items:
        key = id(f.case.template)
        (rest if key in seen else firsts).append(f)
        seen.add(key)
    return (firsts + rest)[:k]
