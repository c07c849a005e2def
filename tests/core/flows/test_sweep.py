"""Grid sweeps called directly, with a fake trainer: axes, planning and its errors, resuming, the tables."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from finsent_cli.config.finetune import FinetuneRecipe
from finsent_cli.config.loader import parse_overrides, recipe_to_yaml
from finsent_cli.core.flows import sweep as sweep_mod
from finsent_cli.core.flows.sweep import (
    POINT_FILE,
    PeakMemory,
    is_sweep_dir,
    parse_sweep,
    plan_sweep,
    point_name,
    run_sweep,
)
from finsent_cli.core.progress import NullReporter
from finsent_cli.errors import FinsentError, RecipeError


def write_recipe(tmp_path: Path) -> Path:
    """A schema-valid fine-tuning recipe on two tiny CSV files under ``tmp_path/data`` (``${data_dir}``)."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    for split in ("train", "valid"):
        (data / f"{split}.csv").write_text("text,label\nprofit rose,positive\nshares fell,negative\n", encoding="utf-8")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"output_dir: {tmp_path / 'sweep'}\n"
        "model: {backbone: minilm, max_length: 24, dropout: 0.1}\n"
        "data: {train: '${data_dir}/train.csv', valid: '${data_dir}/valid.csv'}\n"
        "optim: {lr: 1.0e-3}\n"
        "train: {epochs: 1, batch_size: 8, seed: 13}\n",
        encoding="utf-8",
    )
    return recipe


def plan(tmp_path: Path, items: list[str], overrides: list[str] | None = None) -> sweep_mod.SweepPlan:
    return plan_sweep(write_recipe(tmp_path), FinetuneRecipe, overrides, parse_sweep(items), tmp_path / "data")


class FakeTrainer:
    """Stands in for ``run_finetune``: writes a run folder and returns metrics computed from the recipe.

    Args:
        interrupt_at: raise KeyboardInterrupt on this call (1-based), after the run folder was started.
    """

    def __init__(self, interrupt_at: int | None = None) -> None:
        self.interrupt_at = interrupt_at
        self.calls: list[tuple[str, bool]] = []

    def __call__(self, cfg: FinetuneRecipe, fresh: bool) -> Any:
        run = Path(cfg.output_dir)
        self.calls.append((run.name, fresh))
        if fresh and run.exists():  # as run_finetune: the old run is moved aside, never deleted
            run.rename(run.with_name(f"{run.name}.old-{len(list(run.parent.glob(run.name + '.old-*')))}"))
        run.mkdir(parents=True, exist_ok=True)
        (run / "recipe.yaml").write_text(recipe_to_yaml(cfg), encoding="utf-8")
        if len(self.calls) == self.interrupt_at:
            raise KeyboardInterrupt
        f1 = round(cfg.train.batch_size / 100 + cfg.train.seed / 1000, 6)
        return SimpleNamespace(
            final={"valid": {"accuracy": 0.5, "macro_f1": f1, "loss": 1.0}},
            seconds=1.25,
            params={"trainable": 10, "total": 100, "base_bytes": 0},
            best_step=4,
            run_dir=run,
        )


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------------------------------------- axes


def test_values_split_at_top_level_only() -> None:
    axes = parse_sweep(
        [
            "model.adapter.target_modules=[query,value],[query,key,value]",
            "model.backbone='a,b', \"c,\\\"d\",bank's,x",
            "data.label_map={0: negative, 1: positive},{}",
        ]
    )
    assert axes[0].key == "model.adapter.target_modules"
    assert axes[0].texts == ["[query,value]", "[query,key,value]"]
    assert axes[0].values == [["query", "value"], ["query", "key", "value"]]
    assert axes[1].texts == ["'a,b'", '"c,\\"d"', "bank's", "x"]  # stripped; an apostrophe in a word is no quote
    assert axes[1].values == ["a,b", 'c,"d', "bank's", "x"]
    assert axes[2].values == [{0: "negative", 1: "positive"}, {}]


def test_values_are_typed_like_overrides() -> None:
    items = ["train.seed=1, 2", "optim.lr=1.0e-3,0.5", "model.backbone=minilm,'123'", "train.compile=true,false"]
    axes = parse_sweep(items)
    assert [a.values for a in axes] == [[1, 2], [0.001, 0.5], ["minilm", "123"], [True, False]]
    for axis in axes:  # exactly what the same text as a KEY=VALUE override gives
        assert axis.values == [parse_overrides([f"{axis.key}={t}"])[0][1] for t in axis.texts]
    assert [type(v) for v in axes[0].values + axes[1].values] == [int, int, float, float]


def test_bad_items_are_reported_together() -> None:
    items = [
        "train.seed",  # no '='
        "optim.lr=",  # no values
        "model.dropout=0.1,,0.2",  # an empty value
        "train.batch_size=[8,16",  # unclosed bracket
        "optim.name='adamw,adafactor",  # unclosed quote
        "sched.name=linear,linear",  # a value twice
        "output_dir=a,b",
        "train.epochs=1,2",
        "train.epochs=3",  # the same key twice
    ]
    with pytest.raises(RecipeError) as err:
        parse_sweep(items)
    problems = err.value.problems
    assert len(problems) == 8, problems
    for item, line in zip([i for i in items if i != "train.epochs=1,2"], problems, strict=True):
        assert f"--sweep {item!r}" in line, (item, line)
    assert "twice" in problems[5] and "output_dir" in problems[6] and "swept twice" in problems[7]


# ------------------------------------------------------------------------------------------------- plan


def test_grid_order_point_folders_and_overrides(tmp_path: Path) -> None:
    p = plan(tmp_path, ["train.batch_size=8,16", "optim.lr=1.0e-3,3.0e-4"], ["train.seed=5"])
    assert p.sweep_dir == tmp_path / "sweep"
    names = [name for name, _, _ in p.points]
    assert names == [
        "batch_size=8,lr=1.0e-3",
        "batch_size=8,lr=3.0e-4",
        "batch_size=16,lr=1.0e-3",
        "batch_size=16,lr=3.0e-4",
    ]
    assert [a for _, a, _ in p.points][1] == {"train.batch_size": 8, "optim.lr": 3.0e-4}
    assert [(c.train.batch_size, c.optim.lr, c.train.seed) for _, _, c in p.points] == [
        (8, 1e-3, 5), (8, 3e-4, 5), (16, 1e-3, 5), (16, 3e-4, 5)
    ]  # fmt: skip
    assert all(Path(c.output_dir) == p.sweep_dir / name for name, _, c in p.points)
    assert p.labels[0] == "batch_size=8, lr=1.0e-3"
    assert not p.sweep_dir.exists()  # planning writes nothing


def test_colliding_last_segments_use_the_full_key(tmp_path: Path) -> None:
    p = plan(tmp_path, ["optim.name=adamw,adafactor", "sched.name=linear,cosine", "train.seed=1"])
    assert [name for name, _, _ in p.points] == [
        "optim.name=adamw,sched.name=linear,seed=1",
        "optim.name=adamw,sched.name=cosine,seed=1",
        "optim.name=adafactor,sched.name=linear,seed=1",
        "optim.name=adafactor,sched.name=cosine,seed=1",
    ]


def test_point_names_are_safe_and_distinct(tmp_path: Path) -> None:
    a = point_name(["target_modules"], ["[query,value]"])
    b = point_name(["target_modules"], ["(query,value)"])
    assert a.startswith("target_modules=_query,value_+") and b.startswith("target_modules=_query,value_+") and a != b
    assert point_name(["target_modules"], ["[query,value]"]) == a  # stable: a folder always means one value
    long = point_name(["backbone"], ["x" * 300])
    assert len(long) <= 120 and long != point_name(["backbone"], ["x" * 299])
    p = plan(tmp_path, ["model.backbone='my model/v1',minilm"])
    assert [name.split("+")[0] for name, _, _ in p.points] == ["backbone=_my_model_v1_", "backbone=minilm"]
    assert [c.model.backbone for _, _, c in p.points] == ["my model/v1", "minilm"]
    assert all(Path(c.output_dir).parent == p.sweep_dir for _, _, c in p.points)


def test_every_problem_of_every_point_at_once(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as err:
        plan(tmp_path, ["train.batch_size=8,abc", "model.dropout=0.1,1.5", "train.seeed=1"])
    problems = err.value.problems
    assert len(problems) == len(set(problems))  # each once, though several points share it
    text = "\n".join(problems)
    assert "train.batch_size" in text and "'abc'" in text
    assert "model.dropout" in text and "1.5" in text
    assert "train.seeed" in text and "'train.seed'" in text
    assert not (tmp_path / "sweep").exists()


def test_unknown_key_gets_a_full_key_hint(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as err:
        plan(tmp_path, ["seed=1,2"])
    assert "--sweep seed=...: seed is not a recipe key (did you mean 'train.seed' or 'augment.seed'?)" in err.value.problems
    with pytest.raises(RecipeError) as err:
        plan(tmp_path, ["adapter.num_layers=1,2"])
    assert "did you mean 'model.adapter.num_layers'?" in err.value.problems[0]


def test_a_run_folder_is_refused_as_sweep_folder(tmp_path: Path) -> None:
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "recipe.yaml").write_text("output_dir: sweep\n", encoding="utf-8")
    with pytest.raises(FinsentError) as err:
        plan(tmp_path, ["train.seed=1,2"])
    assert not isinstance(err.value, RecipeError)
    assert "run folder" in err.value.message and "output_dir" in err.value.message
    assert "\n" not in err.value.message
    (tmp_path / "sweep" / "recipe.yaml").unlink()
    (tmp_path / "sweep" / "sweep.json").write_text('{"kind": "finsent-sweep"}', encoding="utf-8")
    (tmp_path / "sweep" / "recipe.yaml").write_text("output_dir: sweep\n", encoding="utf-8")
    assert is_sweep_dir(tmp_path / "sweep")
    plan(tmp_path, ["train.seed=1,2"])  # a sweep folder is fine


# ------------------------------------------------------------------------------------------------- run


def test_interrupted_sweep_continues_where_it_stopped(tmp_path: Path) -> None:
    p = plan(tmp_path, ["train.batch_size=8,16", "train.seed=1,2"])
    names = [name for name, _, _ in p.points]
    first = FakeTrainer(interrupt_at=2)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(p, first)
    assert [r["point"] for r in read_csv(p.sweep_dir / "sweep.csv")] == names[:1]  # on disk before the interrupt
    assert (p.sweep_dir / names[0] / POINT_FILE).exists() and not (p.sweep_dir / names[1] / POINT_FILE).exists()

    reporter = NullReporter()
    second = FakeTrainer()
    result = run_sweep(p, second, reporter)
    assert second.calls == [(n, False) for n in names[1:]]  # the interrupted point again, then the rest
    assert reporter.messages[0] == "sweep point 1/4 (batch_size=8, seed=1): skipped (done)"
    assert reporter.messages[1].startswith("sweep point 2/4 (batch_size=8, seed=2): training in ")
    assert [r["point"] for r in result.rows] == names
    assert result.columns[:3] == ["train.batch_size", "train.seed", "point"]
    doc = json.loads((p.sweep_dir / "sweep.json").read_text(encoding="utf-8"))
    assert doc["rows"] == result.rows and [a["key"] for a in doc["axes"]] == ["train.batch_size", "train.seed"]
    rows = read_csv(p.sweep_dir / "sweep.csv")
    assert list(rows[0]) == result.columns
    assert [(r["train.batch_size"], r["train.seed"], r["valid_macro_f1"]) for r in rows] == [
        ("8", "1", "0.081"), ("8", "2", "0.082"), ("16", "1", "0.161"), ("16", "2", "0.162")
    ]  # fmt: skip

    third = FakeTrainer()
    assert run_sweep(p, third).rows == result.rows and third.calls == []


def test_rows_hold_the_recipe_values_and_the_results(tmp_path: Path) -> None:
    p = plan(tmp_path, ["optim.lr=1e-4,2.0e-4"])
    assert p.axes[0].values[0] == "1e-4"  # YAML 1.1 reads 1e-4 as text; the recipe makes it a number
    row = run_sweep(p, FakeTrainer()).rows[0]
    assert row["optim.lr"] == 1e-4 and row["point"] == "lr=1e-4"
    assert (row["valid_accuracy"], row["test_accuracy"], row["test_macro_f1"]) == (0.5, None, None)
    assert (row["trainable_params"], row["total_params"], row["train_seconds"], row["best_step"]) == (10, 100, 1.25, 4)
    assert row["peak_rss_mib"] > 0 and row["run_dir"] == str(p.sweep_dir / "lr=1e-4")
    first = read_csv(p.sweep_dir / "sweep.csv")[0]
    assert first["optim.lr"] == "0.0001" and first["test_accuracy"] == "" and first["trainable_params"] == "10"
    point = json.loads((p.sweep_dir / "lr=1e-4" / POINT_FILE).read_text(encoding="utf-8"))
    assert point["row"] == row and "recipe" in point


def test_fresh_reruns_every_point_even_after_an_interrupt(tmp_path: Path) -> None:
    p = plan(tmp_path, ["train.seed=1,2,3"])
    names = [name for name, _, _ in p.points]
    run_sweep(p, FakeTrainer())
    again = FakeTrainer()
    run_sweep(p, again, fresh=True)
    assert again.calls == [(n, True) for n in names]

    interrupted = FakeTrainer(interrupt_at=2)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(p, interrupted, fresh=True)
    # Without --fresh: the point the fresh sweep was in resumes its fresh run (not moved aside and started
    # from zero again); the point it had not reached still starts over.
    rest = FakeTrainer()
    result = run_sweep(p, rest)
    assert rest.calls == [(names[1], False), (names[2], True)]
    assert len(result.rows) == 3
    assert json.loads((p.sweep_dir / "sweep.json").read_text(encoding="utf-8"))["fresh_pending"] == []


def test_a_fresh_point_interrupted_before_its_run_began_starts_over_again(tmp_path: Path) -> None:
    p = plan(tmp_path, ["train.seed=1,2"])
    names = [name for name, _, _ in p.points]
    run_sweep(p, FakeTrainer())

    class Early(FakeTrainer):  # Ctrl-C while the point loads its data: the old run is still in its folder
        def __call__(self, cfg: FinetuneRecipe, fresh: bool) -> Any:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(p, Early(), fresh=True)
    rest = FakeTrainer()
    run_sweep(p, rest)
    assert rest.calls == [(n, True) for n in names]


def test_only_the_main_process_writes_the_sweep_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = plan(tmp_path, ["train.seed=1,2"])
    monkeypatch.setenv("RANK", "1")
    result = run_sweep(p, FakeTrainer())
    assert len(result.rows) == 2
    assert not (p.sweep_dir / "sweep.json").exists() and not (p.sweep_dir / "sweep.csv").exists()
    assert not any(p.sweep_dir.glob(f"*/{POINT_FILE}"))


def test_a_changed_recipe_is_refused_before_any_point_runs(tmp_path: Path) -> None:
    run_sweep(plan(tmp_path, ["train.seed=1,2"]), FakeTrainer())
    changed = FakeTrainer()
    with pytest.raises(FinsentError) as err:
        run_sweep(plan(tmp_path, ["train.seed=1,2"], ["model.dropout=0.3"]), changed)
    assert "model.dropout" in err.value.message and "--fresh" in err.value.message and changed.calls == []

    longer = FakeTrainer()  # more epochs: the finished points run again (their runs continue)
    run_sweep(plan(tmp_path, ["train.seed=1,2"], ["train.epochs=3"]), longer)
    assert [fresh for _, fresh in longer.calls] == [False, False]


def test_a_started_point_with_another_recipe_is_refused_before_any_point_runs(tmp_path: Path) -> None:
    p = plan(tmp_path, ["train.seed=1,2"])
    with pytest.raises(KeyboardInterrupt):
        run_sweep(p, FakeTrainer(interrupt_at=1))
    checkpoint = p.sweep_dir / "seed=1" / "checkpoints" / "step-2"
    checkpoint.mkdir(parents=True)
    (checkpoint / "training_state.pt").write_bytes(b"")  # what makes a checkpoint complete
    changed = FakeTrainer()
    with pytest.raises(FinsentError) as err:
        run_sweep(plan(tmp_path, ["train.seed=1,2"], ["optim.weight_decay=0.1"]), changed)
    assert "seed=1 (optim.weight_decay)" in err.value.message and changed.calls == []
    same = FakeTrainer()
    run_sweep(p, same)
    assert same.calls == [("seed=1", False), ("seed=2", False)]


# ---------------------------------------------------------------------------------------------- memory


def test_peak_memory_sees_an_allocation_inside_the_block() -> None:
    with PeakMemory() as idle:
        pass
    with PeakMemory() as busy:
        blob = b"x" * (256 << 20)  # written, so every page is resident
    del blob
    assert idle.mib > 0
    assert busy.mib > idle.mib + 200


def test_peak_memory_falls_back_to_getrusage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep_mod, "_rss_bytes", lambda: None)
    with PeakMemory() as peak:
        pass
    assert peak.mib > 0


def test_peak_memory_can_be_used_twice() -> None:
    meter = PeakMemory()
    with meter:
        blob = b"x" * (128 << 20)
    del blob
    first = meter.mib
    with meter:
        pass
    assert 0 < meter.mib < first


def test_a_failing_point_is_named_in_the_error(tmp_path: Path) -> None:
    p = plan(tmp_path, ["train.seed=1,2"])

    class Fails(FakeTrainer):
        def __call__(self, cfg: FinetuneRecipe, fresh: bool) -> Any:
            if cfg.train.seed == 2:
                raise FinsentError("model.backbone: cannot load 'x'", exit_code=1)
            return super().__call__(cfg, fresh)

    with pytest.raises(FinsentError) as err:
        run_sweep(p, Fails())
    assert err.value.message == "sweep point 2/2 (seed=2): model.backbone: cannot load 'x'"
    assert [r["point"] for r in json.loads((p.sweep_dir / "sweep.json").read_text())["rows"]] == ["seed=1"]
