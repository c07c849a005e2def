"""`finsent tune RECIPE`: search a training recipe's hyper-parameters with Optuna.

Plan (load the recipe and its ``tune:`` section, check that the recipe accepts every end and choice of the
search space, report all problems at once) -> open the study in ``<output_dir>/study.db`` (Optuna's RDB
storage on SQLite) -> ask for trials until the study holds ``trials`` of them or the time budget is
spent. Each trial is one run of the training flow (``run_finetune``) in ``<output_dir>/trial-NNNN``; it
reports its validation metric to the study after every evaluation, and the pruner (Hyperband by default,
Li et al. 2018) may stop it there. After every trial ``trials.csv`` and ``best_recipe.yaml`` (the recipe
with the best trial's values, ready for ``finsent finetune``) are written again.

Resuming: a trial stopped by Ctrl-C saves a checkpoint; the study marks it failed and queues the same
values again with a pointer to its folder, so the next ``tune`` call continues that run where it stopped.
A trial whose process died (``kill -9``, a crash) is found at the next start by its process id and
queued the same way. Two ``tune`` processes on one study share it: each asks the study for the next trial,
each draws from its own random stream and TPE's constant liar keeps them from trying the same
values (processes of one machine: SQLite's locks are not safe on network file systems). After Optuna's ask-and-tell interface,
with the trial's run folder as the unit of work.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import time
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
from finsent_cli.errors import FinsentError, RecipeError

M = TypeVar("M", bound=pydantic.BaseModel)

STUDY_FILE = "study.db"
TRIALS_CSV = "trials.csv"
BEST_RECIPE = "best_recipe.yaml"
STUDY_NAME = "finsent"
SEED_CLAIM = ".seed-claimed"  # created by the first process of a study: it alone samples with tune.seed
LOCK_FILE = ".study.lock"  # held while dead trials are queued again (one process does it)
MAX_RESUMES = 3  # a trial queued again this often (it keeps crashing) is left failed
MAX_FAILURES = 3  # trials failing in a row stop the study (the problem is not in the values)
TRIAL_PREFIX = "trial-"

# Settings of a study that may change between calls: its length and logging, not what a trial means.
_MAY_CHANGE = ("output_dir", "tune.trials", "tune.timeout", "train.log_every", "train.tensorboard", "train.wandb")


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

    @property
    def tune(self) -> TuneCfg:
        return self.cfg.tune

    @property
    def db_path(self) -> Path:
        return self.study_dir / STUDY_FILE


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
) -> TunePlan:
    """Load the recipe and check its search space before anything trains.

    Every end of a numeric range and every choice is applied to the recipe on its own and validated, so a
    key that is not a recipe key (with a "did you mean"), or a value the recipe refuses, is reported now,
    not when a trial draws it.

    Raises:
        RecipeError: every problem of the recipe and its space, one line each.
        FinsentError: no ``tune:`` section; the output folder is a file, a run folder or a sweep folder.
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


def open_study(plan: TunePlan) -> Any:
    """The study in ``plan.db_path``, created on first use, with the plan's sampler and pruner.

    Raises:
        FinsentError: the study was started with another recipe or search space (naming the keys).
    """
    import fcntl

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # finsent reports each trial itself
    plan.study_dir.mkdir(parents=True, exist_ok=True)
    # Two processes started together would both create the database's tables ("table studies already
    # exists"): opening the study, and recording its recipe, happen under the study's lock file.
    with (plan.study_dir / LOCK_FILE).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _open_study_locked(plan)


def _open_study_locked(plan: TunePlan) -> Any:
    import optuna

    # SQLite allows one writer at a time: a second process waits for the lock instead of failing at once.
    storage = optuna.storages.RDBStorage(
        f"sqlite:///{plan.db_path.resolve()}", engine_kwargs={"connect_args": {"timeout": 120}}
    )
    tune = plan.tune
    try:
        existing = optuna.load_study(study_name=STUDY_NAME, storage=storage)
        n_before = len(existing.trials)
    except KeyError:
        n_before = 0
    # A process joining a study, or resuming one, draws from another random stream than the first process.
    # ... and so does a second process started at the same time: only the process that claims the fresh study
    # draws from tune.seed itself (two processes with one seed would start with the same values).
    seed = tune.seed
    if n_before or not _claim(plan.study_dir / SEED_CLAIM):
        seed = (tune.seed * 1_000_003 + n_before * 7919 + os.getpid()) % 2**31
    sampler = (
        optuna.samplers.TPESampler(seed=seed, n_startup_trials=tune.startup_trials, constant_liar=True)
        if tune.sampler == "tpe" else optuna.samplers.RandomSampler(seed=seed)
    )  # fmt: skip
    pruner = {
        "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1, max_resource="auto", reduction_factor=3),
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=max(tune.startup_trials, 1)),
        "none": optuna.pruners.NopPruner,
    }[tune.pruner]()
    study = optuna.create_study(
        storage=storage,
        study_name=STUDY_NAME,
        direction=plan.direction,
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    recipe = recipe_to_yaml(plan.cfg)
    if "recipe" not in study.user_attrs:
        study.set_user_attr("recipe", recipe)
        study.set_user_attr("metric", plan.metric)
    else:
        changed = changed_keys(str(study.user_attrs["recipe"]), recipe, _MAY_CHANGE)
        if changed:
            raise FinsentError(
                f"{plan.study_dir}: the study was started with another recipe ({', '.join(changed)} changed); "
                "restore it, or give the new search its own output_dir"
            )
    if study.direction.name.lower() != plan.direction:
        raise FinsentError(
            f"{plan.study_dir}: the study {study.direction.name.lower()}s its metric; the recipe asks to {plan.direction} it"
        )
    return study


def _claim(path: Path) -> bool:
    """Create ``path``; False when it exists (another process claimed it first)."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


def recover_dead_trials(plan: TunePlan, study: Any, reporter: Reporter) -> int:
    """Queue again the running trials of this machine whose process is gone (``kill -9``, a crash), one
    process at a time (a lock file in the study folder); a trial queued :data:`MAX_RESUMES` times is left
    failed.

    Returns:
        How many were queued again.
    """
    import fcntl

    from optuna.trial import TrialState

    n = 0
    with (plan.study_dir / LOCK_FILE).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            pid, host = t.user_attrs.get("pid"), t.user_attrs.get("host")
            if host != socket.gethostname() or not isinstance(pid, int) or pid == os.getpid() or _alive(pid):
                continue
            number, attempts = _folder_number(t), int(t.user_attrs.get("attempt", 0))
            if attempts >= MAX_RESUMES:
                study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
                reporter.warn(f"trial {number}: its process died {attempts + 1} times; left failed")
                continue
            if requeue(study, t.number, t.params, number, attempts):
                reporter.log(f"trial {number}: its process ({pid}) is gone; queued to resume from its last checkpoint")
                n += 1
    return n


# -------------------------------------------------------------------------------------------------- run


def _trial_folder(study_dir: Path, number: int) -> Path:
    return study_dir / f"{TRIAL_PREFIX}{number:04d}"


def _folder_number(t: Any) -> int:
    """The run folder a trial trains in: its own number, or that of the stopped trial it resumes."""
    return int(t.user_attrs.get("resumes", t.number))


def _rows(study: Any, tune: TuneCfg) -> list[dict[str, Any]]:
    """One row per trial that counts (a failed trial that was queued again is left out: its rerun is the row)."""
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
    return rows


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


def _hook(trial: Any, metric: str) -> Callable[[int, dict[str, float]], None]:
    """Report the metric of each evaluation to the study; raise ``TrialPruned`` when the pruner says so."""
    import optuna

    def on_evaluate(n: int, metrics: dict[str, float]) -> None:
        if metric not in metrics:
            raise FinsentError(f"tune.metric: '{metric}' is not computed during training (have {', '.join(metrics)})")
        trial.report(float(metrics[metric]), n)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after evaluation {n}")

    return on_evaluate


def _failed(
    plan: TunePlan, study: Any, trial: Any, number: int, shown: str, message: str, failures: int, reporter: Reporter,
    exit_code: int = 1,
) -> int:  # fmt: skip
    """Record a failed trial; raise when nothing has completed yet or :data:`MAX_FAILURES` failed in a row
    (the problem is then the recipe or the data, not the values); else warn and return the new run length."""
    from optuna.trial import TrialState

    trial.set_user_attr("error", message)
    study.tell(trial, state=TrialState.FAIL)
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

    Args:
        plan: from :func:`plan_tune`.
        run_trial: trains one trial (see :data:`RunTrial`).
        reporter: one line per trial as it starts and ends.
        trials: the study's size (default ``tune.trials``): complete, pruned, running and queued trials count.
        timeout: seconds after which no trial starts (default ``tune.timeout``); a running trial finishes.

    Returns:
        Every trial of the study and the best one.

    Raises:
        FinsentError: the study was started with another recipe; or every trial so far failed (the first
            failure is the problem).
        KeyboardInterrupt: Ctrl-C; the trial in progress saved a checkpoint and is queued to resume.
    """
    import optuna
    from optuna.trial import TrialState

    reporter = reporter or NullReporter()
    tune = plan.tune
    target = trials or tune.trials
    budget = timeout if timeout is not None else tune.timeout
    study = open_study(plan)
    recover_dead_trials(plan, study, reporter)
    dists = distributions(tune)
    start, ran, stopped, failures = time.monotonic(), 0, "the study is complete", 0
    counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    while True:
        held = study.get_trials(deepcopy=False, states=counted)
        waiting = any(t.state == TrialState.WAITING for t in held)
        if len(held) >= target and not waiting:
            stopped = f"the study holds {len(held)} trials (--trials {target})"
            break
        if budget is not None and time.monotonic() - start >= budget:
            stopped = f"the time budget ({budget:.0f} s) is spent"
            break
        trial = study.ask(fixed_distributions=dists)
        number = _folder_number(trial)
        folder = _trial_folder(plan.study_dir, number)
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("run_dir", str(folder))
        params = decode_params(tune, trial.params)
        shown = ", ".join(
            f"{k.rsplit('.', 1)[-1]}={v:.3g}" if isinstance(v, float) else f"{k.rsplit('.', 1)[-1]}={v}"
            for k, v in params.items()
        )
        resumed = "resumes" in trial.user_attrs
        if resumed:  # the evaluations the stopped attempt reported, so the pruner sees the whole curve
            before = [
                t
                for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
                if _folder_number(t) == number and t.number != trial.number
            ]
            for step, value in sorted(before[-1].intermediate_values.items()) if before else ():
                trial.report(value, step)
        n_done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
        reporter.log(f"trial {number} ({n_done + 1}/{target}{', resumed' if resumed else ''}): {shown} -> {folder}")
        try:
            cfg = trial_recipe(plan, params, folder)
            result = run_trial(cfg, _hook(trial, plan.metric))
        except optuna.TrialPruned as exc:
            study.tell(trial, state=TrialState.PRUNED)
            reporter.log(f"trial {number}: {exc}")
        except KeyboardInterrupt:
            requeue(study, trial, trial.params, number, int(trial.user_attrs.get("attempt", 0)))
            reporter.log(f"trial {number}: interrupted; run the same command again to resume it")
            raise
        except FinsentError as exc:
            failures = _failed(plan, study, trial, number, shown, exc.message, failures, reporter, exc.exit_code)
        except Exception as exc:  # a bug or the machine (out of memory): recorded, the study stops, not requeued
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            study.tell(trial, state=TrialState.FAIL)
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
                failures = _failed(plan, study, trial, number, shown, why, failures, reporter)
            else:
                failures = 0
                study.tell(trial, value)
                best = study.best_value
                reporter.log(
                    f"trial {number}: valid {plan.metric} {value:.4f} (best so far {best:.4f}), {result.seconds:.0f} s"
                )
        ran += 1
        _write_outputs(plan, study, _rows(study, tune))
    rows = _rows(study, tune)
    best, path = _write_outputs(plan, study, rows)
    return TuneResult(plan.study_dir, rows, best, path, ran, plan.metric, plan.direction, stopped)
