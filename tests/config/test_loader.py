"""Recipe loading: interpolation, overrides, all problems at once, did-you-mean."""

from __future__ import annotations

from pathlib import Path

import pytest

from finsent_cli.config.loader import load_recipe, parse_overrides, recipe_to_yaml, resolve_data_dir
from finsent_cli.config.prep import PrepRecipe
from finsent_cli.errors import FinsentError, RecipeError
from tests.helpers import assert_one_line_error, run_cli


def _write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.fixture()
def csv_file(tmp_path: Path) -> Path:
    p = tmp_path / "d" / "x.csv"
    p.parent.mkdir()
    p.write_text("text,label\nProfit rose,positive\n", encoding="utf-8")
    return p


def test_interpolation_and_overrides(tmp_path: Path, csv_file: Path) -> None:
    r = _write(tmp_path, "output_dir: out\ndata:\n  source: ${data_dir}/x.csv\n")
    cfg = load_recipe(r, PrepRecipe, ["data.test_size=0.3", "clean.urls=replace"], data_dir=csv_file.parent)
    assert cfg.data.source == csv_file
    assert cfg.data.test_size == 0.3
    assert cfg.clean.urls == "replace"
    assert "test_size: 0.3" in recipe_to_yaml(cfg)


def test_data_dir_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FINSENT_DATA_DIR", raising=False)
    assert resolve_data_dir() == Path("data")
    monkeypatch.setenv("FINSENT_DATA_DIR", "/env/data")
    assert resolve_data_dir() == Path("/env/data")
    assert resolve_data_dir("/cli") == Path("/cli")


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    r = _write(tmp_path, "output_dir: out\ndata:\n  source: nowhere.csv\n  test_sise: 0.2\n  seed: abc\nclean:\n  urls: sometimes\n")
    with pytest.raises(RecipeError) as exc:
        load_recipe(r, PrepRecipe, data_dir=tmp_path)
    problems = exc.value.problems
    assert exc.value.exit_code == 2
    assert len(problems) == 4, problems
    text = "\n".join(problems)
    assert f"{r}: data.test_sise: unknown key (did you mean 'test_size'?)" in text
    assert "data.source: file not found: nowhere.csv" in text
    assert "data.seed:" in text and "'abc'" in text
    assert "clean.urls:" in text and "'sometimes'" in text


def test_override_of_unknown_key(tmp_path: Path, csv_file: Path) -> None:
    r = _write(tmp_path, f"output_dir: out\ndata:\n  source: {csv_file}\n")
    with pytest.raises(RecipeError) as exc:
        load_recipe(r, PrepRecipe, ["data.text_colum=body"])
    assert exc.value.problems == [
        f"{r}: data.text_colum: unknown key (from a command-line override) (did you mean 'text_column'?)"
    ]


def test_missing_required_and_unknown_variable(tmp_path: Path) -> None:
    r = _write(tmp_path, "data:\n  source: ${dta_dir}/x.csv\n")
    with pytest.raises(RecipeError) as exc:
        load_recipe(r, PrepRecipe)
    text = "\n".join(exc.value.problems)
    assert "output_dir: required value is missing" in text
    assert "unknown variable ${dta_dir} (did you mean 'data_dir'?)" in text


def test_model_level_rule(tmp_path: Path, csv_file: Path) -> None:
    r = _write(tmp_path, f"output_dir: out\ndata:\n  source: {csv_file}\n  train: {csv_file}\n")
    with pytest.raises(RecipeError, match="give exactly one of data.source"):
        load_recipe(r, PrepRecipe)


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    r = _write(tmp_path, "output_dir: [unclosed\n")
    with pytest.raises(FinsentError, match=r"line \d+, column \d+"):
        load_recipe(r, PrepRecipe)
    with pytest.raises(FinsentError, match="recipe not found"):
        load_recipe(tmp_path / "nope.yaml", PrepRecipe)
    with pytest.raises(FinsentError, match="is a folder"):
        load_recipe(tmp_path, PrepRecipe)


def test_check_paths_off_validates_shape_only(tmp_path: Path) -> None:
    r = _write(tmp_path, "output_dir: out\ndata:\n  source: nowhere.csv\n")
    cfg = load_recipe(r, PrepRecipe, check_paths=False)
    assert cfg.data.source == Path("nowhere.csv")


def test_loaded_recipe_is_read_only(tmp_path: Path, csv_file: Path) -> None:
    cfg = load_recipe(_write(tmp_path, f"output_dir: out\ndata:\n  source: {csv_file}\n"), PrepRecipe)
    with pytest.raises(Exception):
        cfg.data.seed = 1  # type: ignore[misc]


def test_parse_overrides() -> None:
    assert parse_overrides(["a.b=1", "c=[x, y]", "d=hello world", "e="]) == [
        ("a.b", 1), ("c", ["x", "y"]), ("d", "hello world"), ("e", None)
    ]  # fmt: skip
    with pytest.raises(RecipeError, match="expected KEY=VALUE"):
        parse_overrides(["novalue"])


def test_an_override_list_may_hold_unquoted_data_dir_and_a_broken_one_is_an_error() -> None:
    got = parse_overrides(["data.train=[{path: ${data_dir}/a.csv, name: a}, {path: b.csv, name: b}]", "x=${data_dir}/c"])
    assert got == [("data.train", [{"path": "${data_dir}/a.csv", "name": "a"}, {"path": "b.csv", "name": "b"}]), ("x", "${data_dir}/c")]
    many = parse_overrides(["x=[" + ", ".join(f"${{data_dir}}/f{i}" for i in range(12)) + "]", "y=[${ data_dir }/a]"])
    assert many == [("x", [f"${{data_dir}}/f{i}" for i in range(12)]), ("y", ["${ data_dir }/a"])]  # no mark is a prefix of another
    with pytest.raises(RecipeError) as err:  # before, this silently became the string "[{path: a.csv, name: a}"
        parse_overrides(["data.train=[{path: a.csv, name: a}"])
    (problem,) = err.value.problems
    assert problem.startswith("override data.train: '[{path: a.csv, name: a}' is not a valid YAML list or mapping")


SPLITS = "output_dir: out\ndata:\n  train: ${data_dir}/a/train.csv\n  valid: ${data_dir}/a/valid.csv\n  test: ${data_dir}/a/test.csv\n"


def test_missing_data_dir_is_one_problem_with_its_source_and_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = _write(tmp_path, SPLITS)
    monkeypatch.chdir(tmp_path)  # no ./data here
    monkeypatch.delenv("FINSENT_DATA_DIR", raising=False)
    cases = [(None, "the default: neither --data-dir nor $FINSENT_DATA_DIR is set"), (tmp_path / "nope", "from --data-dir")]
    for given, source in cases:
        with pytest.raises(RecipeError) as exc:
            load_recipe(r, PrepRecipe, data_dir=given)
        (problem,) = exc.value.problems  # not one "file not found" per split
        assert source in problem and "does not exist" in problem and "--data-dir DIR or FINSENT_DATA_DIR=DIR" in problem
    monkeypatch.setenv("FINSENT_DATA_DIR", str(tmp_path / "env"))
    with pytest.raises(RecipeError) as exc:
        load_recipe(r, PrepRecipe, ["data.seed=abc"])
    first, second = exc.value.problems  # other problems are still reported
    assert f"{tmp_path / 'env'} (from $FINSENT_DATA_DIR)" in first and "data.seed" in second


def test_existing_data_dir_still_names_each_missing_file(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(RecipeError) as exc:
        load_recipe(_write(tmp_path, SPLITS), PrepRecipe, data_dir=tmp_path / "d")
    assert len(exc.value.problems) == 3 and all("file not found" in p for p in exc.value.problems)


def test_missing_data_dir_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FINSENT_DATA_DIR", raising=False)
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "prep_phrasebank.yaml"
    assert_one_line_error(run_cli("prep", str(recipe)), "${data_dir} is data (the default", "--data-dir DIR", code=2)


# ------------------------------------------------------------------------------ missing inputs (--dry-run)


def _pretrain_recipes(tmp_path: Path) -> Path:
    """A recipe folder as shipped: a pretraining recipe and the two recipes that make its inputs."""
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "prep_corpus.yaml").write_text("# finsent prep recipes/prep_corpus.yaml\noutput_dir: runs/data/corpus\ncorpus: {files: [x.txt]}\n")
    (folder / "tokenizer.yaml").write_text("# finsent tokenizer recipes/tokenizer.yaml\ninput: [runs/data/corpus]\noutput_dir: runs/tokenizer\n")
    recipe = folder / "t5.yaml"
    recipe.write_text("# finsent pretrain recipes/t5.yaml\noutput_dir: runs/t5\ndata: {corpus: [runs/data/corpus], tokenizer: runs/tokenizer}\n")
    return recipe


def test_missing_inputs_are_collected_with_the_command_that_makes_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from finsent_cli.config.loader import MissingInput
    from finsent_cli.config.pretrain import PretrainRecipe

    monkeypatch.chdir(tmp_path)
    recipe = Path("recipes/t5.yaml")
    _pretrain_recipes(tmp_path)
    missing: list[MissingInput] = []
    cfg = load_recipe(recipe, PretrainRecipe, missing=missing)
    assert cfg.data.tokenizer == Path("runs/tokenizer") and cfg.output_dir == Path("runs/t5")  # validated in full
    assert [(m.key, m.path, m.make) for m in missing] == [
        ("data.corpus.0", Path("runs/data/corpus"), "finsent prep recipes/prep_corpus.yaml"),
        ("data.tokenizer", Path("runs/tokenizer"), "finsent tokenizer recipes/tokenizer.yaml"),
    ]
    assert missing[0].problem == f"{recipe}: data.corpus.0: path not found: runs/data/corpus (make it with: finsent prep recipes/prep_corpus.yaml)"
    # a real run fails on them as before, the same lines
    with pytest.raises(RecipeError) as exc:
        load_recipe(recipe, PretrainRecipe)
    assert exc.value.exit_code == 2 and exc.value.problems == [m.problem for m in missing]
    # once the inputs exist nothing is missing
    (tmp_path / "runs" / "data" / "corpus").mkdir(parents=True)
    (tmp_path / "runs" / "tokenizer").mkdir()
    again: list[MissingInput] = []
    load_recipe(recipe, PretrainRecipe, missing=again)
    assert again == []


def test_collecting_missing_inputs_still_reports_every_other_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from finsent_cli.config.loader import MissingInput

    monkeypatch.chdir(tmp_path)
    (tmp_path / "adir").mkdir()
    # data.source does not exist: the rule over the whole data section only shows once paths are set aside
    r = _write(tmp_path, "output_dir: out\ndata:\n  source: nowhere.csv\n  train: adir\nclean:\n  urls: sometimes\n")
    missing: list[MissingInput] = []
    with pytest.raises(RecipeError) as exc:
        load_recipe(r, PrepRecipe, missing=missing)
    problems = exc.value.problems
    assert exc.value.exit_code == 2 and missing == []
    assert problems[-1] == f"{r}: data.source: file not found: nowhere.csv"  # listed last, after the errors
    assert any("data.train: is a folder, expected a file" in p for p in problems)  # a wrong input is no missing one
    assert any("clean.urls:" in p for p in problems)
    assert any("give exactly one of data.source" in p for p in problems)
    with pytest.raises(RecipeError) as plain:
        load_recipe(r, PrepRecipe)
    assert not any("give exactly one of data.source" in p for p in plain.value.problems)  # what the collecting pass adds


def test_a_missing_data_dir_is_collected_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from finsent_cli.config.loader import MissingInput

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FINSENT_DATA_DIR", raising=False)
    missing: list[MissingInput] = []
    cfg = load_recipe(_write(tmp_path, SPLITS), PrepRecipe, missing=missing)
    assert cfg.data.train == Path("data/a/train.csv")
    (only,) = missing
    assert only.key == "${data_dir}" and only.path == Path("data") and only.make is None
    assert "the default: neither --data-dir nor $FINSENT_DATA_DIR is set" in only.problem and "--data-dir DIR" in only.problem


def test_overrides_that_replace_every_data_dir_use_need_no_data_dir(tmp_path: Path, csv_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./data here
    monkeypatch.delenv("FINSENT_DATA_DIR", raising=False)
    r = _write(tmp_path, SPLITS)
    files = [f"data.{split}={csv_file}" for split in ("train", "valid", "test")]
    cfg = load_recipe(r, PrepRecipe, files)
    assert cfg.data.train == cfg.data.valid == cfg.data.test == csv_file
    with pytest.raises(RecipeError, match=r"\$\{data_dir\} is data"):  # one use left: the folder is still needed
        load_recipe(r, PrepRecipe, files[:2])
    assert load_recipe(r, PrepRecipe, [*files[:2], "data.test=null"]).data.test is None
    # an override may use ${data_dir} itself
    cfg = load_recipe(r, PrepRecipe, [*files[:2], "data.test=${data_dir}/x.csv"], data_dir=csv_file.parent)
    assert cfg.data.test == csv_file
