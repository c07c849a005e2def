"""`finsent tune RECIPE [KEY=VALUE ...]`: search a training recipe's hyper-parameters (its ``tune:`` section)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from finsent_cli import ui
from finsent_cli.commands.options import DataDirOpt, OverridesArg, QuietOpt, RecipeArg, guarded
from finsent_cli.errors import FinsentError

TrialsOpt = Annotated[
    int | None,
    typer.Option(
        "--trials",
        "-n",
        min=1,
        help="Trials the study should hold (default: tune.trials); a rerun adds the missing ones.",
        show_default=False,
    ),
]
TimeoutOpt = Annotated[
    str | None,
    typer.Option(
        "--timeout",
        metavar="DURATION",
        help="Start no trial after this long, e.g. 90m or 2h (default: tune.timeout).",
        show_default=False,
    ),
]
StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        metavar="URL",
        help="The study's database, any SQLAlchemy URL (default: tune.storage, else SQLite in OUTPUT_DIR/study.db), "
        "e.g. postgresql://user@host:5432/db to share a study between machines (pip extra: postgres). "
        "Leave the password out of the URL: PGPASSWORD or ~/.pgpass supply it.",
        show_default=False,
    ),
]
StudyNameOpt = Annotated[
    str | None,
    typer.Option(
        "--study-name",
        metavar="NAME",
        help="The study in that database (default: tune.study_name, else the output folder's name, so machines "
        "running the same recipe join one study; 'finsent' in the default SQLite file).",
        show_default=False,
    ),
]
TuneDryRunOpt = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Validate the recipe and its search space, print the space, train nothing. Exit code 0: ready to run; "
        "2: recipe errors or inputs that do not exist yet.",
    ),
]


def _value(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def render_space(plan: Any) -> None:
    """The search space of a plan as a table (``--dry-run``)."""
    rows = []
    for key, spec in plan.tune.space.items():
        if spec.kind == "categorical":
            rows.append([key, "categorical", ", ".join(map(str, spec.choices or []))])
        else:
            scale = "log" if spec.log else (f"step {spec.step}" if spec.step else "uniform")
            rows.append([key, spec.kind, f"{spec.low} .. {spec.high} ({scale})"])
    t = plan.tune
    title = (
        f"search space: {t.trials} trials, {t.sampler} sampler, {t.pruner} pruner, {plan.direction} valid {plan.metric}"
    )
    ui.console.print(ui.table(title, ["key", "type", "values"], rows, right_from=3))
    ui.console.print(f"study: {plan.study_name!r} in {plan.shown_storage} (trials in {plan.study_dir}/trial-NNNN)")


def render_result(result: Any) -> None:
    """The trials table, the best trial and the files written."""
    keys = (
        [
            k
            for k in result.rows[0]
            if k not in ("trial", "state", "value", "evaluations", "seconds", "run_dir", "error")
        ]
        if result.rows
        else []
    )
    heads = ["trial", "state", f"valid {result.metric}", *(k.rsplit(".", 1)[-1] for k in keys), "evals", "s"]
    rows = [
        [
            r["trial"],
            r["state"],
            _value(r["value"]),
            *(_value(r.get(k)) for k in keys),
            r["evaluations"],
            _value(r["seconds"]),
        ]
        for r in result.rows
    ]
    ui.console.print(
        ui.table(f"{len(rows)} trials in {result.study_dir} ({result.stopped})", heads, rows, right_from=2)
    )
    if result.best is None:
        ui.console.print("no trial has completed yet")
        return
    b = result.best
    ui.console.print(
        f"best: trial {b['trial']}, valid {result.metric} {b['value']:.4f}; its model: {b['run_dir']}/best"
    )
    ui.console.print(f"wrote {result.best_recipe} (ready to run) and {result.csv_path.name}")


@guarded
def tune_cmd(
    recipe: RecipeArg,
    overrides: OverridesArg = None,
    trials: TrialsOpt = None,
    timeout: TimeoutOpt = None,
    storage: StorageOpt = None,
    study_name: StudyNameOpt = None,
    dry_run: TuneDryRunOpt = False,
    data_dir: DataDirOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Search hyper-parameters with Optuna (TPE, Hyperband pruning); the study resumes and can be shared."""
    from finsent_cli.config.tune import parse_duration
    from finsent_cli.core.flows.tune import plan_tune, recipe_command, tunable
    from finsent_cli.core.io import check_writable

    try:
        seconds = parse_duration(timeout)
    except ValueError as exc:
        raise FinsentError(f"--timeout: {exc}", exit_code=2) from None
    command = recipe_command(recipe)
    schema, train = tunable(command)
    plan = plan_tune(recipe, schema, overrides or [], data_dir, command, storage=storage, study_name=study_name)
    if dry_run:
        render_space(plan)
        return
    check_writable(plan.study_dir, folder=True)
    reporter = ui.ConsoleReporter(quiet=quiet)
    reporter.log(
        f"tune: {recipe} ({command}) -> {plan.study_dir}, study {plan.study_name!r} in {plan.shown_storage} (loading torch)"
    )
    from finsent_cli.core.flows.tune import run_tune

    def run_trial(cfg: Any, on_evaluate: Any) -> Any:
        return train(cfg, reporter, on_evaluate, Path(plan.study_dir))

    render_result(run_tune(plan, run_trial, reporter, trials=trials, timeout=seconds))
