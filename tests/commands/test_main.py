"""The top-level app: help lists the commands, version, no-args help, usage errors as one line, plain help placeholders, HF dataset input."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from finsent_cli import __version__
from tests.helpers import HANG_GUARD_S, assert_one_line_error, run_cli


def test_help_lists_commands() -> None:
    res = run_cli("--help")
    assert res.exit_code == 0
    for name in ("prep", "tokenizer", "quickstart", "completions"):
        assert name in res.stdout


def test_version_and_console_script() -> None:
    assert run_cli("--version").stdout.strip() == f"finsent {__version__}"
    out = subprocess.run([sys.executable, "-m", "finsent_cli", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"finsent {__version__}"


def test_command_without_args_shows_help() -> None:
    res = run_cli("prep")
    assert "Usage" in res.stdout + res.stderr and "Traceback" not in res.stdout + res.stderr


def test_quickstart_prep_on_embedded_sample(tmp_path: Path) -> None:
    from finsent_cli.core.data.prep import run_prep
    from finsent_cli.core.flows.quickstart import sample_prep_recipe

    res = run_prep(sample_prep_recipe(tmp_path))
    assert res.counts == {
        "train": {"negative": 84, "neutral": 84, "positive": 84},
        "valid": {"negative": 12, "neutral": 12, "positive": 12},
        "test": {"negative": 24, "neutral": 24, "positive": 24},
    }


def test_hf_dataset_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    fake = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"sentence": ["Stock up", "Stock down", "Stock flat"], "label": [2, 0, 1]}),
            "validation": datasets.Dataset.from_dict({"sentence": ["Profit up"], "label": [2]}),
        }
    )
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None: fake)
    r = tmp_path / "r.yaml"
    r.write_text(
        f"output_dir: {tmp_path / 'out'}\nformat: jsonl\ndata:\n  hf_dataset: some/dataset\n  text_column: sentence\n"
        "  label_map: {0: negative, 1: neutral, 2: positive}\n"
    )
    res = run_cli("prep", str(r))
    assert res.exit_code == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("*.jsonl")) == ["train.jsonl", "valid.jsonl"]


def test_hf_dataset_offline_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def boom(*a: object, **k: object) -> None:
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", boom)
    r = tmp_path / "r.yaml"
    r.write_text(f"output_dir: {tmp_path / 'out'}\ndata:\n  hf_dataset: some/dataset\n")
    assert_one_line_error(run_cli("prep", str(r)), "hf dataset 'some/dataset': cannot load (ConnectionError)")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["predict", "x.txt", "--batch-size", "0"], ["invalid value for '--batch-size'", "(see 'finsent predict --help')"]),
        (["predict", "x.txt", "--bogus"], ["no such option: --bogus", "(see 'finsent predict --help')"]),
        (["predict", "x.txt", "--device"], ["option '--device' requires an argument"]),
        (["eval", "--batch-size", "2"], ["missing argument 'MODEL... DATA...'", "(see 'finsent eval --help')"]),
        (["explain", "up", "--top-k", "many"], ["invalid value for '--top-k'"]),
        (["nosuch"], ["no such command 'nosuch'", "(see 'finsent --help')"]),
    ],
)
def test_usage_errors_are_one_line_exit_2(args: list[str], needles: list[str]) -> None:
    res = run_cli(*args)
    assert_one_line_error(res, *needles, code=2)
    assert res.stderr.count("\n") == 1 and res.stdout == ""  # no usage block, no panel
    assert not any(ch in res.stderr for ch in "╭│╰")


def test_usage_error_in_a_real_process_is_one_line() -> None:
    cmd = [sys.executable, "-m", "finsent_cli", "predict", "x", "--batch-size", "0"]
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("error: invalid value for '--batch-size'") and out.stderr.count("\n") == 1, out.stderr
    assert "predict --help" in out.stderr and "Traceback" not in out.stderr


def test_no_args_still_shows_help() -> None:
    for args in ([], ["predict"]):
        res = run_cli(*args)
        assert res.exit_code == 2 and "Usage: finsent" in res.stdout and res.error_lines == []


@pytest.mark.parametrize("command", ["", "prep", "tokenizer", "finetune", "quickstart", "completions", "eval", "predict", "explain"])
def test_help_shows_plain_placeholders(command: str) -> None:
    res = run_cli(*([command] if command else []), "--help", env={"COLUMNS": "200"})
    assert res.exit_code == 0
    assert not re.search(r"<(bool|str|int|float|path|list)", res.stdout), res.stdout
    assert not re.search(r"(?<!\$)\{[a-z_]+\}", res.stdout), res.stdout  # ${data_dir} is a recipe variable


def test_help_names_values_by_what_they_are() -> None:
    out = run_cli("eval", "--help", env={"COLUMNS": "200"}).stdout
    assert "finsent eval [OPTIONS] MODEL... DATA..." in out
    assert re.search(r"--batch-size\s+N ", out) and re.search(r"--output\s+-o\s+PREFIX", out)
    out = run_cli("predict", "--help", env={"COLUMNS": "200"}).stdout
    assert "finsent predict [OPTIONS] INPUT" in out and re.search(r"--model\s+-m\s+MODEL", out)
    assert re.search(r"--quiet\s+-q\s+Only", out)  # a flag takes no value: no placeholder at all
