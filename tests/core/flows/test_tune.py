"""`finsent tune` (core.flows.tune): the plan, the study, pruning, resuming, sharing, and the loop's hook.

Most tests train nothing: a fake trainer turns a trial's values into a made-up validation curve, so the
study logic runs in milliseconds. The loop hook and the CLI are tested with the tiny BERT.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import optuna
import pytest
import yaml

from finsent_cli.config.finetune import FinetuneRecipe
from finsent_cli.config.loader import load_recipe
from finsent_cli.core.flows.tune import (
    BEST_RECIPE,
    STUDY_FILE,
    TRIALS_CSV,
    distributions,
    open_study,
    plan_tune,
    run_tune,
)
from finsent_cli.core.progress import NullReporter
from finsent_cli.errors import FinsentError, RecipeError
from tests.finetune_helpers import micro_recipe
from tests.helpers import HANG_GUARD_S, run_cli

SPACE = """tune:
  trials: 6
  pruner: none
  startup_trials: 2
  space:
    optim.lr: {low: 1.0e-5, high: 1.0e-2, log: true}
    train.batch_size: [4, 8]
    model.adapter.target_modules: [[query], [query, value]]
"""


@dataclasses.dataclass
class FakeResult:
    final: dict
    seconds: float
    run_dir: Path


class FakeTrainer:
    """Validation macro-F1 peaks at lr = 1e-3; reports ``evals`` evaluations rising to it."""

    def __init__(self, evals: int = 3, stop_at: tuple[int, int] | None = None) -> None:
        self.evals, self.stop_at = evals, stop_at
        self.calls: list[tuple[Path, dict, list[int]]] = []

    @staticmethod
    def score(cfg) -> float:
        return 0.9 - 0.1 * (math.log10(cfg.optim.lr) + 3) ** 2

    def __call__(self, cfg, on_evaluate) -> FakeResult:
        run_dir = Path(cfg.output_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        done = run_dir / "evals.json"
        start = json.loads(done.read_text()) if done.exists() else 0  # a resumed run continues its evaluations
        seen = []
        for n in range(start + 1, self.evals + 1):
            if self.stop_at == (len(self.calls), n):
                self.calls.append((run_dir, cfg.model_dump(), seen))
                raise KeyboardInterrupt
            on_evaluate(n, {"macro_f1": self.score(cfg) * n / self.evals, "loss": 1.0 / n})
            seen.append(n)
            done.write_text(json.dumps(n))
        self.calls.append((run_dir, cfg.model_dump(), seen))
        return FakeResult({"valid": {"macro_f1": self.score(cfg)}, "test": {"macro_f1": 0.0}}, 0.1, run_dir)


class BarrierTrainer(FakeTrainer):
    """A :class:`FakeTrainer` for two worker processes: every trial waits until both workers hold a trial of
    their own, a barrier on an event (a file per worker in ``folder``), not a time, so a worker that takes a
    minute to import on a loaded machine still gets its share. The guard only turns a hang into a failure."""

    def __init__(self, folder: str | Path, workers: int = 2) -> None:
        super().__init__()
        self.folder, self.workers = Path(folder), workers

    def __call__(self, cfg, on_evaluate) -> FakeResult:
        (self.folder / f"started-{os.getpid()}").touch()
        deadline = time.monotonic() + HANG_GUARD_S
        while len(list(self.folder.glob("started-*"))) < self.workers:
            if time.monotonic() > deadline:
                sys.exit("the other worker never claimed a trial")
            time.sleep(0.05)
        return super().__call__(cfg, on_evaluate)


@pytest.fixture
def recipe(tmp_path: Path, tiny_bert: Path) -> Path:
    path = micro_recipe(tmp_path, tiny_bert, name="study", extra=SPACE)
    path.write_text(path.read_text().replace("max_length: 24,", "max_length: 24, adapter: {kind: lora, r: 4},"))
    return path


def _plan(recipe: Path, *overrides: str):
    return plan_tune(recipe, FinetuneRecipe, list(overrides))


def test_plan_checks_every_end_and_choice(recipe: Path) -> None:
    plan = _plan(recipe)
    assert plan.metric == "macro_f1" and plan.direction == "maximize"
    assert plan.study_dir == recipe.parent / "study"
    with pytest.raises(RecipeError) as err:
        _plan(
            recipe,
            "tune.space={optim.lrr: {low: 0.1, high: 0.2}, train.epochs: {low: 0, high: 3}, model.pooling: [mean, maxx]}",
        )
    problems = err.value.problems
    assert any("tune.space.optim.lrr: optim.lrr is not a recipe key (did you mean 'optim.lr'?)" in p for p in problems)
    assert any(
        "train.epochs: Input should be greater than or equal to 1 (got 0) (tune.space.train.epochs = 0)" in p
        for p in problems
    )
    assert any("model.pooling" in p and "(tune.space.model.pooling = 'maxx')" in p for p in problems)
    assert len(problems) == 3


def test_plan_refuses_bad_spaces_and_folders(recipe: Path, tmp_path: Path) -> None:
    bad = {
        "tune.space={optim.lr: {low: 0.1, high: 0.01}}": "low must be below high",
        "tune.space={optim.lr: {low: 0, high: 0.01, log: true}}": "log: true needs low > 0",
        "tune.space={output_dir: [a, b]}": "output_dir cannot be tuned",
        "tune.space={train.epochs: [2, 2]}": "choice 2 is given twice",
        "tune.timeout=soon": "expected a duration such as 90s, 45m or 2h",
        "tune.metric=f1": "tune.metric: unknown validation metric 'f1'",
        "tune.pruner=asha": "tune.pruner",
        "tune.grace_period=30s": "grace_period (30 s) must be longer than heartbeat_interval (60 s)",
        "tune.storage=nonsense": "tune.storage: 'nonsense' is not a database URL",
    }
    for override, message in bad.items():
        with pytest.raises(RecipeError) as err:
            _plan(recipe, override)
        assert message in str(err.value), override
    with pytest.raises(FinsentError, match="has no tune: section"):
        _plan(recipe, "tune=null")
    run_dir = tmp_path / "a_run"
    run_dir.mkdir()
    (run_dir / "recipe.yaml").write_text("x: 1\n")
    with pytest.raises(FinsentError, match="is a run folder; give the study its own folder"):
        _plan(recipe, f"output_dir={run_dir}")


def test_a_study_runs_writes_the_best_recipe_and_grows_on_rerun(recipe: Path) -> None:
    trainer = FakeTrainer()
    result = run_tune(_plan(recipe), trainer, trials=4)
    study_dir = recipe.parent / "study"
    assert (study_dir / STUDY_FILE).is_file() and result.ran == 4
    assert [r["trial"] for r in result.rows] == [0, 1, 2, 3] and all(r["state"] == "complete" for r in result.rows)
    assert [c[0].name for c in trainer.calls] == ["trial-0000", "trial-0001", "trial-0002", "trial-0003"]
    # each trial's recipe has its values, its own folder and no tune section; lists of choices decoded
    for (run_dir, dumped, seen), row in zip(trainer.calls, result.rows, strict=True):
        assert dumped["optim"]["lr"] == pytest.approx(row["optim.lr"]) and dumped["tune"] is None
        assert dumped["model"]["adapter"]["target_modules"] == row["model.adapter.target_modules"]
        assert seen == [1, 2, 3] and Path(dumped["output_dir"]) == run_dir
    best = max(result.rows, key=lambda r: r["value"])
    assert result.best["trial"] == best["trial"]
    text = (study_dir / BEST_RECIPE).read_text(encoding="utf-8")
    assert text.startswith(f"# finsent finetune {study_dir / BEST_RECIPE}\n")
    cfg = load_recipe(study_dir / BEST_RECIPE, FinetuneRecipe)
    assert cfg.optim.lr == pytest.approx(best["optim.lr"]) and cfg.tune is None
    assert cfg.output_dir == study_dir.parent / "study-best"
    with (study_dir / TRIALS_CSV).open() as fh:
        assert fh.readline().strip().split(",")[:4] == ["trial", "state", "value", "optim.lr"]
    # a rerun with a larger study adds only the missing trials; one that is complete runs nothing
    again = run_tune(_plan(recipe), trainer, trials=6)
    assert again.ran == 2 and len(again.rows) == 6
    assert run_tune(_plan(recipe), trainer, trials=6).ran == 0


def test_a_study_refuses_another_recipe(recipe: Path) -> None:
    run_tune(_plan(recipe), FakeTrainer(), trials=1)
    with pytest.raises(FinsentError, match=r"started with another recipe \(optim.weight_decay changed\)"):
        run_tune(_plan(recipe, "optim.weight_decay=0.5"), FakeTrainer(), trials=2)
    assert run_tune(_plan(recipe, "tune.trials=3", "train.log_every=5"), FakeTrainer()).ran == 2  # length, logging


def test_the_median_pruner_stops_trailing_trials(recipe: Path) -> None:
    plan = _plan(recipe, "tune.pruner=median", "tune.startup_trials=1", "tune.sampler=random")
    result = run_tune(plan, FakeTrainer(evals=4), trials=8)
    states = [r["state"] for r in result.rows]
    assert "pruned" in states and states[0] == "complete"
    for r in result.rows:
        assert r["evaluations"] == 4 if r["state"] == "complete" else 1 <= r["evaluations"] < 4
    assert result.best["state"] == "complete"


def test_an_interrupted_trial_resumes_in_its_folder(recipe: Path) -> None:
    plan = _plan(recipe)
    trainer = FakeTrainer(stop_at=(1, 2))  # the second trial is interrupted before its second evaluation
    with pytest.raises(KeyboardInterrupt):
        run_tune(plan, trainer, trials=3)
    stopped_dir, stopped_cfg, _ = trainer.calls[1]
    study = open_study(plan)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "WAITING"]
    trainer.stop_at = None
    result = run_tune(_plan(recipe), trainer, trials=3)
    resumed_dir, resumed_cfg, seen = trainer.calls[2]
    assert resumed_dir == stopped_dir and resumed_cfg == stopped_cfg and seen == [2, 3]
    # trial numbers are Optuna's: the rerun of trial 1 (Optuna's trial 2) keeps its number and folder
    assert [r["trial"] for r in result.rows] == [0, 1, 3] and all(r["state"] == "complete" for r in result.rows)
    assert result.rows[1]["evaluations"] == 3  # the first attempt's evaluation was carried over


def _silence(plan, trial_id: int) -> None:
    """Make a running trial's last heartbeat an hour old, as if its process died then (no waiting)."""
    import sqlite3

    with sqlite3.connect(plan.db_path) as db:
        db.execute("UPDATE trial_heartbeats SET heartbeat = datetime('now', '-1 hour') WHERE trial_id = ?", (trial_id,))


def test_a_trial_whose_heartbeat_stopped_is_resumed_in_its_folder(recipe: Path) -> None:
    plan = _plan(recipe)
    run_tune(plan, FakeTrainer(), trials=1)
    study = open_study(plan)
    # a trial of a process that died (on any machine: no process id is looked at) after one evaluation and
    # its checkpoint (evals.json stands for it), its heartbeat then stopped
    orphan = study.ask(fixed_distributions=distributions(plan.tune))
    orphan.set_user_attr("run_dir", str(plan.study_dir / "trial-0001"))
    orphan.set_user_attr("heartbeat", 60.0)
    orphan.report(0.1, 1)
    (plan.study_dir / "trial-0001").mkdir()
    (plan.study_dir / "trial-0001" / "evals.json").write_text("1")
    study._storage.record_heartbeat(orphan._trial_id)
    _silence(plan, orphan._trial_id)
    trainer, reporter = FakeTrainer(), NullReporter()
    result = run_tune(_plan(recipe), trainer, reporter, trials=2)
    assert [c[0].name for c in trainer.calls] == ["trial-0001"]
    assert trainer.calls[0][1]["optim"]["lr"] == pytest.approx(orphan.params["optim.lr"])  # the orphan's values
    assert trainer.calls[0][2] == [2, 3]  # from its last checkpoint on
    assert any("trial 1: no heartbeat from its process" in m and "queued to resume" in m for m in reporter.messages)
    # one row per logical trial: the dead attempt is hidden behind its retry, which carries its evaluation
    assert [r["trial"] for r in result.rows] == [0, 1] and result.rows[1]["state"] == "complete"
    assert result.rows[1]["evaluations"] == 3
    retry = open_study(plan).trials[-1]
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == orphan.number == 1
    assert not [t for t in threading.enumerate() if t.name.startswith("heartbeat-")]  # every beat stopped


def test_a_trial_that_keeps_dying_is_left_failed(recipe: Path) -> None:
    plan = _plan(recipe)
    run_tune(plan, FakeTrainer(), trials=1)
    study = open_study(plan)
    orphan = study.ask(fixed_distributions=distributions(plan.tune))
    study._storage.set_trial_system_attr(orphan._trial_id, "failed_trial", 1)
    study._storage.set_trial_system_attr(orphan._trial_id, "retry_history", [1, 2, 3])  # its fourth death
    study._storage.record_heartbeat(orphan._trial_id)
    _silence(plan, orphan._trial_id)
    reporter = NullReporter()
    result = run_tune(_plan(recipe), FakeTrainer(), reporter, trials=2)
    assert any("trial 1: its process" in m and "died 4 times; left failed" in m for m in reporter.warnings)
    assert [r["state"] for r in result.rows] == ["complete", "fail", "complete"]


def test_a_running_trial_beats_and_joins_the_wandb_group(recipe: Path) -> None:
    """A heartbeat is recorded during training, not only when the trial starts; the trial's W&B run is told
    the study's group."""
    import sqlite3

    from finsent_cli.core.training.tracking import current_group

    plan = _plan(recipe, "tune.heartbeat_interval=1s", "tune.grace_period=30s")
    seen = []

    def beating(cfg, on_evaluate):
        seen.append(current_group())
        with sqlite3.connect(plan.db_path) as db:
            read = lambda: db.execute("SELECT heartbeat FROM trial_heartbeats").fetchall()
            first = read()
            deadline = time.monotonic() + HANG_GUARD_S
            while read() == first:  # the database's clock has one-second steps
                assert time.monotonic() < deadline, "no heartbeat during training"
                time.sleep(0.1)
        return FakeResult({"valid": {"macro_f1": 0.5}}, 0.1, Path(cfg.output_dir))

    run_tune(plan, beating, trials=1)
    assert seen == ["study"]  # the default study is named after its folder for W&B
    assert current_group() is None
    assert not [t for t in threading.enumerate() if t.name.startswith("heartbeat-")]


def test_tune_refuses_to_run_as_several_ranks(recipe: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(FinsentError, match="runs each trial in one process") as err:
        run_tune(_plan(recipe), FakeTrainer(), trials=1)
    assert err.value.exit_code == 2 and not (recipe.parent / "study" / STUDY_FILE).exists()


def test_a_failing_first_trial_stops_the_study_with_its_error(recipe: Path) -> None:
    def broken(cfg, on_evaluate):
        raise FinsentError("data.train: unreadable")

    with pytest.raises(FinsentError, match=r"trial 0 \(lr=.*\): data.train: unreadable"):
        run_tune(_plan(recipe), broken, trials=2)


def test_two_processes_share_one_study(recipe: Path, tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(
        textwrap.dedent(f"""
        import os, sys, time
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).resolve().parents[3])!r})
        from tests.core.flows.test_tune import BarrierTrainer
        from finsent_cli.config.finetune import FinetuneRecipe
        from finsent_cli.core.flows.tune import plan_tune, run_tune

        run_tune(plan_tune({str(recipe)!r}, FinetuneRecipe), BarrierTrainer({str(tmp_path)!r}), trials=8)
    """)
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    logs = [(tmp_path / f"worker-{i}.log").open("w") for i in range(2)]  # files: a full pipe cannot block a worker
    procs = [subprocess.Popen([sys.executable, str(script)], env=env, stderr=log) for log in logs]
    deadline = time.monotonic() + HANG_GUARD_S
    while time.monotonic() < deadline:
        codes = [p.poll() for p in procs]
        if None not in codes or any(c not in (None, 0) for c in codes):  # done, or one failed: the other would wait at the barrier
            break
        time.sleep(0.1)
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p, log in zip(procs, logs):
        p.wait()
        log.close()
    errors = [(tmp_path / f"worker-{i}.log").read_text() for i in range(2)]
    assert [p.returncode for p in procs] == [0, 0], errors
    study = open_study(_plan(recipe))
    trials = study.trials
    assert 8 <= len(trials) <= 9  # a race at the end may add one
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert len({t.user_attrs["pid"] for t in trials}) == 2  # both did some of the work
    folders = [t.user_attrs["run_dir"] for t in trials]
    assert len(set(folders)) == len(folders)
    values = [t.params["optim.lr"] for t in trials]
    assert len(set(values)) == len(values)  # the two processes do not draw the same values


def test_the_loop_reports_each_evaluation_and_a_pruned_trial_stops(tmp_path: Path, tiny_bert: Path) -> None:
    from finsent_cli.core.flows.finetune import run_finetune

    cfg = load_recipe(micro_recipe(tmp_path, tiny_bert, extra="train: {epochs: 3, batch_size: 16}\n"), FinetuneRecipe)
    calls = []

    def prune_at_two(n: int, metrics: dict) -> None:
        calls.append((n, sorted(metrics)))
        if n == 2:
            raise optuna.TrialPruned("pruned after evaluation 2")

    with pytest.raises(optuna.TrialPruned):
        run_finetune(cfg, on_evaluate=prune_at_two)
    assert [n for n, _ in calls] == [1, 2]
    assert {"accuracy", "macro_f1", "loss"} <= set(calls[0][1])
    events = [json.loads(line) for line in (cfg.output_dir / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "eval"] == [3, 6]


def test_tune_cli_on_the_tiny_bert(recipe: Path) -> None:
    res = run_cli("tune", str(recipe), "--dry-run")
    assert res.exit_code == 0, res.stderr
    assert "optim.lr" in res.stdout and "1e-05 .. 0.01 (log)" in res.stdout
    res = run_cli("tune", str(recipe), "--trials", "2", "train.epochs=1", "-q")
    assert res.exit_code == 0, res.stderr
    study_dir = recipe.parent / "study"
    out = res.stdout.replace("\n", "")  # the console wraps at 80 columns
    assert "best: trial" in out and "best_recipe.yaml (ready to run)" in out, res.stdout
    for n in (0, 1):
        assert (study_dir / f"trial-{n:04d}" / "best" / "finsent.json").is_file()
    best = yaml.safe_load((study_dir / BEST_RECIPE).read_text())
    assert best["tune"] is None and best["train"]["epochs"] == 1
    res = run_cli("finetune", str(study_dir / BEST_RECIPE), "--dry-run")
    assert res.exit_code == 0, res.stderr
    res = run_cli("tune", str(recipe), "--timeout", "soon")
    assert res.exit_code == 2 and "--timeout: expected a duration" in res.stderr


def test_tune_a_pretraining_recipe(tmp_path: Path, small_corpus: Path, small_tokenizer: Path) -> None:
    from tests.pretrain_helpers import pretrain_recipe

    space = "tune: {trials: 2, pruner: none, space: {optim.lr: {low: 1.0e-4, high: 1.0e-2, log: true}}}\n"
    recipe = pretrain_recipe(tmp_path, small_corpus, small_tokenizer, name="pt", extra=space)
    res = run_cli("tune", str(recipe), "-q")
    assert res.exit_code == 0, res.stderr
    rows = list(csv.DictReader((tmp_path / "pt" / TRIALS_CSV).open()))
    assert [r["state"] for r in rows] == ["complete", "complete"]
    for r in rows:  # each trial's score is its best held-out loss
        evals = [json.loads(x) for x in (Path(r["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
        assert float(r["value"]) == pytest.approx(min(e["heldout_loss"] for e in evals if e["event"] == "eval"))
        assert r["evaluations"] == "2"
    best = (tmp_path / "pt" / BEST_RECIPE).read_text()
    assert best.startswith(f"# finsent pretrain {tmp_path / 'pt' / BEST_RECIPE}\n")
    assert "(minimize" not in res.stdout.replace("\n", "")
    res = run_cli("tune", str(recipe), "tune.metric=heldout_accuracy", "--dry-run")
    assert res.exit_code == 2 and "tune.metric: a pretraining trial is scored by train.metric" in res.stderr


def test_failures_nan_and_crashes(recipe: Path) -> None:
    calls = []

    def flaky(cfg, on_evaluate):
        calls.append(cfg.output_dir)
        if len(calls) == 1:
            return FakeResult({"valid": {"macro_f1": 0.5}}, 0.1, Path(cfg.output_dir))
        if len(calls) == 2:
            return FakeResult({"valid": {"macro_f1": float("nan")}}, 0.1, Path(cfg.output_dir))
        raise FinsentError("data.train: gone")

    # after a complete trial a failure (a NaN score, an error) is recorded and the study goes on, until
    # MAX_FAILURES fail in a row
    with pytest.raises(FinsentError, match=r"trial 3 \(.*\): data.train: gone"):
        run_tune(_plan(recipe), flaky, trials=6)
    rows = list(csv.DictReader((recipe.parent / "study" / TRIALS_CSV).open()))
    assert [r["state"] for r in rows] == ["complete", "fail", "fail", "fail"]
    assert "diverged" in rows[1]["error"] and rows[2]["error"] == "data.train: gone"

    def crash(cfg, on_evaluate):
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        run_tune(_plan(recipe), crash, trials=6)
    study = open_study(_plan(recipe))
    assert study.trials[-1].state.name == "FAIL" and study.trials[-1].user_attrs["error"] == "ValueError: a bug"
    assert not [t for t in study.trials if t.state.name in ("RUNNING", "WAITING")]  # not queued again


def test_planning_catches_what_trials_would_refuse(recipe: Path) -> None:
    with pytest.raises(RecipeError, match="train.epochs"):
        _plan(recipe, "tune.space={train.epochs: {type: float, low: 1, high: 5}}")
    with pytest.raises(RecipeError, match="whole numbers for low, high and step"):
        _plan(recipe, "tune.space={train.epochs: {type: int, low: 1, high: 5, step: 0.5}}")
    with pytest.raises(RecipeError, match="mixed_precision cannot be tuned"):
        _plan(recipe, "tune.space={train.mixed_precision: [no, bf16]}")


def test_the_table_shows_a_queued_trial(recipe: Path) -> None:
    from finsent_cli.commands.tune import render_result

    with pytest.raises(KeyboardInterrupt):
        run_tune(_plan(recipe), FakeTrainer(stop_at=(1, 2)), trials=3)
    result = run_tune(_plan(recipe), FakeTrainer(), timeout=1e-9)
    assert [r["state"] for r in result.rows] == ["complete", "waiting"]
    assert result.rows[1]["optim.lr"] is not None
    render_result(result)


def test_processes_opening_a_new_study_at_once_create_it_once(recipe: Path, tmp_path: Path) -> None:
    """Four processes released together onto a folder with no study.db: one creates the tables, the others
    open them (before the lock, two could both create them: "table studies already exists")."""
    go = tmp_path / "go"
    script = tmp_path / "opener.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from finsent_cli.config.finetune import FinetuneRecipe
        from finsent_cli.core.flows.tune import open_study, plan_tune

        plan = plan_tune({str(recipe)!r}, FinetuneRecipe)
        Path({str(tmp_path)!r}, f"ready-{{sys.argv[1]}}").touch()
        while not Path({str(go)!r}).exists():
            time.sleep(0.005)
        print(open_study(plan).study_name)
    """))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    procs = [subprocess.Popen([sys.executable, str(script), str(i)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(4)]
    deadline = time.monotonic() + HANG_GUARD_S
    while len(list(tmp_path.glob("ready-*"))) < 4 and time.monotonic() < deadline and all(p.poll() is None for p in procs):
        time.sleep(0.02)
    go.touch()
    outs = [p.communicate(timeout=HANG_GUARD_S) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err[-2000:] for _, err in outs]
    assert len({out for out, _ in outs}) == 1
