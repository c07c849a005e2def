"""The top-level app: help lists the commands, version, no-args help, HF dataset input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from finsent_cli import __version__
from tests.helpers import assert_one_line_error, run_cli


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
