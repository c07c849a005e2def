"""Built-in models by name: resolution in core.runs, hash checks, the user's default and its fallback order."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from finsent_cli.core import runs, user_config
from finsent_cli.core.models import builtin
from finsent_cli.core.runs import (
    DEFAULT_MODEL,
    NoModel,
    ahead_of_settings,
    default_model_note,
    find_model,
    is_model_path,
    resolve_model,
    resolve_model_folder,
)
from finsent_cli.errors import FinsentError
from tests.builtin_fakes import install, stub_model, write_manifest


@pytest.fixture()
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Built-ins ``default`` and ``news`` (stub model folders) in a tmp models folder; cwd an empty folder."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return install(monkeypatch, tmp_path / "models", {"default": None, "news": None})


# ------------------------------------------------------------------------------------------- resolution


def test_a_name_resolves_to_its_folder(fakes: Path) -> None:
    assert builtin.builtin_names() == ["default", "news"]
    assert resolve_model_folder("news") == fakes / "news" == builtin.builtin_folder("news")
    assert is_model_path("news") and is_model_path("default")


def test_an_existing_folder_of_the_same_name_wins(fakes: Path) -> None:
    stub_model(Path("news"))  # ./news in the working folder
    assert resolve_model_folder("news") == Path("news")
    assert find_model("news") == Path("news")


def test_unknown_name_is_one_line_with_did_you_mean(fakes: Path) -> None:
    with pytest.raises(FinsentError) as exc:
        resolve_model_folder("nwes")
    assert (
        exc.value.message
        == "nwes: no such folder and no built-in model of that name; did you mean 'news'? built-ins: default, news"
    )
    with pytest.raises(FinsentError) as exc:
        resolve_model_folder("zzz")
    assert exc.value.message == "zzz: no such folder and no built-in model of that name; built-ins: default, news"


def test_a_missing_path_is_still_a_missing_folder(fakes: Path, tmp_path: Path) -> None:
    for path in (tmp_path / "news", "./news", "runs/news", "news.csv"):
        with pytest.raises(FinsentError, match="model folder not found"):
            resolve_model_folder(path)


def test_eval_tells_names_from_datasets(fakes: Path) -> None:
    Path("data.csv").write_text("text,label\nup,positive\n", encoding="utf-8")
    assert is_model_path("news")
    assert is_model_path("nwes")  # a typo of a model: eval's error is then the model's did-you-mean
    assert not is_model_path("data.csv") and not is_model_path("missing.csv") and not is_model_path("xyzzy")


def test_a_folder_of_a_builtins_name_that_holds_no_model_does_not_hide_it(fakes: Path) -> None:
    """A data folder ``news/`` (or a file ``default``) in the working folder: the name is still the built-in,
    for every reader of a model argument; ``./news`` is the folder."""
    from finsent_cli.config.distill import TeacherCfg
    from finsent_cli.core.report.run import locate

    Path("news").mkdir()
    Path("news", "train.csv").write_text("text,label\nup,positive\n", encoding="utf-8")
    Path("default").write_text("a file\n", encoding="utf-8")
    assert builtin.classify("news") == builtin.classify("default") == "builtin"
    assert resolve_model_folder("news") == fakes / "news" and resolve_model_folder("default") == fakes / "default"
    assert find_model("news") == fakes / "news"
    assert is_model_path("news")  # eval: the model news, not the dataset
    assert not is_model_path("./news") and builtin.classify("./news") == "path"
    with pytest.raises(FinsentError, match="not a model folder"):
        resolve_model_folder("./news")
    assert TeacherCfg.model_validate({"models": ["news"]}).models == [Path("news")]  # a recipe's teacher
    assert locate("news") == (None, fakes / "news")  # finsent report


def test_a_run_folder_of_a_builtins_name_wins(fakes: Path) -> None:
    stub_model(Path("news") / "best")
    assert builtin.classify("news") == "path"
    assert resolve_model_folder("news") == Path("news") / "best"
    assert is_model_path("news")


def test_a_configured_name_is_always_the_builtin(fakes: Path) -> None:
    stub_model(Path("news"))  # a model folder named news here: --model news means it, the settings do not
    user_config.write_setting("model", "news")
    assert find_model(None, {}, "runs") == fakes / "news"
    assert find_model("news", {}, "runs") == Path("news")
    assert builtin.classify("news", configured=True) == "builtin" and builtin.classify("news") == "path"


# ------------------------------------------------------------------------------------------ hash checks


def test_a_changed_file_is_named(fakes: Path) -> None:
    (fakes / "news" / "model.safetensors").write_bytes(b"tampered weights!!")
    with pytest.raises(FinsentError) as exc:
        resolve_model_folder("news")
    assert exc.value.message == (
        "built-in model 'news': model.safetensors does not match its recorded hash (the file was changed); reinstall finsent"
    )
    assert resolve_model_folder("default") == fakes / "default"  # the other built-in is fine


def test_a_missing_file_is_named(fakes: Path) -> None:
    (fakes / "news" / "config.json").unlink()
    with pytest.raises(
        FinsentError, match=r"built-in model 'news': config.json is missing from .*news; reinstall finsent"
    ):
        builtin.verify("news")


def test_the_card_and_eval_are_not_hashed(fakes: Path) -> None:
    (fakes / "news" / "README.md").write_text("edited card\n", encoding="utf-8")
    (fakes / "news" / "eval.json").write_text("{}\n", encoding="utf-8")
    (fakes / "news" / "onnx").mkdir()
    (fakes / "news" / "onnx" / "model.onnx").write_bytes(b"an export")
    assert builtin.verify("news") == fakes / "news"


def test_a_file_the_manifest_does_not_list_is_refused(fakes: Path) -> None:
    (fakes / "news" / "pytorch_model.bin").write_bytes(b"weights that would be loaded too")
    with pytest.raises(FinsentError) as exc:
        resolve_model_folder("news")
    assert exc.value.message == (
        f"built-in model 'news': pytorch_model.bin in {fakes / 'news'} is not one of its recorded files "
        "(a file was added); reinstall finsent"
    )
    assert not builtin.same_files(fakes / "news", "news") and builtin.same_files(fakes / "default", "default")


def test_the_fallback_default_is_verified(fakes: Path) -> None:
    notes: list[str] = []
    assert find_model(None, {}, "runs", note=notes.append) == fakes / "default" and len(notes) == 1
    (fakes / "default" / "model.safetensors").write_bytes(b"changed")
    with pytest.raises(FinsentError, match=r"^built-in model 'default': model.safetensors does not match"):
        find_model(None, {}, "runs")


def test_a_missing_manifest_is_one_line_not_an_unchecked_default(fakes: Path) -> None:
    builtin.manifest_path().unlink()
    for call in (lambda: find_model(None, {}, "runs"), lambda: resolve_model_folder("news"), builtin.describe):
        with pytest.raises(FinsentError) as exc:
            call()
        assert exc.value.message == f"{builtin.manifest_path()} missing: reinstall finsent"
    assert resolve_model_folder(stub_model(Path("mine"))) == Path("mine")  # a folder needs no manifest


def test_a_manifest_without_a_default_means_no_model(fakes: Path) -> None:
    write_manifest(fakes, {"news": builtin.entry("news")})
    with pytest.raises(NoModel, match="no model: pass --model"):
        find_model(None, {}, "runs")


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ({"scores": {"pb": {"short": "PB", "macro_f1": 0.8}}}, "models.news.scores.pb.accuracy: expected a number"),
        ({"scores": ["pb"]}, "models.news.scores: expected an object"),
        ({"files": {"config.json": 3}}, "models.news.files.config.json: expected a SHA-256 (64 hex digits)"),
        ({"speed": {"sentences_per_s": "fast"}}, "models.news.speed.sentences_per_s: expected a number"),
        ({"capabilities": {"negation": "most"}}, "models.news.capabilities.negation: expected a number"),
        ({"licence": "MIT"}, "models.news.licence: expected an object"),
    ],
)
def test_a_malformed_manifest_entry_names_the_file_and_key(fakes: Path, entry: dict[str, object], key: str) -> None:
    write_manifest(fakes, {"default": builtin.entry("default"), "news": {**builtin.entry("news"), **entry}})
    with pytest.raises(FinsentError) as exc:
        builtin.describe()
    assert exc.value.message == f"{builtin.manifest_path()}: {key}; reinstall finsent"


def test_the_listed_size_is_the_model_files_as_on_the_card(fakes: Path) -> None:
    folder = fakes / "news"
    model_files = sum((folder / rel).stat().st_size for rel in builtin.entry("news")["files"])
    (folder / "onnx").mkdir()
    (folder / "onnx" / "model.onnx").write_bytes(b"x" * 10_000)
    (folder / "eval.json").write_text("{}\n" * 1000, encoding="utf-8")
    sizes = {r["name"]: r["size"] for r in builtin.describe()}
    assert sizes["news"] == builtin.model_bytes("news") == model_files


def test_exporting_a_builtin_writes_into_a_copy(fakes: Path) -> None:
    from finsent_cli.core.inference.export import BUILTIN_EXPORTS, writable_copy

    copy = writable_copy(fakes / "news")
    assert copy == BUILTIN_EXPORTS / "news" and builtin.same_files(copy, "news")
    assert (copy / "README.md").read_text(encoding="utf-8").startswith("# the news model card")  # the card comes along
    assert writable_copy(fakes / "news") == copy  # an earlier copy is reused
    assert writable_copy(stub_model(Path("mine"))) == Path("mine")  # a folder of the user's: exported in place
    (copy / "model.safetensors").write_bytes(b"another model")
    with pytest.raises(FinsentError, match=r"^exports/news: exists and is not a copy of the built-in model news"):
        writable_copy(fakes / "news")


def test_verify_hashes_once_per_file_state(fakes: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[str] = []
    real = builtin.sha256_file

    def counting(path: Path) -> str:
        hashed.append(path.name)
        return real(path)

    monkeypatch.setattr(builtin, "sha256_file", counting)
    builtin.verify("news")
    assert sorted(hashed) == ["config.json", "finsent.json", "model.safetensors"]
    builtin.verify("news")
    resolve_model_folder("news")
    assert len(hashed) == 3  # nothing read again
    weights = fakes / "news" / "model.safetensors"
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # touched: read again
    builtin.verify("news")
    assert hashed[3:] == ["model.safetensors"]


# ------------------------------------------------------------------------------------- the user's choice


def test_config_folder_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FINSENT_CONFIG_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert user_config.config_path() == tmp_path / "a" / "config.json"
    monkeypatch.delenv("FINSENT_CONFIG_DIR")
    assert user_config.config_path() == tmp_path / "xdg" / "finsent" / "config.json"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_config.config_path() == tmp_path / "home" / ".config" / "finsent" / "config.json"


def test_the_fixture_is_what_keeps_the_users_config_out(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """conftest's autouse fixture gives each test a config folder under pytest's tmp folder; without it, a
    user's ~/.config/finsent/config.json would choose the tests' model."""
    assert Path(os.environ["FINSENT_CONFIG_DIR"]).is_relative_to(tmp_path_factory.getbasetemp())
    assert not user_config.config_path().exists()
    home = tmp_path / "home"
    users = home / ".config" / "finsent" / "config.json"
    users.parent.mkdir(parents=True)
    users.write_text('{"model": "users-own-model"}\n', encoding="utf-8")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    assert user_config.configured_model() is None  # the fixture's folder is read, not HOME's
    monkeypatch.delenv("FINSENT_CONFIG_DIR")
    assert user_config.config_path() == users
    assert user_config.configured_model() == "users-own-model"  # without it, the user's choice leaks in
    with pytest.raises(FinsentError, match=r"^users-own-model: no such folder"):
        find_model(None, {}, tmp_path / "runs")


def test_write_keeps_other_settings_and_reads_back(tmp_path: Path) -> None:
    path = user_config.config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"colour": false, "model": "default"}\n', encoding="utf-8")
    assert user_config.write_setting("model", 'news "quoted"') == (path, None, None)
    assert user_config.read_config() == {"colour": False, "model": 'news "quoted"'}
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_a_broken_config_names_its_file() -> None:
    path = user_config.config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"model": [1\n', encoding="utf-8")
    with pytest.raises(FinsentError, match=rf"^{path}: not valid JSON"):
        user_config.configured_model()
    path.write_text('["news"]\n', encoding="utf-8")
    with pytest.raises(FinsentError, match=rf"^{path}: expected a JSON object"):
        user_config.configured_model()
    path.write_text('{"model": 3}\n', encoding="utf-8")
    with pytest.raises(FinsentError, match=rf'^{path}: "model" must be a model name or folder'):
        user_config.configured_model()


def test_use_replaces_an_unreadable_config_and_keeps_it_aside(fakes: Path) -> None:
    """The error says finsent models use NAME rewrites the file: it does, keeping the old one."""
    path = user_config.config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"model": [1\n', encoding="utf-8")
    with pytest.raises(FinsentError, match=r"finsent models use NAME rewrites it, keeping it as config.json.bak"):
        user_config.configured_model()
    written = builtin.use("news")
    assert written.path == path and written.backup == path.with_name("config.json.bak")
    assert written.problem is not None and written.problem.startswith("not valid JSON")
    assert written.backup.read_text(encoding="utf-8") == '{"model": [1\n'
    assert user_config.read_config() == {"model": "news"}
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_fallback_order(fakes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--model, $FINSENT_MODEL, runs/latest, the user's configured model, the shipped default."""
    notes: list[str] = []
    env: dict[str, str] = {}
    assert find_model(None, env, "runs", note=notes.append) == fakes / "default" and len(notes) == 1
    user_config.write_setting("model", "news")
    assert resolve_model(None, env, "runs") == (Path("news"), str(user_config.config_path()))
    assert find_model(None, env, "runs", note=notes.append) == fakes / "news" and len(notes) == 1  # chosen: no note
    run = stub_model(tmp_path / "run" / "best").parent
    Path("runs").mkdir()
    os.symlink(run, Path("runs") / "latest")
    assert find_model(None, env, "runs") == Path("runs") / "latest" / "best"
    assert ahead_of_settings(env, "runs") == [
        "runs/latest exists: predict, explain and serve use it before your default; pass --model, or work in another folder"
    ]
    env[runs.MODEL_ENV] = "default"
    assert find_model(None, env, "runs") == fakes / "default"
    assert find_model("news", env, "runs") == fakes / "news"
    assert [line.split(":")[0] for line in ahead_of_settings(env, "runs")] == ["$FINSENT_MODEL is set (default)", "runs/latest exists"]


def test_a_configured_unknown_model_names_the_config_file(fakes: Path) -> None:
    user_config.write_setting("model", "nwes")
    with pytest.raises(FinsentError) as exc:
        find_model(None, {}, "runs")
    assert exc.value.message == (
        "nwes: no such folder and no built-in model of that name; did you mean 'news'? built-ins: default, news "
        f"(model from {user_config.config_path()})"
    )


def test_use_checks_the_name_and_the_files(fakes: Path) -> None:
    with pytest.raises(FinsentError, match=r"^nwes: no built-in model of that name; did you mean 'news'\?"):
        builtin.use("nwes")
    assert not user_config.config_path().exists()
    assert builtin.use("news").path == user_config.config_path()
    assert user_config.configured_model() == "news" and builtin.current_default() == "news"
    assert builtin.licence_line("news") == (
        f"news is licensed CC BY-NC-SA 3.0: non-commercial use only, share-alike; see {fakes / 'news' / 'LICENSE'}"
    )


def test_default_note_says_what_it_is_and_how_to_switch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def scored(acc: float) -> dict[str, object]:
        return {"scores": {"phrasebank_50agree": {"short": "PB 50agree", "accuracy": acc, "macro_f1": acc - 0.05}}}

    install(
        monkeypatch,
        tmp_path / "models",
        {"default": None, "news": None},
        {"default": scored(0.7348), "news": scored(0.85)},
    )
    assert default_model_note() == (
        "using finsent's default model (MIT, trained on default texts: 0.73 on news prose); "
        "`finsent models` lists stronger ones (`--model news`)"
    )
    install(monkeypatch, tmp_path / "models2", {"default": None}, {"default": scored(0.7348)})
    assert default_model_note().endswith("`finsent models` lists the built-in models")


# ------------------------------------------------------------------------------------- the real manifest


def test_the_shipped_default_is_a_verified_builtin() -> None:
    assert "default" in builtin.builtin_names()
    assert builtin.verify("default") == DEFAULT_MODEL
    assert DEFAULT_MODEL.parts[-3:] == ("resources", "models", "default")
    manifest = json.loads(builtin.manifest_path().read_text(encoding="utf-8"))["models"]
    assert manifest["default"]["licence"]["id"] == "MIT" and not manifest["default"]["licence"]["non_commercial"]
