"""`finsent tune --storage`: a study in a real database, shared by processes (and machines); dead trials found
by their heartbeat and resumed by another process; the one-line errors of a storage that cannot work.

The PostgreSQL tests need a server: ``FINSENT_TEST_POSTGRES`` (a SQLAlchemy URL; by default
postgresql://finsent:finsent@127.0.0.1:5432/finsent_test, which ``.ci/run`` creates and exports); without one
they skip, saying why. Each test works in a study of its own name, deleted afterwards.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from finsent_cli.config.finetune import FinetuneRecipe
from finsent_cli.core.flows.tune import STUDY_FILE, STUDY_NAME, TRIALS_CSV, open_study, plan_tune, run_tune
from finsent_cli.core.studies import check_storage, driver_url, masked
from finsent_cli.errors import FinsentError, RecipeError
from tests.core.flows.test_tune import SPACE, FakeTrainer
from tests.finetune_helpers import micro_recipe
from tests.helpers import HANG_GUARD_S, REPO, assert_one_line_error, cli_env, run_cli

POSTGRES_DEFAULT = "postgresql://finsent:finsent@127.0.0.1:5432/finsent_test"


@pytest.fixture(scope="module")
def postgres() -> str:
    """The URL of a PostgreSQL database the tests may write to; skips when there is none."""
    import sqlalchemy

    url = os.environ.get("FINSENT_TEST_POSTGRES") or POSTGRES_DEFAULT
    try:
        check_storage(url, "FINSENT_TEST_POSTGRES")
        engine = sqlalchemy.create_engine(driver_url(url), connect_args={"connect_timeout": 5})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - whatever the reason, the test skips saying it
        said = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        pytest.skip(
            f"no PostgreSQL server at {masked(url)} ({said}); .ci/run starts one, or set "
            "FINSENT_TEST_POSTGRES=postgresql://USER:PASSWORD@HOST:PORT/DB"
        )
    return url


@pytest.fixture
def study_name(postgres: str) -> Iterator[str]:
    """A study name no other test uses; the study is deleted after the test."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    try:
        optuna.delete_study(study_name=name, storage=driver_url(postgres))
    except KeyError:
        pass


@pytest.fixture
def recipe(tmp_path: Path, tiny_bert: Path) -> Path:
    path = micro_recipe(tmp_path, tiny_bert, name="study", extra=SPACE)
    path.write_text(path.read_text().replace("max_length: 24,", "max_length: 24, adapter: {kind: lora, r: 4},"))
    return path


def _wait(condition, what: str, procs: list[subprocess.Popen] = ()) -> None:  # type: ignore[assignment]
    """Wait for an event; fail if a process it depends on ended first, or after the hang guard."""
    deadline = time.monotonic() + HANG_GUARD_S
    while not condition():
        ended = [p.args for p in procs if p.poll() is not None]
        assert not ended, f"{what}: a process ended first: {ended}"
        assert time.monotonic() < deadline, f"hung waiting for {what}"
        time.sleep(0.05)


# ------------------------------------------------------------------------- storage choice, no server needed


def test_storage_and_study_name_defaults_and_precedence(recipe: Path, tmp_path: Path) -> None:
    plan = plan_tune(recipe, FinetuneRecipe)
    assert plan.study_name == STUDY_NAME and plan.storage == f"sqlite:///{(plan.study_dir / STUDY_FILE).resolve()}"
    assert plan.shown_storage == str(plan.study_dir / STUDY_FILE)
    # another database: the study is named after the output folder, so machines running the recipe meet
    other = f"sqlite:///{tmp_path / 'shared.db'}"
    plan = plan_tune(recipe, FinetuneRecipe, [f"tune.storage={other}"])
    assert (plan.storage, plan.study_name, plan.group) == (other, "study", "study")
    # the flag wins over the recipe; --study-name over both
    flag = f"sqlite:///{tmp_path / 'flag.db'}"
    plan = plan_tune(recipe, FinetuneRecipe, [f"tune.storage={other}"], storage=flag, study_name="lr-search")
    assert (plan.storage, plan.study_name) == (flag, "lr-search")
    result = run_tune(plan, FakeTrainer(), trials=2)
    assert [r["state"] for r in result.rows] == ["complete", "complete"]
    assert (tmp_path / "flag.db").is_file() and not (plan.study_dir / STUDY_FILE).exists()
    assert optuna.load_study(study_name="lr-search", storage=flag).user_attrs["metric"] == "macro_f1"


def test_storage_urls_that_cannot_work_are_one_line_before_training(recipe: Path) -> None:
    study_dir = recipe.parent / "study"
    bad = {
        "nonsense": ("--storage: 'nonsense' is not a database URL", 2),
        "postgresql://finsent:s3cret@db:notaport/x": ("is not a database URL", 2),
        "oracle2://finsent:s3cret@db/x": ("unknown kind of database 'oracle2'", 2),
        "postgresql+pg8000://finsent:s3cret@db/x": ("needs the Python package pg8000, which is not installed", 2),
        "sqlite://": ("is an in-memory database", 2),
    }
    for url, (message, code) in bad.items():
        for dry in ([], ["--dry-run"]):  # a dry run checks the URL too
            res = run_cli("tune", str(recipe), "--storage", url, *dry)
            line = assert_one_line_error(res, message, code=code)
            assert "s3cret" not in res.stderr + res.stdout, line
    # in the recipe: reported with the recipe's other problems, naming the file and key
    res = run_cli("tune", str(recipe), "tune.storage=nonsense", "--dry-run")
    assert_one_line_error(res, f"{recipe}: tune.storage: 'nonsense' is not a database URL", code=2)
    # a server that does not answer: one line naming host:port, the password masked, nothing trained
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed: nothing listens there
    res = run_cli("tune", str(recipe), "--storage", f"postgresql://finsent:s3cret@127.0.0.1:{port}/finsent_test")
    line = assert_one_line_error(res, f"127.0.0.1:{port}/finsent_test", "postgresql://finsent:***@", code=1)
    assert "s3cret" not in res.stderr + res.stdout and "refused" in line, line
    assert not study_dir.exists()  # nothing trained, no empty folder left


def test_a_missing_postgres_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("psycopg", "psycopg2"):
        monkeypatch.setitem(sys.modules, module, None)  # not installed
    with pytest.raises(
        FinsentError, match=r"needs the Python package psycopg.*pip install -c constraints.txt -e '\.\[postgres\]'"
    ) as err:
        check_storage("postgresql://finsent:s3cret@db/x")
    assert "s3cret" not in err.value.message and err.value.exit_code == 2


def test_a_bare_postgresql_url_uses_the_installed_driver() -> None:
    pytest.importorskip("psycopg2")
    # SQLAlchemy 2.1 reads postgresql:// as psycopg 3; the postgres extra installs psycopg2
    url = driver_url("postgresql://finsent:p%40ss@db:5432/x")
    try:
        import psycopg  # noqa: F401

        assert url == "postgresql://finsent:p%40ss@db:5432/x"
    except ImportError:
        assert url == "postgresql+psycopg2://finsent:p%40ss@db:5432/x"  # the password's escaping kept
    assert driver_url("postgresql+pg8000://u@db/x") == "postgresql+pg8000://u@db/x"


def test_heartbeat_settings_are_checked_and_part_of_the_recipe(recipe: Path) -> None:
    with pytest.raises(RecipeError, match=r"grace_period \(2 s\) must be longer than heartbeat_interval \(5 s\)"):
        plan_tune(recipe, FinetuneRecipe, ["tune.heartbeat_interval=5s", "tune.grace_period=2"])
    plan = plan_tune(recipe, FinetuneRecipe, ["tune.heartbeat_interval=1m"])
    assert (plan.tune.heartbeat_interval, plan.tune.grace) == (60.0, 120.0)
    run_tune(plan, FakeTrainer(), trials=1)
    # every process of a study must agree on them: another process would take live trials for dead
    with pytest.raises(FinsentError, match=r"another recipe \(tune.heartbeat_interval changed\)"):
        open_study(plan_tune(recipe, FinetuneRecipe, ["tune.heartbeat_interval=2s"]))


# ---------------------------------------------------------------------------------------- PostgreSQL


def test_two_machines_share_one_postgres_study(recipe: Path, tmp_path: Path, postgres: str) -> None:
    """Two processes with their own output folders (two machines) and the same recipe meet in the study
    named after the folder; each trains a share of it, with values of its own."""
    name = f"study-{uuid.uuid4().hex[:12]}"  # the folder's name is the study's: unique to this test
    script = tmp_path / "worker.py"
    script.write_text(
        textwrap.dedent(f"""
        import os, sys, time
        from pathlib import Path
        from tests.core.flows.test_tune import BarrierTrainer
        from finsent_cli.config.finetune import FinetuneRecipe
        from finsent_cli.core.flows.tune import plan_tune, run_tune

        machine = sys.argv[1]
        plan = plan_tune({str(recipe)!r}, FinetuneRecipe, [f"output_dir={tmp_path}/{{machine}}/{name}"],
                         storage={postgres!r})
        print(plan.study_name)
        run_tune(plan, BarrierTrainer({str(tmp_path)!r}), trials=6)
    """)
    )
    env = {**cli_env(), "PYTHONPATH": str(REPO)}
    logs = [(tmp_path / f"worker-{m}.log").open("w") for m in "ab"]
    procs = [
        subprocess.Popen([sys.executable, str(script), m], env=env, stdout=log, stderr=subprocess.STDOUT)
        for m, log in zip("ab", logs, strict=True)
    ]
    try:
        for p in procs:
            p.wait(timeout=HANG_GUARD_S)
    finally:
        for p, log in zip(procs, logs, strict=True):
            if p.poll() is None:
                p.kill()
            log.close()
        out = [(tmp_path / f"worker-{m}.log").read_text() for m in "ab"]
    try:
        assert [p.returncode for p in procs] == [0, 0], out
        study = optuna.load_study(study_name=name, storage=driver_url(postgres))
        assert [o.splitlines()[0] for o in out] == [name, name]
        trials = study.trials
        assert 6 <= len(trials) <= 7  # a race at the end may add one
        assert all(t.state.name == "COMPLETE" for t in trials)
        pids = {t.user_attrs["pid"] for t in trials}
        assert len(pids) == 2  # both machines did some of the work
        for machine in "ab":  # each machine's trials in its own folder; its table shows the whole study
            mine = [t for t in trials if t.user_attrs["run_dir"].startswith(f"{tmp_path}/{machine}/")]
            assert mine and all(Path(t.user_attrs["run_dir"]).is_dir() for t in mine)
            rows = list(csv.DictReader((tmp_path / machine / name / TRIALS_CSV).open()))
            assert len(rows) >= len(mine)
        values = [t.params["optim.lr"] for t in trials]
        assert len(set(values)) == len(values)
    finally:
        optuna.delete_study(study_name=name, storage=driver_url(postgres))


def test_a_killed_trial_is_resumed_by_the_other_tune_process(
    recipe: Path, tmp_path: Path, postgres: str, study_name: str
) -> None:
    """Two real `finsent tune` processes on one PostgreSQL study: B is frozen once its trial saved a
    checkpoint (its heartbeat stops), A starts, then B is killed -9; A takes B's trial over in B's folder,
    from that checkpoint, and the study holds one row per trial."""
    study_dir = recipe.parent / "study"
    cmd = [
        sys.executable, "-m", "finsent_cli", "tune", str(recipe), "--storage", postgres, "--study-name", study_name,
        "--trials", "2", "train.epochs=3", "train.eval_every=epoch", "tune.heartbeat_interval=1",
        "tune.grace_period=3", "tune.space={optim.lr: {low: 1.0e-4, high: 1.0e-2, log: true}}",
    ]  # fmt: skip
    logs = {k: (tmp_path / f"{k}.log").open("w") for k in "ab"}
    b = subprocess.Popen(cmd, env=cli_env(), stdout=logs["b"], stderr=subprocess.STDOUT)
    a = None
    try:
        _wait(lambda: (study_dir / "trial-0000" / "last").exists(), "B's first checkpoint", [b])
        os.kill(b.pid, signal.SIGSTOP)  # frozen: its heartbeat stops as a dead process's would
        a = subprocess.Popen(cmd, env=cli_env(), stdout=logs["a"], stderr=subprocess.STDOUT)
        study = optuna.load_study(study_name=study_name, storage=driver_url(postgres))
        _wait(lambda: any(t.user_attrs.get("pid") == a.pid for t in study.trials), "A's first trial", [a])
        b.kill()  # kill -9
        b.wait(timeout=HANG_GUARD_S)
        assert a.wait(timeout=HANG_GUARD_S) == 0, (tmp_path / "a.log").read_text()[-3000:]
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()
        for log in logs.values():
            log.close()
    out = (tmp_path / "a.log").read_text().replace("\n", " ")
    assert b.returncode == -signal.SIGKILL
    assert f"trial 0: no heartbeat from its process ({socket.gethostname()}, pid {b.pid}) for 3 s" in out, out
    assert "resuming from" in out and "trial-0000" in out, out
    by_state = {t.number: (t.state.name, t.user_attrs["pid"], t.system_attrs.get("failed_trial")) for t in study.trials}
    assert by_state[0] == ("FAIL", b.pid, None)
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE" and retry[0].user_attrs["pid"] == a.pid
    assert retry[0].user_attrs["run_dir"] == str(study_dir / "trial-0000")
    assert retry[0].params == study.trials[0].params
    # B's evaluations before its checkpoint are kept and not trained again; the run ends at its last step
    events = [json.loads(line) for line in (study_dir / "trial-0000" / "metrics.jsonl").read_text().splitlines()]
    eval_steps = [e["step"] for e in events if e["event"] == "eval"]
    assert eval_steps == sorted(set(eval_steps)) and eval_steps[-1] == 18  # 48 examples / 8 = 6 steps an epoch
    rows = list(csv.DictReader((study_dir / TRIALS_CSV).open()))
    # one row per trial: B's dead attempt is hidden behind its retry (numbers are Optuna's: the retry took one)
    assert len(rows) == 2 and "0" in [r["trial"] for r in rows] and {r["state"] for r in rows} == {"complete"}
    assert [r["evaluations"] for r in rows if r["trial"] == "0"] == ["3"]  # the stopped attempt's carried over


def test_a_changed_recipe_is_refused_by_a_postgres_study(recipe: Path, postgres: str, study_name: str) -> None:
    open_study(plan_tune(recipe, FinetuneRecipe, storage=postgres, study_name=study_name))
    res = run_cli("tune", str(recipe), "optim.weight_decay=0.5", "--storage", postgres, "--study-name", study_name)
    line = assert_one_line_error(res, f"the study '{study_name}' was started with another recipe", code=1)
    assert "optim.weight_decay changed" in line and "finsent:***@" in line and ":finsent@" not in line
    assert not list((recipe.parent / "study").glob("trial-*"))
    # where the study lives, and its length, may change: the same study opens from another folder
    plan = plan_tune(
        recipe, FinetuneRecipe, ["output_dir=elsewhere", "tune.trials=9"], storage=postgres, study_name=study_name
    )
    assert open_study(plan).user_attrs["metric"] == "macro_f1"
