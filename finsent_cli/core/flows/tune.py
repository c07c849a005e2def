"""`finsent tune RECIPE`: search a training recipe's hyper-parameters with Optuna.

Plan (load the recipe and its ``tune:`` section, check that the recipe accepts every end and choice of the
search space and that the study's storage URL can work, report all problems at once) -> open the study
(Optuna's RDB storage: SQLite in ``<output_dir>/study.db`` by default, or any database SQLAlchemy reaches,
``--storage postgresql://...``) -> ask for trials until the study holds ``trials`` of them or the time
budget is spent. Each trial is one run of the training flow (``run_finetune``) in
``<output_dir>/trial-NNNN``; it reports its validation metric to the study after every evaluation, and the
pruner (Hyperband by default, Li et al. 2018) may stop it there. After every trial ``trials.csv`` and
``best_recipe.yaml`` (the recipe with the best trial's values, ready for ``finsent finetune``) are written
again.

Resuming: a trial stopped by Ctrl-C saves a checkpoint; the study marks it failed and queues the same
values again with a pointer to its folder, so the next ``tune`` call continues that run where it stopped.
A running trial records a heartbeat in the study (``tune.heartbeat_interval``); one whose process died
(``kill -9``, a crash, a machine gone) stops beating, and after ``tune.grace_period`` any process of the
study, on any machine, fails it and queues it again (Optuna's heartbeat and its retry callback); the retry
continues in the dead trial's folder from its last checkpoint where that folder is reachable (the same
machine, or a shared file system), else it starts over. Several ``tune`` processes share a study: each asks
it for the next trial, each draws from its own random stream, TPE's constant liar keeps them from trying
the same values, and a process whose share is done waits for the trials still running elsewhere, to take
over any that dies. SQLite serves the processes of one machine (its locks are not safe on network file
systems); a database server serves several machines, which meet in the study named after the output folder
(``--study-name`` to choose another). After Optuna's ask-and-tell interface, with the trial's run folder as
the unit of work.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pydantic
import yaml

from finsent_cli.config.finetune import CLASSIFICATION_METRICS
from finsent_cli.config.loader import load_recipe, recipe_to_yaml
from finsent_cli.config.tune import TuneCfg
from finsent_cli.core.flows.sweep import dotted_keys, is_sweep_dir, key_hint, schema_keys
from finsent_cli.core.io import atomic_write_table, atomic_write_text
from finsent_cli.core.progress import NullReporter, Reporter
from finsent_cli.core.runs import changed_keys
from finsent_cli.core.studies import Heartbeat, check_storage, is_sqlite, masked, open_storage, quiet_heartbeat_warnings
from finsent_cli.errors import FinsentError, RecipeError

M = TypeVar("M", bound=pydantic.BaseModel)

STUDY_FILE = "study.db"
TRIALS_CSV = "trials.csv"
BEST_RECIPE = "best_recipe.yaml"
STUDY_NAME = "finsent"  # the study in the default SQLite file (one study per file)
LOCK_FILE = ".study.lock"  # held while a process opens a SQLite study (its tables are created once)
MAX_RESUMES = 3  # a trial queued again this often (it keeps dying or being interrupted) is left failed
RECIPE_WAIT_S = 30.0  # how long a process joining a study waits for its creator to record the recipe
MAX_FAILURES = 3  # trials failing in a row stop the study (the problem is not in the values)
TRIAL_PREFIX = "trial-"

# Settings of a study that may change between calls: its length and logging, not what a trial means.
# Where the study lives may change too (it is recorded without its password). The heartbeat settings may not:
# every process of a study must agree on them, or one would take another's live trials for dead.
_MAY_CHANGE = (
    "output_dir", "tune.trials", "tune.timeout", "tune.storage", "tune.study_name", "train.log_every",
    "train.tensorboard", "train.wandb",
)  # fmt: skip


class TrialResult(Protocol):
    """What a trial's training returns (``FinetuneResult`` and ``PretrainResult`` fit; :func:`trial_value`
    reads its score)."""

    seconds: float
    run_dir: Path


RunTrial = Callable[[Any, Callable[[int, dict[str, float]], None]], TrialResult]
"""``(trial recipe, on_evaluate) -> result``: trains one trial, calling ``on_evaluate(n, metrics)`` after each
evaluation (``run_finetune(cfg, on_evaluate=...)``)."""


@dataclasses.dataclass
class TunePlan:
    """A validated study: the recipe, its overrides, the search space and where the study lives."""

    recipe_path: Path
    schema: type[pydantic.BaseModel]
    overrides: list[str]
    data_dir: Path | None
    cfg: Any  # the recipe as loaded (its tune section included)
    study_dir: Path
    metric: str
    direction: str  # maximize | minimize
    command: str = "finetune"  # the training command of the recipe (for best_recipe.yaml's first line)
    storage: str = ""  # SQLAlchemy URL of the study's database (default: SQLite in study_dir/study.db)
    study_name: str = STUDY_NAME

    def __post_init__(self) -> None:
        if not self.storage:
            self.storage = f"sqlite:///{self.db_path.resolve()}"

    @property
    def tune(self) -> TuneCfg:
        return self.cfg.tune

    @property
    def db_path(self) -> Path:
        return self.study_dir / STUDY_FILE

    @property
    def shown_storage(self) -> str:
        """The storage as messages show it: the SQLite file, or the URL with its password masked."""
        return str(self.db_path) if self.storage == f"sqlite:///{self.db_path.resolve()}" else masked(self.storage)

    @property
    def group(self) -> str:
        """The W&B group of the study's trials: its name (the folder's for the default SQLite study)."""
        return self.study_dir.name if self.study_name == STUDY_NAME else self.study_name


@dataclasses.dataclass
class TuneResult:
    """The study after this call: one row per trial (number order), the best row, files written."""

    study_dir: Path
    rows: list[dict[str, Any]]
    best: dict[str, Any] | None
    best_recipe: Path | None
    ran: int  # trials this call ran (resumed ones included)
    metric: str
    direction: str
    stopped: str  # why this call stopped asking for trials

    @property
    def csv_path(self) -> Path:
        return self.study_dir / TRIALS_CSV


# ------------------------------------------------------------------------------------------------- plan


def recipe_command(recipe_path: str | Path) -> str:
    """Which training command a recipe is for: ``distill`` when it names a ``teacher``, ``pretrain`` when its
    data is a ``corpus``, else ``finetune`` (which also trains QLoRA recipes). The loader reports a missing or
    unreadable file afterwards."""
    try:
        raw = yaml.safe_load(Path(recipe_path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return "finetune"
    if not isinstance(raw, dict):
        return "finetune"
    if "teacher" in raw:
        return "distill"
    return "pretrain" if isinstance(raw.get("data"), dict) and "corpus" in raw["data"] else "finetune"


def tunable(command: str) -> tuple[type[pydantic.BaseModel], Callable[..., Any]]:
    """The recipe schema of ``command`` and its training flow as ``(cfg, reporter, on_evaluate, latest_dir) ->
    result``."""
    if command == "pretrain":
        from finsent_cli.config.pretrain import PretrainRecipe
        from finsent_cli.core.flows.pretrain import run_pretrain

        # a pretraining run keeps its latest link beside its folder: inside the study folder already
        return PretrainRecipe, lambda cfg, reporter, on_evaluate, latest_dir: run_pretrain(
            cfg, reporter, on_evaluate=on_evaluate
        )
    if command == "distill":
        from finsent_cli.config.distill import DistillRecipe
        from finsent_cli.core.flows.distill import run_distill

        return DistillRecipe, lambda cfg, reporter, on_evaluate, latest_dir: run_distill(
            cfg, reporter, latest_dir=latest_dir, on_evaluate=on_evaluate
        )
    from finsent_cli.config.finetune import FinetuneRecipe
    from finsent_cli.core.flows.finetune import run_finetune

    return FinetuneRecipe, lambda cfg, reporter, on_evaluate, latest_dir: run_finetune(
        cfg, reporter, latest_dir=latest_dir, on_evaluate=on_evaluate
    )


def metrics_of(command: str) -> dict[str, str]:
    """The validation metrics a study of ``command`` may optimise, with their natural direction."""
    if command == "pretrain":
        from finsent_cli.config.pretrain import PRETRAIN_METRICS

        return PRETRAIN_METRICS
    return CLASSIFICATION_METRICS


def trial_value(result: Any, metric: str) -> float | None:
    """What a finished trial scored: its best checkpoint's validation ``metric`` (``final["valid"]`` of a
    fine-tuning run; a pretraining run's best held-out value of ``train.metric``)."""
    final = getattr(result, "final", None)
    if isinstance(final, dict):
        value = final.get("valid", {}).get(metric)
    else:
        value = getattr(result, "best_metric", None)
    return None if value is None else float(value)


def _override(key: str, value: Any) -> str:
    """``KEY=VALUE`` whose value YAML reads back as ``value`` (JSON is YAML; floats keep their exponent)."""
    return f"{key}={json.dumps(value)}"


def plan_tune(
    recipe_path: str | Path,
    schema: type[M],
    overrides: list[str] | None = None,
    data_dir: str | Path | None = None,
    command: str = "finetune",
    storage: str | None = None,
    study_name: str | None = None,
) -> TunePlan:
    """Load the recipe and check its search space and storage before anything trains.

    Every end of a numeric range and every choice is applied to the recipe on its own and validated, so a
    key that is not a recipe key (with a "did you mean"), or a value the recipe refuses, is reported now,
    not when a trial draws it.

    Args:
        recipe_path: the training recipe with its ``tune:`` section.
        schema: the recipe's schema (see :func:`tunable`).
        overrides: ``KEY=VALUE`` overrides.
        data_dir: where relative data paths are found.
        command: the recipe's training command (see :func:`recipe_command`).
        storage: a SQLAlchemy URL (``--storage``); wins over ``tune.storage``; default SQLite in the output
            folder. Only parsed here (its driver loaded): the server is reached when the study opens.
        study_name: the study's name in the storage (``--study-name``); wins over ``tune.study_name``;
            default ``finsent`` in the default SQLite file, else the output folder's name.

    Raises:
        RecipeError: every problem of the recipe and its space, one line each.
        FinsentError: no ``tune:`` section; the output folder is a file, a run folder or a sweep folder; a
            storage URL that is malformed, names an unknown database or a driver that is not installed.
    """
    recipe_path, overrides = Path(recipe_path), list(overrides or [])
    cfg = load_recipe(recipe_path, schema, overrides, data_dir)
    tune: TuneCfg | None = getattr(cfg, "tune", None)
    if tune is None:
        raise FinsentError(
            f"{recipe_path}: has no tune: section; add one with a search space, e.g. "
            "tune: {space: {optim.lr: {low: 1.0e-5, high: 3.0e-4, log: true}}} (see recipes/tune_phrasebank.yaml)",
            exit_code=2,
        )
    problems: list[str] = []
    known = [
        k
        for k in dict.fromkeys([*dotted_keys(cfg.model_dump(mode="json")), *schema_keys(schema)])
        if not k.startswith("tune")
    ]
    for key, spec in tune.space.items():
        hint = key_hint(key, known)
        if hint:
            problems.append(f"{recipe_path}: tune.space.{key}: {key} is not a recipe key (did you mean {hint}?)")
            continue
        for value in spec.values_to_check():
            try:
                load_recipe(recipe_path, schema, [*overrides, _override(key, value)], data_dir, check_paths=False)
            except RecipeError as exc:
                problems.extend(
                    f"{p.replace(' (from a command-line override)', '')} (tune.space.{key} = {value!r})"
                    for p in exc.problems
                )
    if storage is None and tune.storage:
        try:
            check_storage(tune.storage, "tune.storage")
        except FinsentError as exc:
            problems.append(f"{recipe_path}: {exc.message}")
    if problems:
        raise RecipeError(list(dict.fromkeys(problems)))
    metric, known_metrics = tune.metric or cfg.train.metric, metrics_of(command)
    if metric not in known_metrics:
        known = ", ".join(known_metrics)
        raise RecipeError([f"{recipe_path}: tune.metric: {metric!r} is not a validation metric (one of {known})"])
    natural = "maximize" if known_metrics[metric] == "max" else "minimize"
    study_dir = Path(cfg.output_dir)
    if study_dir.exists() and not study_dir.is_dir():
        raise FinsentError(f"output_dir: {study_dir} is a file; a study needs a folder", exit_code=2)
    if (study_dir / "recipe.yaml").exists() or is_sweep_dir(study_dir):
        what = "a sweep folder" if is_sweep_dir(study_dir) else "a run folder"
        raise FinsentError(
            f"output_dir: {study_dir} is {what}; give the study its own folder (e.g. output_dir={study_dir}-tune)",
            exit_code=2,
        )
    url = storage or tune.storage
    if url == f"sqlite:///{(study_dir / STUDY_FILE).resolve()}":
        url = None  # the default file, spelled out: the default study in it
    if storage and url:
        check_storage(url)  # tune.storage was checked with the recipe
    name = study_name or tune.study_name or (study_dir.resolve().name if url else STUDY_NAME)
    return TunePlan(
        recipe_path,
        schema,
        overrides,
        Path(data_dir) if data_dir else None,
        cfg,
        study_dir,
        metric,
        tune.direction or natural,
        command,
        storage=url or "",
        study_name=name,
    )


def trial_recipe(plan: TunePlan, params: dict[str, Any], output_dir: Path) -> Any:
    """The recipe of one trial: the plan's recipe with ``params`` applied, its own folder, no tune section.

    Raises:
        RecipeError: the combination of values is refused by the recipe (each value alone was accepted).
    """
    extra = [_override(k, v) for k, v in params.items()]
    return load_recipe(
        plan.recipe_path,
        plan.schema,
        [*plan.overrides, *extra, _override("output_dir", str(output_dir)), "tune=null"],
        plan.data_dir,
    )


# ------------------------------------------------------------------------------------------------ study


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def distributions(tune: TuneCfg) -> dict[str, Any]:
    """Optuna distributions of the space; a categorical with list or mapping choices is searched over the
    choices' JSON texts (Optuna stores scalars only) and decoded by :func:`decode_params`."""
    import optuna.distributions as od

    out: dict[str, Any] = {}
    for key, spec in tune.space.items():
        if spec.kind == "categorical":
            choices = spec.choices or []
            out[key] = od.CategoricalDistribution(
                choices if all(map(_scalar, choices)) else [json.dumps(c) for c in choices]
            )
        elif spec.kind == "int":
            out[key] = od.IntDistribution(int(spec.low), int(spec.high), log=spec.log, step=int(spec.step or 1))  # type: ignore[arg-type]
        else:
            out[key] = od.FloatDistribution(float(spec.low), float(spec.high), log=spec.log, step=spec.step)  # type: ignore[arg-type]
    return out


def decode_params(tune: TuneCfg, params: dict[str, Any]) -> dict[str, Any]:
    """A trial's stored values as recipe values (JSON texts of non-scalar choices decoded)."""
    out = {}
    for key, value in params.items():
        spec = tune.space.get(key)
        encoded = spec is not None and spec.kind == "categorical" and not all(map(_scalar, spec.choices or []))
        out[key] = json.loads(value) if encoded else value
    return out


def open_study(plan: TunePlan, reporter: Reporter | None = None) -> Any:
    """The study ``plan.study_name`` in ``plan.storage``, created on first use, with the plan's sampler and
    pruner, and heartbeats: a running trial silent for ``tune.grace_period`` is failed and queued again
    (:data:`MAX_RESUMES` times at most) when a process of the study calls :func:`fail_stale_trials`.

    Args:
        plan: from :func:`plan_tune`.
        reporter: where a dead trial queued again (or left failed) is reported.

    Raises:
        FinsentError: the study was started with another recipe or search space (naming the keys), or
            optimises its metric the other way; the database cannot be reached.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # finsent reports each trial itself
    if not is_sqlite(plan.storage):
        study = _open_study(plan, reporter or NullReporter())
        plan.study_dir.mkdir(parents=True, exist_ok=True)  # once the database answered: no empty folder left
        return study
    import fcntl

    plan.study_dir.mkdir(parents=True, exist_ok=True)

    # Two processes started together would both create a SQLite file's tables ("table studies already
    # exists"): opening the study, and recording its recipe, happen under the study folder's lock file.
    with (plan.study_dir / LOCK_FILE).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _open_study(plan, reporter or NullReporter())


def _open_study(plan: TunePlan, reporter: Reporter) -> Any:
    import optuna
    from optuna.exceptions import DuplicatedStudyError

    tune = plan.tune
    storage = open_storage(plan.storage, tune.heartbeat_interval, tune.grace, _retry_stale(tune, reporter))
    # Creating the study is atomic in every database: of processes started together exactly one creates
    # it, and it alone draws from tune.seed (two processes with one seed would start with the same values).
    try:
        optuna.create_study(storage=storage, study_name=plan.study_name, direction=plan.direction)
        created = True
    except DuplicatedStudyError:
        created = False
    n_before = len(storage.get_all_trials(storage.get_study_id_from_name(plan.study_name), deepcopy=False))
    seed = tune.seed
    if not created:  # a process joining the study, or resuming it: its own stream, on any machine
        worker = zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode())
        seed = (tune.seed * 1_000_003 + n_before * 7919 + worker) % 2**31
    sampler = (
        optuna.samplers.TPESampler(seed=seed, n_startup_trials=tune.startup_trials, constant_liar=True)
        if tune.sampler == "tpe" else optuna.samplers.RandomSampler(seed=seed)
    )  # fmt: skip
    pruner = {
        "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1, max_resource="auto", reduction_factor=3),
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=max(tune.startup_trials, 1)),
        "none": optuna.pruners.NopPruner,
    }[tune.pruner]()
    study = optuna.load_study(study_name=plan.study_name, storage=storage, sampler=sampler, pruner=pruner)
    if study.direction.name.lower() != plan.direction:
        raise FinsentError(
            f"{plan.shown_storage}: the study {plan.study_name!r} {study.direction.name.lower()}s its metric; "
            f"the recipe asks to {plan.direction} it"
        )
    recipe = _recorded_recipe(plan)
    old = None if created else _wait_for_recipe(study)
    if old is None:
        study.set_user_attr("recipe", recipe)
        study.set_user_attr("metric", plan.metric)
    else:
        changed = changed_keys(old, recipe, _MAY_CHANGE)
        if changed:
            raise FinsentError(
                f"{plan.shown_storage}: the study {plan.study_name!r} was started with another recipe "
                f"({', '.join(changed)} changed); restore it, or give the new search its own output_dir "
                "(or --study-name)"
            )
    return study


def _recorded_recipe(plan: TunePlan) -> str:
    """The recipe as the study records it: its storage URL left out (it may hold a password)."""
    tune = plan.tune.model_copy(update={"storage": None})
    return recipe_to_yaml(plan.cfg.model_copy(update={"tune": tune}))


def _wait_for_recipe(study: Any) -> str | None:
    """The recipe the study was started with; a process that joins a study in the instant between its
    creation and the creator recording the recipe waits for it (None: a study without one, e.g. its
    creator died there, is adopted)."""
    deadline = time.monotonic() + RECIPE_WAIT_S
    while True:
        recipe = study.user_attrs.get("recipe")
        if recipe is not None or time.monotonic() > deadline or study.trials:
            return None if recipe is None else str(recipe)
        time.sleep(0.2)


def _retry_stale(tune: TuneCfg, reporter: Reporter) -> Callable[[Any, Any], None]:
    """Optuna's heartbeat-stale callback: queue a dead trial again (Optuna's retry, which records the first
    trial of the series in the new trial's ``failed_trial`` system attribute: its run folder, see
    :func:`_folder_number`), or leave it failed after :data:`MAX_RESUMES` retries; say which."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    with quiet_heartbeat_warnings():
        retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RESUMES)

    def on_stale(study: Any, trial: Any) -> None:
        number = _folder_number(trial)
        who = f"{trial.user_attrs.get('host', '?')}, pid {trial.user_attrs.get('pid', '?')}"
        retries = len(trial.system_attrs.get("retry_history", []))
        if retries >= MAX_RESUMES:
            reporter.warn(f"trial {number}: its process ({who}) died {retries + 1} times; left failed")
            return
        retry(study, trial)
        reporter.log(
            f"trial {number}: no heartbeat from its process ({who}) for {tune.grace:g} s; "
            "queued to resume from its last checkpoint"
        )

    return on_stale


def fail_stale_trials(study: Any) -> None:
    """Fail the running trials of ``study`` whose heartbeat stopped, and queue them again (see
    :func:`open_study`); ``Study.optimize`` does this before each trial, ask-and-tell does not."""
    import optuna

    with quiet_heartbeat_warnings():
        optuna.storages.fail_stale_trials(study)


def requeue(study: Any, trial: Any, params: dict[str, Any], folder_number: int, attempts: int) -> bool:
    """Mark a trial (or trial number) failed and queue its values again, to continue in the same run folder;
    False (and not queued) when another process finished it first."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    try:
        study.tell(trial, state=TrialState.FAIL)
    except (UpdateFinishedTrialError, RuntimeError, ValueError):
        return False
    study.enqueue_trial(dict(params), user_attrs={"resumes": folder_number, "attempt": attempts + 1})
    return True


# -------------------------------------------------------------------------------------------------- run


def _trial_folder(study_dir: Path, number: int) -> Path:
    return study_dir / f"{TRIAL_PREFIX}{number:04d}"


def _folder_number(t: Any) -> int:
    """The run folder a trial trains in: its own number, or that of the stopped trial it resumes (queued
    again after Ctrl-C: ``resumes``; after its process died: Optuna's ``failed_trial``, the first of the
    series)."""
    return int(t.user_attrs.get("resumes", t.system_attrs.get("failed_trial", t.number)))


def _rows(study: Any, tune: TuneCfg) -> list[dict[str, Any]]:
    """One row per trial that counts, in trial order (a failed trial that was queued again is left out: its
    rerun is the row, under the stopped trial's number)."""
    trials = study.get_trials(deepcopy=False)
    rows = []
    for t in trials:
        if t.state.name == "FAIL" and any(
            _folder_number(o) == _folder_number(t) and o.number > t.number for o in trials
        ):
            continue
        seconds = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None
        )
        rows.append({
            "trial": _folder_number(t), "state": t.state.name.lower(), "value": t.value,
            **decode_params(tune, t.params or t.system_attrs.get("fixed_params", {})),
            "evaluations": len(t.intermediate_values),
            "seconds": round(seconds, 1) if seconds is not None else None, "run_dir": t.user_attrs.get("run_dir"),
            "error": t.user_attrs.get("error"),
        })  # fmt: skip
    return sorted(rows, key=lambda r: r["trial"])  # a rerun is asked later than trials numbered after it


def _write_outputs(plan: TunePlan, study: Any, rows: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, Path | None]:
    """``trials.csv`` and, once a trial completed, ``best_recipe.yaml``; returns the best row and that file."""
    columns = ["trial", "state", "value", *plan.tune.space, "evaluations", "seconds", "run_dir", "error"]
    atomic_write_table(plan.study_dir / TRIALS_CSV, columns, rows)
    complete = [r for r in rows if r["state"] == "complete" and r["value"] is not None]
    if not complete:
        return None, None
    sign = 1 if plan.direction == "maximize" else -1
    best = max(complete, key=lambda r: (sign * r["value"], -r["trial"]))
    params = {k: best[k] for k in plan.tune.space}
    out_dir = plan.study_dir.parent / f"{plan.study_dir.name}-best"
    cfg = trial_recipe(plan, params, out_dir)
    head = (
        f"# finsent {plan.command} {plan.study_dir / BEST_RECIPE}\n"
        f"#   e.g. finsent {plan.command} {plan.study_dir / BEST_RECIPE} train.seed=7 output_dir={out_dir}-seed7\n"
        f"# The best of {len(complete)} complete trials of the study in {plan.study_dir} ({plan.recipe_path}):\n"
        f"# trial {best['trial']}, valid {plan.metric} {best['value']:.4f}; its model is in {best['run_dir']}/best.\n"
        + "".join(f"#   {k}: {json.dumps(v)}\n" for k, v in params.items())
    )
    path = plan.study_dir / BEST_RECIPE
    atomic_write_text(path, head + recipe_to_yaml(cfg))
    return best, path


def _hook(trial: Any, metric: str, carried: set[int] = frozenset()) -> Callable[[int, dict[str, float]], None]:  # type: ignore[assignment]
    """Report the metric of each evaluation to the study; raise ``TrialPruned`` when the pruner says so.
    Evaluations in ``carried`` were reported by the stopped attempt a resumed trial continues (one that
    stopped between an evaluation and its checkpoint evaluates that step again): not reported twice."""
    import optuna

    def on_evaluate(n: int, metrics: dict[str, float]) -> None:
        if metric not in metrics:
            raise FinsentError(f"tune.metric: '{metric}' is not computed during training (have {', '.join(metrics)})")
        if n not in carried:
            trial.report(float(metrics[metric]), n)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after evaluation {n}")

    return on_evaluate


def _tell(study: Any, trial: Any, number: int, reporter: Reporter, *args: Any, **kwargs: Any) -> bool:
    """``study.tell``; False (with a warning) when the trial was already finished by another process, which
    took it for dead (no heartbeat for the grace period: a machine so loaded its heartbeat thread stalled)
    and queued it again."""
    from optuna.exceptions import UpdateFinishedTrialError

    try:
        study.tell(trial, *args, **kwargs)
    except UpdateFinishedTrialError:
        reporter.warn(_TAKEN_OVER.format(number=number))
        return False
    return True


_TAKEN_OVER = (
    "trial {number}: another process took it for dead (no heartbeat within tune.grace_period) and queued it "
    "again; its result here is not recorded (a longer tune.grace_period avoids this)"
)


def _failed(
    plan: TunePlan, study: Any, trial: Any, number: int, shown: str, message: str, failures: int, reporter: Reporter,
    exit_code: int = 1,
) -> int:  # fmt: skip
    """Record a failed trial; raise when nothing has completed yet or :data:`MAX_FAILURES` failed in a row
    (the problem is then the recipe or the data, not the values); else warn and return the new run length."""
    from optuna.trial import TrialState

    trial.set_user_attr("error", message)
    _tell(study, trial, number, reporter, state=TrialState.FAIL)
    _write_outputs(plan, study, _rows(study, plan.tune))
    failures += 1
    if failures >= MAX_FAILURES or not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise FinsentError(f"trial {number} ({shown}): {message}", exit_code=exit_code)
    reporter.warn(f"trial {number} failed ({shown}): {message}")
    return failures


def run_tune(
    plan: TunePlan,
    run_trial: RunTrial,
    reporter: Reporter | None = None,
    *,
    trials: int | None = None,
    timeout: float | None = None,
) -> TuneResult:
    """Run trials of ``plan``'s study until it holds ``trials`` or ``timeout`` seconds have passed.

    A process whose share is done waits while trials of other processes still run (they may die and be
    queued again: this process then resumes them), up to the time budget.

    Args:
        plan: from :func:`plan_tune`.
        run_trial: trains one trial (see :data:`RunTrial`).
        reporter: one line per trial as it starts and ends.
        trials: the study's size (default ``tune.trials``): complete, pruned, running and queued trials count.
        timeout: seconds after which no trial starts (default ``tune.timeout``); a running trial finishes.

    Returns:
        Every trial of the study and the best one.

    Raises:
        FinsentError: the study was started with another recipe; its database cannot be reached; every
            trial so far failed (the first failure is the problem); launched as several ranks.
        KeyboardInterrupt: Ctrl-C; the trial in progress saved a checkpoint and is queued to resume.
    """
    from optuna.trial import TrialState

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # every rank would ask the study for a trial of its own (other values in one DDP group), and a
        # trial's end closes the process group the next one needs
        raise FinsentError(
            "finsent tune runs each trial in one process; start it without accelerate launch / torchrun, "
            "as several tune processes sharing the study (one per GPU: CUDA_VISIBLE_DEVICES=N)",
            exit_code=2,
        )
    reporter = reporter or NullReporter()
    tune = plan.tune
    target = trials or tune.trials
    budget = timeout if timeout is not None else tune.timeout
    study = open_study(plan, reporter)
    # the RDB storage under Optuna's cache (no public accessor): the heartbeat thread writes through it and
    # closes its own connection there when the trial ends (the cache's remove_session does nothing)
    storage = getattr(study._storage, "_backend", study._storage)
    dists = distributions(tune)
    start, ran, stopped, failures, waited = time.monotonic(), 0, "the study is complete", 0, False
    counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    while True:
        fail_stale_trials(study)  # dead trials of any process, on any machine, queued again (WAITING)
        held = study.get_trials(deepcopy=False, states=counted)
        waiting = any(t.state == TrialState.WAITING for t in held)
        out_of_time = budget is not None and time.monotonic() - start >= budget
        if len(held) >= target and not waiting:
            # trials running elsewhere that beat: if one dies it is queued again, and this process resumes it
            elsewhere = [t for t in held if t.state == TrialState.RUNNING and "heartbeat" in t.user_attrs]
            if not elsewhere or out_of_time:
                stopped = f"the study holds {len(held)} trials (--trials {target})"
                break
            if not waited:
                who = ", ".join(
                    f"trial {_folder_number(t)} ({t.user_attrs.get('host', '?')}, pid {t.user_attrs.get('pid', '?')})"
                    for t in elsewhere
                )
                reporter.log(f"waiting for {who}: a trial whose heartbeat stops for {tune.grace:g} s is resumed here")
                waited = True
            time.sleep(min(tune.heartbeat_interval, 5.0))
            continue
        if out_of_time:
            stopped = f"the time budget ({budget:.0f} s) is spent"
            break
        with quiet_heartbeat_warnings():
            trial = study.ask(fixed_distributions=dists)
        # a live Trial shows no system attributes (where Optuna's retry records the dead trial): read them
        asked = storage.get_trial(trial._trial_id)
        number = _folder_number(asked)
        folder = _trial_folder(plan.study_dir, number)
        with Heartbeat(storage, trial._trial_id, tune.heartbeat_interval):
            trial.set_user_attr("heartbeat", tune.heartbeat_interval)
            trial.set_user_attr("pid", os.getpid())
            trial.set_user_attr("host", socket.gethostname())
            trial.set_user_attr("run_dir", str(folder))
            resumed = "resumes" in asked.user_attrs or "failed_trial" in asked.system_attrs
            failures = _run_one(plan, study, trial, number, folder, resumed, run_trial, reporter, failures, target)
        ran += 1
        _write_outputs(plan, study, _rows(study, tune))
    rows = _rows(study, tune)
    best, path = _write_outputs(plan, study, rows)
    return TuneResult(plan.study_dir, rows, best, path, ran, plan.metric, plan.direction, stopped)


def _run_one(
    plan: TunePlan, study: Any, trial: Any, number: int, folder: Path, resumed: bool, run_trial: RunTrial,
    reporter: Reporter, failures: int, target: int,
) -> int:  # fmt: skip
    """Train one asked trial and tell the study how it ended; returns the count of failures in a row."""
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    from finsent_cli.core.training.tracking import tracker_group

    tune = plan.tune
    params = decode_params(tune, trial.params)
    shown = ", ".join(
        f"{k.rsplit('.', 1)[-1]}={v:.3g}" if isinstance(v, float) else f"{k.rsplit('.', 1)[-1]}={v}"
        for k, v in params.items()
    )
    if resumed:  # the evaluations the stopped attempt reported, so the pruner sees the whole curve
        before = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
            if _folder_number(t) == number and t.number != trial.number
        ]
        carried = before[-1].intermediate_values if before else {}
        for step, value in sorted(carried.items()):
            trial.report(value, step)
    else:
        carried = {}
    n_done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    reporter.log(f"trial {number} ({n_done + 1}/{target}{', resumed' if resumed else ''}): {shown} -> {folder}")
    try:
        cfg = trial_recipe(plan, params, folder)
        with tracker_group(plan.group):  # W&B: the study's trials in one group
            result = run_trial(cfg, _hook(trial, plan.metric, set(carried)))
    except optuna.TrialPruned as exc:
        if _tell(study, trial, number, reporter, state=TrialState.PRUNED):
            reporter.log(f"trial {number}: {exc}")
    except UpdateFinishedTrialError:  # reporting an evaluation of a trial another process took over
        reporter.warn(_TAKEN_OVER.format(number=number))
    except KeyboardInterrupt:
        requeue(study, trial, trial.params, number, int(trial.user_attrs.get("attempt", 0)))
        reporter.log(f"trial {number}: interrupted; run the same command again to resume it")
        raise
    except FinsentError as exc:
        failures = _failed(plan, study, trial, number, shown, exc.message, failures, reporter, exc.exit_code)
    except Exception as exc:  # a bug or the machine (out of memory): recorded, the study stops, not requeued
        trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
        _tell(study, trial, number, reporter, state=TrialState.FAIL)
        _write_outputs(plan, study, _rows(study, tune))
        raise
    else:
        value = trial_value(result, plan.metric)
        if value is None or not math.isfinite(value):
            why = (
                f"no validation {plan.metric} in its results"
                if value is None
                else f"valid {plan.metric} is {value} (diverged?)"
            )
            return _failed(plan, study, trial, number, shown, why, failures, reporter)
        if _tell(study, trial, number, reporter, value):
            best = study.best_value
            reporter.log(
                f"trial {number}: valid {plan.metric} {value:.4f} (best so far {best:.4f}), {result.seconds:.0f} s"
            )
        return 0
    return failures
