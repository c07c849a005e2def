"""Error messages: control characters escaped, OSErrors named, binary inputs refused, hints in each
command's own spelling, through the real CLI."""

from __future__ import annotations

import csv
import errno
import re
from pathlib import Path

import pytest

from finsent_cli.errors import Interrupted, escape_controls, interruption_line, os_error_message
from tests.helpers import assert_one_line_error, run_cli

CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # every C0/C1 control but \t and \n
BINARY = b"text,label\n\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR,positive\n"
NUL_AT = BINARY.index(b"\x00")


def test_escape_controls() -> None:
    assert escape_controls("a\x00b\x1b[31mc\x7fd\x85e\x9f\tf") == "a\\x00b\\x1b[31mc\\x7fd\\x85e\\x9f\\x09f"
    assert escape_controls("Société 北京 📈 \u2028") == "Société 北京 📈 \u2028"  # printable text untouched


def test_os_error_message() -> None:
    assert os_error_message(PermissionError(errno.EACCES, "Permission denied", "/x")) == "/x: Permission denied"
    assert os_error_message(OSError(errno.EXDEV, "Invalid cross-device link", "a", None, "b")) == "a -> b: Invalid cross-device link"
    assert os_error_message(OSError(errno.ENOSPC, "No space left on device")) == "No space left on device"


@pytest.fixture()
def binary(tmp_path: Path) -> Path:
    p = tmp_path / "binary.csv"
    p.write_bytes(BINARY)
    return p


def _assert_binary_error(res: object, path: Path) -> None:
    line = assert_one_line_error(res, f"{path}: looks like a binary file (NUL byte at offset {NUL_AT}), not text", code=1)  # type: ignore[arg-type]
    assert not CONTROL.search(line)


def test_prep_refuses_a_binary_file(tmp_path: Path, binary: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"output_dir: {tmp_path / 'out'}\ndata:\n  source: {binary}\n", encoding="utf-8")
    _assert_binary_error(run_cli("prep", str(recipe)), binary)
    assert not (tmp_path / "out").exists()


def test_predict_and_eval_refuse_a_binary_file(tmp_path: Path, binary: Path, tiny_bert: Path) -> None:
    txt = tmp_path / "binary.txt"
    txt.write_bytes(BINARY)
    _assert_binary_error(run_cli("predict", str(txt), "-m", str(tiny_bert)), txt)
    _assert_binary_error(run_cli("eval", str(tiny_bert), str(binary)), binary)


def test_control_characters_from_a_file_never_reach_the_terminal(tmp_path: Path) -> None:
    src = tmp_path / "x.csv"
    with open(src, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["sen\x1b]0;pwned\x07tence", "label\x9b2J"])
        w.writerows([[f"text {i}", "positive"] for i in range(3)])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"output_dir: {tmp_path / 'out'}\ndata:\n  source: {src}\n", encoding="utf-8")
    res = run_cli("prep", str(recipe))
    line = assert_one_line_error(res, "found: sen\\x1b]0;pwned\\x07tence, label\\x9b2J", "set data.text_column", code=1)
    assert not CONTROL.search(res.stderr) and not CONTROL.search(line)


def test_eval_hints_name_eval_options(tmp_path: Path, tiny_bert: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text("sentence,label\nProfit rose,positive\n", encoding="utf-8")
    line = assert_one_line_error(run_cli("eval", str(tiny_bert), str(data)), "no column 'text'", "set --text-column", code=1)
    assert "data." not in line
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"text,label\nup \xff,positive\n")
    line = assert_one_line_error(run_cli("eval", str(tiny_bert), str(bad)), "invalid UTF-8", "re-encode the file as UTF-8")
    assert "data.encoding_errors" not in line


def _interrupted_cli(exc: BaseException, cleanup_interrupted: bool = False) -> tuple[int, str]:
    """Run a one-command CLI behind the real error boundary that raises ``exc`` (then, optionally, a second
    Ctrl-C during the clean-up of the first)."""
    import typer
    from typer.testing import CliRunner

    from finsent_cli.commands.options import guarded

    app = typer.Typer()

    @app.command()
    @guarded
    def cmd() -> None:
        try:
            raise exc
        finally:
            if cleanup_interrupted:
                raise KeyboardInterrupt  # pressed again while the first one was being handled

    res = CliRunner().invoke(app, [], catch_exceptions=False)
    return res.exit_code, res.stderr


def test_ctrl_c_is_said_once_with_what_was_kept() -> None:
    kept = Interrupted("saved step 7; run the same command again to resume")
    assert isinstance(kept, KeyboardInterrupt)
    assert interruption_line(kept) == "interrupted; saved step 7; run the same command again to resume"
    assert interruption_line(KeyboardInterrupt()) == "interrupted"
    assert _interrupted_cli(kept) == (130, "error: interrupted; saved step 7; run the same command again to resume\n")
    assert _interrupted_cli(kept, cleanup_interrupted=True) == (130, "error: interrupted; saved step 7; run the same command again to resume\n")
    assert _interrupted_cli(KeyboardInterrupt()) == (130, "error: interrupted\n")


def test_the_training_loop_says_what_it_saved_once(tmp_path: Path) -> None:
    """Ctrl-C in training: the step is saved and the CLI's one line says so; the loop used to log its own
    'interrupted: saved step N' line before the CLI's 'error: interrupted'."""
    import signal

    import torch

    from finsent_cli.config.finetune import OptimCfg, SchedCfg, TrainCfg
    from finsent_cli.core.progress import NullReporter
    from finsent_cli.core.training.loop import TrainJob, make_accelerator, train

    torch.manual_seed(0)
    model, calls = torch.nn.Linear(4, 3), []

    def loss(m: torch.nn.Module, b: dict) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 3:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C during the third step: it finishes and is saved
        return torch.nn.functional.cross_entropy(m(b["x"]), b["y"])

    data = [{"x": torch.randn(4), "y": i % 3} for i in range(32)]
    job = TrainJob(
        model=model, train_set=data, collate=lambda fs: {"x": torch.stack([f["x"] for f in fs]), "y": torch.tensor([f["y"] for f in fs])},
        loss_fn=loss, save_model=lambda m, folder: torch.save(m.state_dict(), folder / "model.pt"),
    )  # fmt: skip
    cfg, reporter = TrainCfg(epochs=2, batch_size=8), NullReporter()
    with pytest.raises(Interrupted) as info:
        train(job, cfg, OptimCfg(lr=0.1), SchedCfg(name="constant"), tmp_path, make_accelerator(cfg, tmp_path), reporter=reporter)
    assert interruption_line(info.value) == "interrupted; saved step 3; run the same command again to resume"
    assert not [m for m in reporter.messages if "interrupted" in m]  # said once, by the CLI
    assert (tmp_path / "checkpoints" / "step-3").is_dir()
