"""`finsent finetune --sweep KEY=V1,V2,...`: run a grid of recipes, one resumable run folder per point.

:func:`finetune_sweep` is the whole of it, top to bottom, for ``finsent finetune`` and ``finsent qlora``:
plan (parse the axes, load and validate EVERY point's recipe, report all problems at once) -> run the points
in grid order, each through the caller's ``run_point`` (``run_finetune``) in its own folder under the
sweep folder (the recipe's ``output_dir``) -> after each point, rewrite one results table as ``sweep.csv``
and ``sweep.json``. A finished point leaves ``sweep_point.json`` (its row and resolved recipe) in its run
folder, so an interrupted sweep skips what is done and resumes the point it stopped in from that run's own
checkpoint. After the hyper-parameter sweeps of Hugging Face's ``Trainer.hyperparameter_search`` and
W&B sweeps, reduced to a plain grid with folders that say what they hold.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
import os
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, get_args

import pydantic
import yaml

from finsent_cli.config.finetune import FinetuneRecipe
from finsent_cli.config.loader import MissingInput, load_recipe, parse_overrides, recipe_to_yaml
from finsent_cli.core.io import atomic_write_json, atomic_write_table, check_writable
from finsent_cli.core.progress import NullReporter, Reporter
from finsent_cli.core.runs import recipe_differences
from finsent_cli.errors import FinsentError, RecipeError

if TYPE_CHECKING:
    from typing_extensions import Self

M = TypeVar("M", bound=pydantic.BaseModel)

SWEEP_FILE = "sweep.json"
SWEEP_CSV = "sweep.csv"
POINT_FILE = "sweep_point.json"
SWEEP_MARKER = "finsent-sweep"
"""Value of ``"kind"`` in :data:`SWEEP_FILE`: how a sweep folder is told from a run folder."""

LENGTH_KEYS = ("train.epochs", "train.max_steps", "train.patience")
"""Keys that may change after a point finished: the point is run again and its run continues from its last
checkpoint (the other resumable keys, logging and such, change nothing in a finished point's results)."""

RESULT_COLUMNS = (
    "point", "valid_accuracy", "valid_macro_f1", "test_accuracy", "test_macro_f1",
    "trainable_params", "total_params", "train_seconds", "peak_rss_mib", "best_step", "run_dir",
)  # fmt: skip
"""Columns of the results table after one column per axis (its full dotted key)."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]")
_MAX_NAME = 120  # well under the 255 bytes most file systems allow for one name


@dataclasses.dataclass(frozen=True)
class SweepAxis:
    """One ``--sweep KEY=V1,V2,...``: the dotted recipe key, its values (parsed as YAML) and their raw texts."""

    key: str
    values: list[Any]
    texts: list[str]


@dataclasses.dataclass
class SweepPlan:
    """Every point of the grid, validated.

    ``points`` holds ``(name, assignment, cfg)``: the point's folder name under ``sweep_dir``, the axis values
    (full key -> value) and its loaded recipe (``output_dir`` = ``sweep_dir / name``); ``labels`` the same
    points as ``key=text, ...`` for messages; ``missing`` the inputs that do not exist yet, each once (when
    planned with ``collect_missing``; otherwise they are errors).
    """

    sweep_dir: Path
    axes: list[SweepAxis]
    points: list[tuple[str, dict[str, Any], Any]]
    labels: list[str] = dataclasses.field(default_factory=list)
    missing: list[MissingInput] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class SweepResult:
    """One row per grid point, in grid order; ``columns`` is the table's column order."""

    sweep_dir: Path
    axes: list[SweepAxis]
    rows: list[dict[str, Any]]
    columns: list[str]

    @property
    def csv_path(self) -> Path:
        return self.sweep_dir / SWEEP_CSV

    @property
    def json_path(self) -> Path:
        return self.sweep_dir / SWEEP_FILE


class PointResult(Protocol):
    """What ``run_point`` returns (:class:`~finsent_cli.core.flows.finetune.FinetuneResult` fits)."""

    final: dict[str, dict[str, float]]
    seconds: float
    params: dict[str, int]
    best_step: int | None
    run_dir: Path


# ------------------------------------------------------------------------------------------------- axes


def _split_values(raw: str) -> tuple[list[str], str | None]:
    """``raw`` split on commas outside ``[...]``, ``{...}`` and quotes, each part stripped; and a problem
    (an unclosed bracket or quote) or None.

    A quote opens a quoted value only where YAML would read one (at a value's start, after ``[``, ``{``,
    ``,`` or ``:``), so an apostrophe inside a word (``bank's``) is a plain character.
    """
    parts: list[str] = []
    buf: list[str] = []
    closers: list[str] = []
    quote = ""
    prev = ""  # the last non-blank character outside quotes ("" at a value's start)
    i = 0
    while i < len(raw):
        ch = raw[i]
        if quote:
            buf.append(ch)
            if quote == '"' and ch == "\\" and i + 1 < len(raw):  # an escape inside double quotes
                buf.append(raw[i + 1])
                i += 2
                continue
            if ch == quote:
                if quote == "'" and raw[i + 1 : i + 2] == "'":  # '' is a quote inside single quotes
                    buf.append("'")
                    i += 2
                    continue
                quote, prev = "", ch
            i += 1
            continue
        if ch == "," and not closers:
            parts.append("".join(buf).strip())
            buf, prev = [], ""
            i += 1
            continue
        if ch in "'\"" and prev in ("", ",", "[", "{", ":"):
            quote = ch
        elif ch in "[{":
            closers.append("]" if ch == "[" else "}")
        elif closers and ch == closers[-1]:
            closers.pop()
        buf.append(ch)
        if not ch.isspace():
            prev = ch
        i += 1
    parts.append("".join(buf).strip())
    if quote:
        return parts, f"unclosed {quote} quote"
    if closers:
        return parts, f"unclosed '{ {']': '[', '}': '{'}[closers[-1]] }'"
    return parts, None


def parse_sweep(items: list[str]) -> list[SweepAxis]:
    """Turn ``["optim.lr=1.0e-4,3.0e-4", "model.adapter.target_modules=[query,value],[query,key,value]"]`` into axes.

    Values are split on commas at the top level only (not inside ``[...]``, ``{...}`` or quotes) and each
    is parsed as YAML exactly as a ``KEY=VALUE`` override is.

    Args:
        items: the ``--sweep`` options, in the order given (it is the grid's order).

    Returns:
        One axis per item.

    Raises:
        RecipeError: every problem at once (no ``=``, an empty value list or value, an unclosed bracket or
            quote, a value or a key given twice, ``output_dir`` swept), each naming its ``--sweep`` item.
    """
    axes: list[SweepAxis] = []
    problems: list[str] = []
    seen: set[str] = set()
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        where = f"--sweep {item!r}"
        if not sep or not key or any(not part for part in key.split(".")):
            problems.append(f"{where}: expected KEY=V1,V2,... with a dotted key, e.g. optim.lr=1.0e-4,3.0e-4")
            continue
        if key == "output_dir" or key.startswith("output_dir."):
            problems.append(f"{where}: output_dir cannot be swept (each point gets its own folder inside it)")
            continue
        if key in seen:
            problems.append(f"{where}: {key} is swept twice; give all its values in one --sweep")
            continue
        seen.add(key)
        texts, unclosed = _split_values(raw)
        if unclosed:
            problems.append(f"{where}: {unclosed} in the values")
            continue
        if texts == [""]:
            problems.append(f"{where}: no values after '='; give one or more, separated by commas")
            continue
        if any(not t for t in texts):
            problems.append(f"{where}: an empty value (two commas in a row, or one at an end)")
            continue
        twice = sorted({t for t in texts if texts.count(t) > 1})
        if twice:
            problems.append(f"{where}: value {', '.join(twice)} given twice")
            continue
        values = [parse_overrides([f"{key}={t}"])[0][1] for t in texts]
        axes.append(SweepAxis(key, values, texts))
    if problems:
        raise RecipeError(problems)
    return axes


# ------------------------------------------------------------------------------------------------- plan


def _shown_keys(axes: list[SweepAxis]) -> list[str]:
    """Each axis's key as folder names show it: its last segment, or the full key where two axes share one."""
    last = [a.key.rsplit(".", 1)[-1] for a in axes]
    return [a.key if last.count(seg) > 1 else seg for a, seg in zip(axes, last, strict=True)]


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]


def point_name(shown: list[str], texts: tuple[str, ...] | list[str]) -> str:
    """The folder name of one point: ``key=text`` joined by ``,``, unsafe characters as ``_``.

    A value whose text had unsafe characters is followed by a hash of the text (``[query,value]`` ->
    ``_query,value_+4f2fe3a9``), so two values never share a folder and a name always means the same values;
    a name too long for a file system is cut and followed by a hash of the whole.
    """
    parts = []
    for key, text in zip(shown, texts, strict=True):
        safe = _UNSAFE.sub("_", text)
        parts.append(f"{key}={safe}" if safe == text else f"{key}={safe}+{_short_hash(text)}")
    name = ",".join(parts)
    if len(name) > _MAX_NAME:
        name = f"{name[: _MAX_NAME - 9]}+{_short_hash(name)}"
    return name


def _model_types(annotation: Any) -> list[type[pydantic.BaseModel]]:
    """Every pydantic model inside an annotation (unions, Optional, Annotated, list[...])."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _model_types(arg)]


def schema_keys(schema: type[pydantic.BaseModel], prefix: str = "", depth: int = 0) -> list[str]:
    """Dotted keys of a schema, every member of a union included (``model.adapter.num_layers``)."""
    out: list[str] = []
    for name, field in schema.model_fields.items():
        key = f"{prefix}{name}"
        out.append(key)
        if depth < 6:
            for sub in _model_types(field.annotation):
                out.extend(schema_keys(sub, f"{key}.", depth + 1))
    return list(dict.fromkeys(out))


def dotted_keys(tree: Any, prefix: str = "") -> list[str]:
    if not isinstance(tree, dict):
        return [prefix] if prefix else []
    out = [prefix] if prefix else []
    for k, v in tree.items():
        out.extend(dotted_keys(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def key_hint(key: str, known: list[str]) -> str | None:
    """``did you mean`` for a swept key that is not a recipe key, from its last segment; None when the key is
    known (or lies inside a mapping value such as ``data.label_map.x``) or nothing is close."""
    if any(k == key or k.startswith(f"{key}.") for k in known):
        return None
    leaves = {k for k in known if not any(other.startswith(f"{k}.") for other in known)}
    if any(key.startswith(f"{k}.") for k in leaves):  # a key inside a mapping value
        return None
    last = key.rsplit(".", 1)[-1]
    same = [k for k in known if k.rsplit(".", 1)[-1] == last]
    if not same:
        same = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if not same:
        close = difflib.get_close_matches(last, [k.rsplit(".", 1)[-1] for k in known], n=1, cutoff=0.75)
        same = [k for k in known if close and k.rsplit(".", 1)[-1] == close[0]]
    if not same:
        return None
    return " or ".join(f"'{k}'" for k in same[:3])


def is_sweep_dir(folder: str | Path) -> bool:
    """True for a folder that a sweep wrote (its :data:`SWEEP_FILE` says so)."""
    return _read_json(Path(folder) / SWEEP_FILE).get("kind") == SWEEP_MARKER


def plan_sweep(
    recipe_path: str | Path,
    schema: type[M],
    overrides: list[str] | None,
    axes: list[SweepAxis],
    data_dir: str | Path | None = None,
    *,
    collect_missing: bool = False,
) -> SweepPlan:
    """Load and validate the recipe of every grid point before anything runs.

    Args:
        recipe_path: the YAML recipe.
        schema: its schema (``FinetuneRecipe``).
        overrides: the ``KEY=VALUE`` overrides, applied before each point's axis values.
        axes: from :func:`parse_sweep`; the grid is their product, in this order (the last varies fastest).
        data_dir: value of ``${data_dir}``.
        collect_missing: list the inputs that do not exist in the plan's ``missing`` instead of failing on
            them (``--dry-run``; see :func:`~finsent_cli.config.loader.load_recipe`).

    Returns:
        The sweep folder (the recipe's ``output_dir``) and every point, named and loaded.

    Raises:
        RecipeError: the problems of all points, each once, in order, with a "did you mean" for a swept key
            that is not a recipe key.
        FinsentError: no axes; the recipe is missing or not YAML; the sweep folder is a file or a run folder.
    """
    if not axes:
        raise FinsentError("a sweep needs at least one --sweep KEY=V1,V2,...", exit_code=2)
    overrides = list(overrides or [])
    shown = _shown_keys(axes)
    grid = list(itertools.product(*(range(len(a.values)) for a in axes)))
    point_overrides = [[f"{a.key}={a.texts[i]}" for a, i in zip(axes, idx, strict=True)] for idx in grid]

    # The sweep folder is the recipe's output_dir; a recipe that only validates with the axes' values
    # (a required key that the sweep supplies) still has one.
    sweep_dir: Path | None = None
    known: list[str] = []
    for extra in ([], *point_overrides):
        try:
            cfg = load_recipe(recipe_path, schema, [*overrides, *extra], data_dir, check_paths=False)
        except RecipeError:
            continue
        sweep_dir = Path(cfg.output_dir)
        known = dotted_keys(cfg.model_dump(mode="json"))
        break

    problems: list[str] = []
    points: list[tuple[str, dict[str, Any], Any]] = []
    labels: list[str] = []
    missing: list[MissingInput] = []
    for idx, extra in zip(grid, point_overrides, strict=True):
        texts = [a.texts[i] for a, i in zip(axes, idx, strict=True)]
        name = point_name(shown, texts)
        # A JSON string is a YAML string: the folder stays as it is whatever characters it holds.
        out = [f"output_dir={json.dumps(str(sweep_dir / name))}"] if sweep_dir is not None else []
        try:
            cfg = load_recipe(recipe_path, schema, [*overrides, *extra, *out], data_dir, missing=missing if collect_missing else None)
        except RecipeError as exc:
            problems.extend(exc.problems)
            continue
        points.append((name, {a.key: a.values[i] for a, i in zip(axes, idx, strict=True)}, cfg))
        labels.append(", ".join(f"{k}={t}" for k, t in zip(shown, texts, strict=True)))
    if problems:
        known = [k for k in dict.fromkeys([*known, *schema_keys(schema)]) if k.split(".", 1)[0] != "tune"]  # tune: not swept
        hints = []
        for axis in axes:
            hint = key_hint(axis.key, known)
            if hint:
                hints.append(f"--sweep {axis.key}=...: {axis.key} is not a recipe key (did you mean {hint}?)")
                # the loader's line for the same key ("adapter: unknown key") says less: the hint replaces it
                segs = axis.key.split(".")
                same = tuple(f": {'.'.join(segs[:k])}: unknown key" for k in range(1, len(segs) + 1))
                problems = [p for p in problems if not any(s in p for s in same)]
        raise RecipeError(list(dict.fromkeys([*hints, *problems])))
    assert sweep_dir is not None  # every point loaded, so the first attempt that loads one set it
    if sweep_dir.exists() and not sweep_dir.is_dir():
        raise FinsentError(f"output_dir: {sweep_dir} is a file; a sweep needs a folder", exit_code=2)
    if (sweep_dir / "recipe.yaml").exists() and not is_sweep_dir(sweep_dir):
        raise FinsentError(
            f"output_dir: {sweep_dir} is a finetune run folder, not a sweep folder; "
            f"give the sweep another output_dir (e.g. output_dir={sweep_dir}-sweep)",
            exit_code=2,
        )
    unique = list({(m.key, m.path): m for m in missing}.values())  # the points share their inputs
    return SweepPlan(sweep_dir=sweep_dir, axes=list(axes), points=points, labels=labels, missing=unique)


# --------------------------------------------------------------------------------------------- memory


def _rss_bytes() -> int | None:
    """This process's resident memory now (``VmRSS``), or None where ``/proc`` is absent."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


class PeakMemory:
    """The peak resident memory of this process while the block runs, in :attr:`mib`.

    A daemon thread samples ``VmRSS`` every ``interval`` seconds (and once at each end of the block).
    Where ``/proc`` is absent (macOS, Windows) it falls back to ``getrusage``'s ``ru_maxrss``: the peak
    of the whole process so far, not of the block alone.

    Example::

        with PeakMemory() as peak:
            train()
        print(f"{peak.mib:.0f} MiB")
    """

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc = False

    def _sample(self) -> None:
        now = _rss_bytes()
        if now is not None and now > self.peak_bytes:
            self.peak_bytes = now

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> Self:
        self._stop = threading.Event()
        self.peak_bytes = 0
        self._proc = _rss_bytes() is not None
        if self._proc:
            self._sample()
            self._thread = threading.Thread(target=self._loop, name="finsent-peak-memory", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._proc:
            self._sample()
        else:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.peak_bytes = peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere

    @property
    def mib(self) -> float:
        return self.peak_bytes / (1024 * 1024)


# ------------------------------------------------------------------------------------------------- run


def _read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; ``{}`` when it is absent or unreadable (it is then written again)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _value_at(tree: Any, key: str, default: Any) -> Any:
    for part in key.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return default
        tree = tree[part]
    return tree


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _row(
    plan: SweepPlan, name: str, assignment: dict[str, Any], cfg: Any, result: PointResult, peak_mib: float
) -> dict[str, Any]:
    """One table row: the axis values as the loaded recipe holds them (``1e-4`` -> ``0.0001``), then results."""
    dumped = cfg.model_dump(mode="json")
    final = result.final or {}
    params = result.params or {}
    row: dict[str, Any] = {a.key: _value_at(dumped, a.key, assignment[a.key]) for a in plan.axes}
    row.update(
        point=name,
        valid_accuracy=_number(final.get("valid", {}).get("accuracy")),
        valid_macro_f1=_number(final.get("valid", {}).get("macro_f1")),
        test_accuracy=_number(final.get("test", {}).get("accuracy")),
        test_macro_f1=_number(final.get("test", {}).get("macro_f1")),
        trainable_params=params.get("trainable"),
        total_params=params.get("total"),
        train_seconds=round(float(result.seconds), 2),
        peak_rss_mib=round(peak_mib, 1),
        best_step=result.best_step,
        run_dir=str(result.run_dir),
    )
    return row


def _write_tables(
    plan: SweepPlan, columns: list[str], rows: list[dict[str, Any]], pending_fresh: list[str], marks: dict[str, Any]
) -> None:
    if not _is_main_process():  # under torchrun every process runs the sweep; one writes what it did
        return
    atomic_write_table(plan.sweep_dir / SWEEP_CSV, columns, rows)
    axes = [{"key": a.key, "values": a.values, "texts": a.texts} for a in plan.axes]
    # "fresh_pending": points of a --fresh sweep not yet rerun; a later call without --fresh still reruns them,
    # except one whose fresh run has started ("fresh_marks", see _fresh_run_started): that one resumes.
    doc = {
        "kind": SWEEP_MARKER, "axes": axes, "columns": columns, "rows": rows, "fresh_pending": pending_fresh,
        "fresh_marks": {n: marks[n] for n in pending_fresh if n in marks},
    }  # fmt: skip
    atomic_write_json(plan.sweep_dir / SWEEP_FILE, doc)


def _is_main_process() -> bool:
    """Whether this is the process that writes the sweep's files (rank 0 under torchrun / accelerate launch)."""
    return os.environ.get("RANK", "0") == "0"


def _recipe_stamp(run_dir: Path) -> int | None:
    """When the run in ``run_dir`` was started (its ``recipe.yaml``'s mtime in ns), None without one."""
    try:
        return (run_dir / "recipe.yaml").stat().st_mtime_ns
    except OSError:
        return None


def _fresh_run_started(run_dir: Path, marks: dict[str, Any], name: str) -> bool:
    """Whether the fresh run of point ``name`` began: its folder no longer holds the run that was there when
    the point was started over (``--fresh`` moved that one aside first), so an interrupted fresh point resumes
    instead of being moved aside and started from zero again."""
    return name in marks and _recipe_stamp(run_dir) != marks[name]


def _in_todays_spelling(text: str, schema: type[pydantic.BaseModel]) -> str:
    """A recorded recipe rewritten by today's schema (renamed keys), or as it is when it no longer validates."""
    try:
        return recipe_to_yaml(schema.model_validate(yaml.safe_load(text), context={"check_paths": False}))
    except Exception:  # noqa: BLE001 - an unreadable old recipe is compared as it is
        return text


def _yaml_tree(text: str) -> Any:
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError:
        return {}


def _check_recipes(plan: SweepPlan, labels: list[str], done: dict[str, dict[str, Any]], fresh: set[str]) -> set[str]:
    """Refuse, before any point runs, points whose run started or finished with another recipe.

    Returns:
        Finished points to run again because only their length (epochs, max_steps, patience) changed.

    Raises:
        FinsentError: listing the points and the keys that changed.
    """
    from finsent_cli.core.training.checkpoint import latest_checkpoint  # imports torch

    changed: list[str] = []
    longer: set[str] = set()
    for (name, _, cfg), label in zip(plan.points, labels, strict=True):
        if name in fresh:
            continue
        now = recipe_to_yaml(cfg)
        if name in done:
            then = _in_todays_spelling(str(done[name].get("recipe", "")), type(cfg))
            diff = recipe_differences(then, now)
            if diff:
                changed.append(f"{label} ({', '.join(diff)})")
            old, new = _yaml_tree(then), _yaml_tree(now)
            if any(_value_at(old, k, None) != _value_at(new, k, None) for k in LENGTH_KEYS):
                longer.add(name)
        elif latest_checkpoint(Path(cfg.output_dir)) and (Path(cfg.output_dir) / "recipe.yaml").is_file():
            # run_finetune would refuse this run when its turn comes, after the points before it ran
            started = (Path(cfg.output_dir) / "recipe.yaml").read_text(encoding="utf-8")
            diff = recipe_differences(_in_todays_spelling(started, type(cfg)), now)
            if diff:
                changed.append(f"{label} ({', '.join(diff)})")
    if changed:
        raise FinsentError(
            f"{plan.sweep_dir}: sweep points started with another recipe: {'; '.join(changed)}; restore the "
            "recipe, give the sweep another output_dir, or pass --fresh to rerun every point (old runs are kept aside)"
        )
    return longer


def run_sweep(
    plan: SweepPlan,
    run_point: Callable[[Any, bool], PointResult],
    reporter: Reporter | None = None,
    *,
    fresh: bool = False,
) -> SweepResult:
    """Run every point of ``plan`` in order; skip those already done unless ``fresh``.

    Args:
        plan: from :func:`plan_sweep`.
        run_point: ``(cfg, fresh) -> result`` trains one point (``run_finetune``) and returns an object with
            ``final``, ``seconds``, ``params``, ``best_step`` and ``run_dir``.
        reporter: one line as each point starts, is skipped or ends.
        fresh: run every point again with ``fresh=True`` (old runs are moved aside by ``run_point``). Points
            a ``--fresh`` sweep has not reached yet are still run fresh by a later call without it.

    Returns:
        The rows of every point, in grid order; the same table is in ``sweep.csv`` and ``sweep.json``.

    Raises:
        FinsentError: a point was started with another recipe (nothing has run), or from ``run_point``.
        KeyboardInterrupt: Ctrl-C; the rows of the points finished so far are already written.
    """
    reporter = reporter or NullReporter()
    labels = plan.labels or [name for name, _, _ in plan.points]
    columns = [*(a.key for a in plan.axes), *RESULT_COLUMNS]
    names = [name for name, _, _ in plan.points]
    previous = _read_json(plan.sweep_dir / SWEEP_FILE)
    marks: dict[str, Any] = {} if fresh else dict(previous.get("fresh_marks") or {})
    pending = set(names) if fresh else set(previous.get("fresh_pending") or []) & set(names)
    dirs = {name: Path(cfg.output_dir) for name, _, cfg in plan.points}
    pending = {n for n in pending if not _fresh_run_started(dirs[n], marks, n)}

    done: dict[str, dict[str, Any]] = {}
    for name, _, cfg in plan.points:
        record = _read_json(Path(cfg.output_dir) / POINT_FILE)
        if name not in pending and isinstance(record.get("row"), dict):
            done[name] = record
    longer = _check_recipes(plan, labels, done, pending)
    rows = {name: {**dict.fromkeys(columns), **rec["row"]} for name, rec in done.items() if name not in longer}

    def write() -> None:
        _write_tables(plan, columns, [rows[n] for n in names if n in rows], [n for n in names if n in pending], marks)

    write()
    total = len(plan.points)
    for i, ((name, assignment, cfg), label) in enumerate(zip(plan.points, labels, strict=True), 1):
        head = f"sweep point {i}/{total} ({label})"
        if name in rows:
            reporter.log(f"{head}: skipped (done)")
            continue
        again = " again (longer)" if name in longer else ""
        reporter.log(f"{head}: {'starting over' if name in pending else 'training' + again} in {cfg.output_dir}")
        if name in pending:
            marks[name] = _recipe_stamp(dirs[name])
            write()
        try:
            with PeakMemory() as peak:
                result = run_point(cfg, name in pending)
        except FinsentError as exc:  # which point failed, then why (the points before it are in the table)
            raise FinsentError(f"{head}: {exc.message}", exit_code=exc.exit_code) from None
        row = _row(plan, name, assignment, cfg, result, peak.mib)
        if _is_main_process():
            atomic_write_json(Path(cfg.output_dir) / POINT_FILE, {"row": row, "recipe": recipe_to_yaml(cfg)})
        rows[name] = row
        pending.discard(name)
        write()
        f1 = row["valid_macro_f1"]
        score = f"valid macro_f1 {f1:.4f}" if f1 is not None else "no validation metrics"
        reporter.log(f"{head}: {score}, {row['train_seconds']:.1f} s, peak memory {row['peak_rss_mib']:.0f} MiB")
    return SweepResult(plan.sweep_dir, list(plan.axes), [rows[n] for n in names], columns)


# --------------------------------------------------------------------------------------------- the flow


def finetune_sweep(
    recipe: str | Path,
    items: list[str],
    overrides: list[str] | None = None,
    data_dir: str | Path | None = None,
    *,
    command: str = "finetune",
    dry_run: bool = False,
    fresh: bool = False,
    reporter: Reporter | None = None,
    run_point: Callable[[Any, bool], PointResult] | None = None,
) -> SweepPlan | SweepResult:
    """``finsent finetune|qlora RECIPE --sweep KEY=V1,V2 ...``: parse the axes, validate every point, then
    (not for a dry run) check that the sweep folder can be written and train every point in turn.

    Args:
        recipe: the fine-tuning recipe.
        items: the ``--sweep`` options, in the order given.
        overrides: ``KEY=VALUE`` overrides, applied before each point's values.
        data_dir: value of ``${data_dir}``.
        command: the command's name, for the first line of the report.
        dry_run: stop after planning; inputs that do not exist yet are then listed in the plan's ``missing``
            instead of failing.
        fresh: start every point over (see :func:`run_sweep`).
        reporter: progress lines.
        run_point: trains one point (default: ``run_finetune``, updating the sweep folder's ``latest``).

    Returns:
        The plan for a dry run, else the rows of every point.

    Raises:
        RecipeError: the axes or any point's recipe are invalid (every problem at once); nothing has run.
        FinsentError: the sweep folder cannot be written or is a run folder, a point started with another
            recipe, or a point failed.
    """
    plan = plan_sweep(recipe, FinetuneRecipe, overrides, parse_sweep(items), data_dir, collect_missing=dry_run)
    if dry_run:
        return plan
    check_writable(plan.sweep_dir, folder=True)
    reporter = reporter or NullReporter()
    reporter.log(f"{command} sweep: {len(plan.points)} runs -> {plan.sweep_dir} (loading torch)")
    return run_sweep(plan, run_point or _finetune_point(reporter, plan.sweep_dir), reporter, fresh=fresh)


def _finetune_point(reporter: Reporter, sweep_dir: Path) -> Callable[[Any, bool], PointResult]:
    """``run_finetune`` for one point, updating the sweep folder's ``latest``."""
    from finsent_cli.core.flows.finetune import run_finetune  # torch: only when there is work

    return lambda cfg, again: run_finetune(cfg, reporter, fresh=again, latest_dir=sweep_dir)
