"""User text is never read as Rich markup; --quiet is quiet; outputs never clobber folders; no colour, no colour legend."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import assert_one_line_error, run_cli

MARKUP = "Shares [/] fell [bold]hard[/bold] on [red]"


def test_markup_in_text_is_shown_verbatim(tmp_path: Path, tiny_bert: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text(f"{MARKUP}\nProfit rose\n", encoding="utf-8")
    res = run_cli("predict", str(src), "-m", str(tiny_bert), "-f", "table", "-q")
    assert res.exit_code == 0, res.stderr
    assert "[bold]hard" in res.stdout.replace("\n", " ") or "[/]" in res.stdout
    res = run_cli("explain", MARKUP, "-m", str(tiny_bert))
    assert res.exit_code == 0, res.stderr
    assert "[bold]hard[/bold]" in res.stdout


def test_markup_in_error_messages(tmp_path: Path, tiny_bert: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text("text,label\nfine,positive\nodd,[bold]up[/]\n", encoding="utf-8")
    line = assert_one_line_error(run_cli("eval", str(tiny_bert), str(data)), "'[bold]up[/]'", "--label-map")
    assert "d.csv:3" in line


def test_quiet_prints_no_progress(tmp_path: Path, tiny_bert: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("Profit rose\nLoss widened\n", encoding="utf-8")
    res = run_cli("predict", str(src), "-m", str(tiny_bert), "-q")
    assert res.exit_code == 0 and res.stderr == ""


def test_output_that_is_a_folder_is_refused_before_work(tmp_path: Path, tiny_bert: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("Profit rose\n", encoding="utf-8")
    assert_one_line_error(run_cli("predict", str(src), "-m", str(tiny_bert), "-o", str(tmp_path)), "is a folder", code=2)
    assert_one_line_error(run_cli("explain", "Profit rose", "-m", str(tiny_bert), "-f", "json", "-o", str(tmp_path)), "is a folder", code=2)


def test_prep_never_replaces_a_foreign_folder(tmp_path: Path) -> None:
    precious = tmp_path / "mywork"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    src = tmp_path / "x.csv"
    src.write_text("text,label\n" + "".join(f"text {i} here,{['negative', 'neutral', 'positive'][i % 3]}\n" for i in range(30)))
    r = tmp_path / "r.yaml"
    r.write_text(f"output_dir: {precious}\ndata:\n  source: {src}\n")
    assert_one_line_error(run_cli("prep", str(r)), "is not a finsent output folder", code=2)
    assert (precious / "notes.txt").read_text() == "keep me"
    assert run_cli("prep", str(r), f"output_dir={tmp_path / 'out'}").exit_code == 0
    assert run_cli("prep", str(r), f"output_dir={tmp_path / 'out'}").exit_code == 0  # its own output: replaced


def test_merge_never_replaces_a_foreign_folder(tmp_path: Path) -> None:
    from finsent_cli.core.io import atomic_dir
    from finsent_cli.errors import FinsentError

    keep = tmp_path / "runs"
    keep.mkdir()
    (keep / "other_run.txt").write_text("x")
    try:
        with atomic_dir(keep) as tmp:
            (tmp / "config.json").write_text("{}")
    except FinsentError as exc:
        assert "not a finsent output folder" in exc.message
    else:
        raise AssertionError("atomic_dir replaced a folder finsent did not write")
    assert (keep / "other_run.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".runs")]


def test_plain_progress_lines_when_not_a_terminal(capsys: object) -> None:
    from finsent_cli.ui import ConsoleReporter

    rep = ConsoleReporter(every=0.0)
    assert rep.tty is False  # pytest captures stderr: not a terminal
    with rep.task("train", total=3) as task:
        for _ in range(3):
            task.advance(1, loss=0.5)
    err = capsys.readouterr().err.splitlines()  # type: ignore[attr-defined]
    assert len(err) == 3
    assert err[-1].endswith("train: 3/3 loss=0.5") and err[0].startswith("[")


def test_error_escapes_control_characters_and_splits_only_on_newline(capsys: object) -> None:
    from finsent_cli import ui

    ui.error("bad\x00name\x1b[2J\r here [red]x[/]\nsecond\x0bline\x85 end\u2028kept\n")
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert err == "error: bad\\x00name\\x1b[2J\\x0d here [red]x[/]\nerror: second\\x0bline\\x85 end\u2028kept\n"


def _explanation() -> object:
    from types import SimpleNamespace

    words = [("Profit", 0, 6, 0.4), ("rose", 7, 11, 0.1), ("despite", 12, 19, -0.3), ("fog", 20, 23, 0.0)]
    return SimpleNamespace(
        text="Profit rose despite fog", label="positive", probs={"negative": 0.1, "neutral": 0.2, "positive": 0.7}, score=0.6,
        words=[SimpleNamespace(word=w, start=a, end=b, delta=d, p_without=0.7 - d) for w, a, b, d in words],
        mask_mode="mask", top_k=["Profit"], comprehensiveness=0.4, sufficiency=0.1,
    )  # fmt: skip


def test_explanation_legend_follows_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rich.console import Console

    from finsent_cli.ui import reports

    monkeypatch.delenv("NO_COLOR", raising=False)
    for no_color, expect in ((None, "green pushes toward"), ("1", "(+) pushes toward")):
        if no_color:
            monkeypatch.setenv("NO_COLOR", no_color)
        buf = io.StringIO()
        monkeypatch.setattr(reports, "console", Console(file=buf, force_terminal=True, color_system="truecolor", width=120, highlight=False))
        reports.render_explanation(_explanation())
        out = buf.getvalue()
        assert expect in out, out
        if no_color:
            assert "  (negative 0.100  neutral 0.200  positive 0.700; score +0.600)\n" in out  # the signed score beside the probabilities
            assert "Profit(++++) rose(+) despite(---) fog\n" in out  # signs scale with |delta|; no sign for no effect
        else:
            assert "(++++)" not in out and "\x1b[" in out


def test_reporter_escapes_control_characters(capsys: object) -> None:
    from finsent_cli.ui import ConsoleReporter

    rep = ConsoleReporter()
    rep.log("loading model runs/\x1b[2Jx\r")
    rep.warn("3 texts in d\x1b]0;title\x07.csv [red]cut[/]")
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert err == "loading model runs/\\x1b[2Jx\\x0d\nwarning: 3 texts in d\\x1b]0;title\\x07.csv [red]cut[/]\n"
    ConsoleReporter(quiet=True).log("hidden")
    assert capsys.readouterr().err == ""  # type: ignore[attr-defined]


# --- issue 22: progress with a time left, from the first batch on; control characters never drawn ----


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_plain_progress_lines_show_percent_and_time_left(capsys: pytest.CaptureFixture[str]) -> None:
    from finsent_cli.ui import _PlainTask

    clock = _Clock()
    task = _PlainTask("predict", 1000, every=5.0, unit="bytes", clock=clock)
    clock.t = 1.0
    task.advance(100)  # within the first 5 s: no line yet
    clock.t = 10.0
    task.advance(150, records=40, rate="4/s")
    clock.t = 20.0
    task.advance(250)  # a batch without fields: the last counts stay shown
    clock.t = 40.0
    task.advance(500, records=160, rate="4/s")
    task.advance(0, records=160, rate="4/s")  # the closing line is printed once
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "[   10.0s] predict: 25.0% records=40 rate=4/s eta=0:30",
        "[   20.0s] predict: 50.0% records=40 rate=4/s eta=0:20",
        "[   40.0s] predict: 100.0% records=160 rate=4/s",
    ]


def test_rich_bar_estimates_the_time_left_from_updates_minutes_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich averages speed over a window; updates once per slow chunk (over 30 s apart) used to leave the
    time left at -:--:-- for a whole run."""
    import io

    from rich.console import Console

    from finsent_cli import ui

    clock = _Clock()
    monkeypatch.setattr(ui, "err_console", Console(file=io.StringIO(), force_terminal=True, width=120, get_time=clock))
    reporter = ui.ConsoleReporter()
    with reporter.task("predict", total=1000, unit="bytes") as task:
        task.advance(100, records=10)
        clock.t = 60.0  # a minute per chunk on a slow machine
        task.advance(100)
        state = task.progress.tasks[0]  # type: ignore[attr-defined]
        assert state.time_remaining == pytest.approx(480.0)  # 800 bytes at 100 per minute
        assert state.fields["fields"] == "records=10"  # kept through the batch's advance


def test_prediction_table_escapes_control_characters(tmp_path: Path, tiny_bert: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "Shares \\u001b[2J fell\\u0007 hard"}\n', encoding="utf-8")
    res = run_cli("predict", str(src), "-m", str(tiny_bert), "-f", "table", "-q", env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.stderr
    assert "\x1b" not in res.stdout and "\x07" not in res.stdout
    assert "\\x1b[2J" in res.stdout and "\\x07" in res.stdout
