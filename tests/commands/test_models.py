"""`finsent models` (list, use, show) and `--model NAME` in every command that takes a model."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from finsent_cli.core import user_config
from finsent_cli.core.models import builtin
from tests.builtin_fakes import install, write_manifest
from tests.classifier_fakes import sharpened_copy
from tests.helpers import HANG_GUARD_S, REPO, assert_one_line_error, run_cli

SCORES = {
    "default": {"scores": {"phrasebank_50agree": {"short": "PB 50agree", "accuracy": 0.7348, "macro_f1": 0.6579}}, "speed": {"sentences_per_s": 181.4}},
    "news": {"scores": {"phrasebank_50agree": {"short": "PB 50agree", "accuracy": 0.8545, "macro_f1": 0.8309}}},
}  # fmt: skip


@pytest.fixture(scope="module")
def tiny_news(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sharpened_copy(tiny_bert, tmp_path_factory.mktemp("tiny_news") / "news")


@pytest.fixture()
def named(tiny_news: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Built-ins ``default`` (a stub) and ``news`` (a real tiny classifier); cwd an empty folder, no runs/."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("FINSENT_MODEL", raising=False)
    return install(monkeypatch, tmp_path / "models", {"default": None, "news": tiny_news}, SCORES)


# --------------------------------------------------------------------------------- finsent models (list)


def test_list_shows_each_model_and_marks_the_default(named: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from finsent_cli import ui

    monkeypatch.setattr(ui.console, "_width", 200)  # whole cells, one line each
    res = run_cli("models")
    assert res.exit_code == 0, res.stderr
    out = res.stdout
    for needle in ("2 built-in models", "default *", "news", "CC BY-NC-SA 3.0", "(non-commercial)", "MIT",
                   "news data", "tiny BERT", "PB 50agree", "0.735 / 0.658", "0.855 / 0.831", "181"):  # fmt: skip
        assert needle in out, needle
    assert "* your default: default (finsent's default)" in out and "note:" not in out
    assert run_cli("models", "list").stdout == out


def test_list_marks_no_default_when_env_or_runs_latest_comes_first(
    named: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finsent_cli import ui

    monkeypatch.setattr(ui.console, "_width", 200)
    Path("runs", "latest").mkdir(parents=True)
    out = run_cli("models").stdout
    assert "default *" not in out and "* your default" not in out and "your default: default" in out
    assert "note: runs/latest exists: predict, explain and serve use it before your default" in out
    monkeypatch.setenv("FINSENT_MODEL", "news")
    out = run_cli("models").stdout
    notes = [line for line in out.splitlines() if line.startswith("note:")]
    assert notes[0].startswith("note: $FINSENT_MODEL is set (news): predict") and len(notes) == 2  # the winner first


def test_a_malformed_manifest_is_one_error_line(named: Path) -> None:
    entry = builtin.entry("default")
    write_manifest(named, {"default": {**entry, "scores": {"pb": {"short": "PB"}}}})
    assert_one_line_error(run_cli("models"), f"{named / 'index.json'}: models.default.scores.pb.accuracy: expected a number")


def test_use_writes_the_config_and_states_the_licence_once(named: Path) -> None:
    res = run_cli("models", "use", "news")
    assert res.exit_code == 0, res.stderr
    path = user_config.config_path()
    assert f"your default model is now news (wrote {path})" in res.stdout
    licence = (
        f"news is licensed CC BY-NC-SA 3.0: non-commercial use only, share-alike; see {named / 'news' / 'LICENSE'}"
    )
    assert " ".join(res.stdout.split()).count(licence) == 1
    assert user_config.read_config() == {"model": "news"}
    listed = run_cli("models").stdout
    assert "news *" in listed and "default *" not in listed and f"set in {path}" in " ".join(listed.split())
    res = run_cli("models", "use", "default")
    assert "default is licensed MIT: free for any use" in " ".join(res.stdout.split())
    assert user_config.configured_model() == "default"


def test_use_warns_about_what_comes_first(named: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    res = run_cli("models", "use", "news")
    assert res.exit_code == 0 and "warning" not in res.stderr
    monkeypatch.setenv("FINSENT_MODEL", "/some/model")
    Path("runs", "latest").mkdir(parents=True)
    res = run_cli("models", "use", "news")
    assert res.exit_code == 0 and user_config.configured_model() == "news"
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: $FINSENT_MODEL is set (/some/model): predict, explain and serve use it before your default; unset it",
        (
            "warning: runs/latest exists: predict, explain and serve use it before your default; pass --model, or "
            "work in another folder"
        ),
    ]


def test_use_rewrites_an_unreadable_config(named: Path) -> None:
    path = user_config.config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("not json\n", encoding="utf-8")
    Path("in.txt").write_text("Profits rose\n", encoding="utf-8")
    assert_one_line_error(run_cli("predict", "in.txt"), str(path), "finsent models use NAME rewrites it")
    res = run_cli("models", "use", "news")
    assert res.exit_code == 0, res.stderr
    assert f"warning: {path} could not be read (not valid JSON" in res.stderr
    assert f"replaced it, keeping the old one as {path}.bak" in " ".join(res.stderr.split())
    assert user_config.read_config() == {"model": "news"} and Path(f"{path}.bak").read_text() == "not json\n"


def test_use_an_unknown_name_writes_nothing(named: Path) -> None:
    assert_one_line_error(
        run_cli("models", "use", "nwes"),
        "nwes: no built-in model of that name; did you mean 'news'?",
        "built-ins: default, news",
    )
    assert not user_config.config_path().exists()


def test_use_refuses_a_changed_model(named: Path) -> None:
    (named / "news" / "model.safetensors").write_bytes(b"changed")
    assert_one_line_error(
        run_cli("models", "use", "news"), "built-in model 'news': model.safetensors does not match its recorded hash"
    )
    assert not user_config.config_path().exists()


def test_show_prints_the_card(named: Path) -> None:
    res = run_cli("models", "show", "news")
    assert res.exit_code == 0 and res.stdout.startswith("# the news model card") and "licence of news" in res.stdout
    assert_one_line_error(run_cli("models", "show", "defualt"), "did you mean 'default'?")


def test_predict_uses_the_configured_model_and_names_the_config_on_a_bad_one(named: Path) -> None:
    Path("in.txt").write_text("Profits rose\n", encoding="utf-8")
    run_cli("models", "use", "news")
    res = run_cli("predict", "in.txt", "-f", "jsonl")
    assert res.exit_code == 0, res.stderr
    assert "using finsent's default model" not in res.stderr and str(named / "news") in res.stderr
    Path("news").mkdir()  # a data folder named like the model: the configured name is still the built-in
    Path("news", "train.csv").write_text("text,label\nProfits rose,positive\n", encoding="utf-8")
    res = run_cli("predict", "in.txt", "-f", "jsonl")
    assert res.exit_code == 0 and str(named / "news") in res.stderr, res.stderr
    user_config.write_setting("model", "nwes")
    assert_one_line_error(
        run_cli("predict", "in.txt"),
        "nwes: no such folder and no built-in model",
        "did you mean 'news'?",
        str(user_config.config_path()),
    )


# ---------------------------------------------------------------------- --model NAME in every command


def _distill(name: str) -> Path:
    from finsent_cli.config.distill import TeacherCfg
    from finsent_cli.core.flows.distill import check_teachers

    teacher = TeacherCfg.model_validate({"models": [name]}, context={"check_paths": True})
    return check_teachers(SimpleNamespace(teacher=teacher))[0]  # type: ignore[arg-type]


def _report(name: str) -> Path:
    from finsent_cli.core.report.run import locate

    run, folder = locate(name)
    assert run is None
    return folder


def _open(name: str) -> Path:
    from finsent_cli.core.inference.loading import open_model_folder

    return open_model_folder(name)[0]


def _find(name: str) -> Path:
    from finsent_cli.core.runs import find_model

    return find_model(name)


def _eval(name: str) -> Path:
    from finsent_cli.core.runs import is_model_path, resolve_model_folder

    assert is_model_path(name)  # eval's model detection (finsent eval MODEL... DATA...)
    return resolve_model_folder(name)


RESOLVERS: dict[str, Callable[[str], Path]] = {
    "predict": _find, "explain": _find, "serve": _find, "check": _find,  # core.runs.find_model
    "eval": _eval, "select": _open, "export": _open,  # select and export load through open_model_folder
    "report": _report, "distill teacher": _distill,
}  # fmt: skip


@pytest.mark.parametrize("command", list(RESOLVERS))
def test_every_command_resolves_a_name(command: str, named: Path) -> None:
    assert RESOLVERS[command]("news") == named / "news"


@pytest.mark.parametrize("command", ["predict", "eval", "explain", "report", "distill teacher"])
def test_every_command_says_did_you_mean(command: str, named: Path) -> None:
    from finsent_cli.errors import FinsentError

    with pytest.raises(
        (FinsentError, ValueError), match="nwes: no such folder and no built-in model of that name; did you mean 'news'"
    ):
        RESOLVERS[command]("nwes")


def test_cli_predict_eval_explain_and_select_take_a_name(named: Path) -> None:
    Path("in.txt").write_text("Profits rose\nShares fell\n", encoding="utf-8")
    Path("data.csv").write_text(
        "text,label\nProfits rose,positive\nShares fell,negative\nFlat quarter,neutral\n", encoding="utf-8"
    )
    res = run_cli("predict", "in.txt", "--model", "news", "-f", "jsonl")
    assert res.exit_code == 0 and len(res.stdout.splitlines()) == 2, res.stderr
    res = run_cli("eval", "news", "data.csv")
    assert res.exit_code == 0 and "news on data.csv" in res.stdout, res.stderr
    assert_one_line_error(run_cli("eval", "nwes", "data.csv"), "did you mean 'news'?")
    assert run_cli("explain", "Profits rose", "-m", "news").exit_code == 0
    res = run_cli("select", "news", "data.csv", "-k", "1", "dedup.cosine=null")
    assert res.exit_code == 0, res.stderr


def test_eval_reads_a_builtins_name_as_the_model_beside_a_data_folder_of_that_name(named: Path) -> None:
    Path("news").mkdir()
    Path("news", "train.csv").write_text("text,label\nProfits rose,positive\n", encoding="utf-8")
    Path("data.csv").write_text("text,label\nProfits rose,positive\nShares fell,negative\n", encoding="utf-8")
    res = run_cli("eval", "news", "data.csv")
    assert res.exit_code == 0 and "news on data.csv" in res.stdout, res.stderr


def test_export_of_a_builtin_writes_a_copy_not_the_installed_folder(named: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    res = run_cli("export", "news", "--onnx")
    assert res.exit_code == 0, res.stderr
    assert not (named / "news" / "onnx").exists() and builtin.verify("news") == named / "news"
    assert Path("exports", "news", "onnx", "model.onnx").is_file()
    text = " ".join((res.stdout + res.stderr).split())
    assert "copied it to exports/news" in text and "--model exports/news --backend onnx" in text
    Path("in.txt").write_text("Profits rose\n", encoding="utf-8")
    assert run_cli("predict", "in.txt", "--model", "exports/news", "--backend", "onnx").exit_code == 0


def test_a_local_folder_of_the_same_name_wins_in_the_cli(named: Path, tiny_news: Path) -> None:
    import shutil

    shutil.copytree(tiny_news, "news")
    (named / "news" / "model.safetensors").write_bytes(b"changed")  # the built-in is not even looked at
    Path("in.txt").write_text("Profits rose\n", encoding="utf-8")
    res = run_cli("predict", "in.txt", "--model", "news")
    assert res.exit_code == 0 and not res.error_lines, res.stderr


# ---------------------------------------------------------------------------------------------- help


def _help(*args: str) -> str:
    res = run_cli(*args, "--help", env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.stderr
    return res.stdout


@pytest.mark.parametrize("command", ["predict", "explain", "serve"])
def test_model_help_names_builtins_and_the_configured_model(command: str) -> None:
    text = " ".join(_help(command).replace("\u2502", " ").split())
    assert "a built-in model's name such as news or default (finsent models lists them)" in text
    assert "$FINSENT_MODEL, else runs/latest, else the model chosen with finsent models use, else the built-in" in text


def test_models_help_gives_each_command_one_line() -> None:
    rows = [line for line in _help("models").splitlines() if line.startswith("\u2502 ")]
    use = next(i for i, line in enumerate(rows) if line.startswith("\u2502 use "))
    assert rows[use].rstrip(" \u2502").endswith("."), rows[use]  # its summary is not broken at runs/latest
    assert rows[use + 1].startswith("\u2502 show "), rows[use + 1]


# -------------------------------------------------------------------------------------- real resources


def test_real_list_imports_no_ml_stack_and_shows_the_default_scores() -> None:
    probe = (
        "import sys; from finsent_cli.main import app; app(['models'], standalone_mode=False); "
        "heavy = {'torch', 'transformers', 'numpy', 'sklearn'} & {m.split('.')[0] for m in sys.modules}; "
        "print('HEAVY', sorted(heavy))"
    )
    res = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=HANG_GUARD_S, check=False
    )
    assert res.returncode == 0, res.stderr
    assert "HEAVY []" in res.stdout
    manifest: dict[str, Any] = json.loads(builtin.manifest_path().read_text(encoding="utf-8"))["models"]
    acc = manifest["default"]["scores"]["phrasebank_50agree"]
    assert f"{acc['accuracy']:.3f} / {acc['macro_f1']:.3f}" in res.stdout and "default *" in res.stdout
