"""Load a YAML recipe: parse, apply dotted overrides, interpolate ``${data_dir}``, validate.

After torchtune's configs and spaCy's config errors: every problem in a recipe is collected and
reported at once, each naming the recipe file and the dotted key, with a "did you mean" for typos.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import pydantic
import yaml
from pydantic import Tag

from finsent_cli.config.base import INPUT_MISSING
from finsent_cli.config.producers import Producers, recipe_folders
from finsent_cli.core.io import atomic_write_text
from finsent_cli.errors import FinsentError, RecipeError

M = TypeVar("M", bound=pydantic.BaseModel)

_VAR = re.compile(r"\$\{([^}]*)\}")


@dataclass(frozen=True)
class MissingInput:
    """An input that a recipe names and that does not exist (yet): a file or folder, or the folder of
    ``${data_dir}``. What :func:`load_recipe` collects instead of failing when asked to (``--dry-run``).

    Attributes:
        key: the dotted recipe key (``data.corpus.0``), or ``${data_dir}``.
        path: the path that does not exist.
        problem: the line a run reports for it: recipe file, key, path and how to make it.
        make: the command of the recipe that makes ``path`` (its ``output_dir`` is or holds it), if one is known.
    """

    key: str
    path: Path
    problem: str
    make: str | None = None


def resolve_data_dir(cli_value: str | Path | None = None) -> Path:
    """Where ``${data_dir}`` points: ``--data-dir``, else ``$FINSENT_DATA_DIR``, else ``./data``."""
    return data_dir_and_source(cli_value)[0]


def data_dir_and_source(cli_value: str | Path | None = None) -> tuple[Path, str]:
    """:func:`resolve_data_dir` and where the value came from, in words for an error message."""
    if cli_value:
        return Path(cli_value), "from --data-dir"
    env = os.environ.get("FINSENT_DATA_DIR")
    if env:
        return Path(env), "from $FINSENT_DATA_DIR"
    return Path("data"), "the default: neither --data-dir nor $FINSENT_DATA_DIR is set"


def _under(value: Any, folder: Path) -> bool:
    """Whether ``value`` (a recipe value) is a path inside ``folder``."""
    if not isinstance(value, (str, Path)) or not str(value):
        return False
    return Path(value) == folder or folder in Path(value).parents


def parse_overrides(items: list[str] | None) -> list[tuple[str, Any]]:
    """Turn ``["a.b=1", "c=[x, y]"]`` into ``[("a.b", 1), ("c", ["x", "y"])]``; values are YAML.

    Raises:
        RecipeError: an item has no ``=`` or an empty key.
    """
    out: list[tuple[str, Any]] = []
    problems = []
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            problems.append(f"override {item!r}: expected KEY=VALUE with a dotted key, e.g. data.test_size=0.2")
            continue
        try:
            value = _override_value(raw)
        except yaml.YAMLError as exc:
            if raw.lstrip()[:1] in ("[", "{"):  # meant as a list or mapping: never a silent string
                where = getattr(exc, "problem", None) or "not valid YAML"
                problems.append(f"override {key}: {raw!r} is not a valid YAML list or mapping ({where}); quote values that hold ': ' or ','")
                continue
            value = raw
        out.append((key, value))
    if problems:
        raise RecipeError(problems)
    return out


def _override_value(raw: str) -> Any:
    """An override's YAML value; ``${data_dir}`` may stand unquoted inside ``[...]`` and ``{...}``, where YAML
    would read its braces as a mapping (``data.train=[{path: ${data_dir}/a.csv, name: a}]``)."""
    if not raw.strip():
        return None
    found = [m.group(0) for m in _VAR.finditer(raw)]
    if not found:
        return yaml.safe_load(raw)
    # each variable becomes a mark YAML reads as plain text and no other mark contains (the index is closed)
    marks = {f"finsentvar{i}x": match for i, match in enumerate(found)}
    masked = _VAR.sub(lambda m, it=iter(marks): next(it), raw)

    def restore(node: Any) -> Any:
        if isinstance(node, dict):
            return {restore(k): restore(v) for k, v in node.items()}
        if isinstance(node, list):
            return [restore(v) for v in node]
        if isinstance(node, str):
            return re.sub(r"finsentvar\d+x", lambda m: marks.get(m.group(0), m.group(0)), node)
        return node

    return restore(yaml.safe_load(masked))


def _interpolate(
    node: Any, variables: dict[str, str], path: str, where: str, problems: list[str], used: set[str] | None = None
) -> Any:
    used = set() if used is None else used
    if isinstance(node, dict):
        return {
            k: _interpolate(v, variables, f"{path}.{k}" if path else str(k), where, problems, used) for k, v in node.items()
        }
    if isinstance(node, list):
        return [_interpolate(v, variables, f"{path}[{i}]", where, problems, used) for i, v in enumerate(node)]
    if isinstance(node, str):

        def sub(m: re.Match[str]) -> str:
            name = m.group(1).strip()
            if name in variables:
                used.add(name)
                return variables[name]
            hint = _did_you_mean(name, list(variables))
            problems.append(f"{where}: {path}: unknown variable ${{{name}}}{hint}")
            return m.group(0)

        return _VAR.sub(sub, node)
    return node


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _tagged(field: Any) -> dict[str, Any]:
    """The members of a discriminated union field, by tag: the ``model`` section (one schema per kind), a
    data split (``file`` or ``list`` of sources), also inside ``Optional[...]``."""
    out: dict[str, Any] = {}
    for meta in field.metadata:
        if isinstance(meta, Tag):  # a union of one member collapses to that member
            out[meta.tag] = field.annotation

    def visit(annotation: Any) -> None:
        for arg in get_args(annotation):
            if get_origin(arg) is Annotated:
                base, *extra = get_args(arg)
                tags = [m.tag for m in extra if isinstance(m, Tag)]
                out.update({t: base for t in tags})
                if not tags:
                    visit(base)
            elif get_origin(arg) in (Union, UnionType):
                visit(arg)

    visit(field.annotation)
    return out


def _walk(model: type[pydantic.BaseModel], loc: tuple[Any, ...]) -> tuple[tuple[Any, ...], type[pydantic.BaseModel] | None]:
    """``loc`` without union tags (pydantic puts the kind into the path: ``model.hf_encoder.pooling``), and
    the model that owns its last element (None when the path leaves the schema)."""
    current: Any = model
    clean: list[Any] = []
    parts = list(loc)
    i = 0
    while i < len(parts):
        part = parts[i]
        clean.append(part)
        last = i == len(parts) - 1
        if isinstance(part, int) or last:
            i += 1
            continue
        if not (isinstance(current, type) and issubclass(current, pydantic.BaseModel)):
            return tuple(clean + parts[i + 1 :]), None
        field = current.model_fields.get(str(part))
        if field is None:
            return tuple(clean + parts[i + 1 :]), None
        members = _tagged(field)
        if members and i + 1 < len(parts) and str(parts[i + 1]) in members:
            current = _unwrap(members[str(parts[i + 1])])
            i += 2
            continue
        current = _unwrap(field.annotation)
        i += 1
    owner = current if isinstance(current, type) and issubclass(current, pydantic.BaseModel) else None
    return tuple(clean), owner


def _unwrap(annotation: Any) -> Any:
    """The first pydantic model inside Optional[...] / list[...] / Annotated[...]; else the annotation."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    if get_origin(annotation) is not None:
        for arg in get_args(annotation):
            found = _unwrap(arg)
            if isinstance(found, type) and issubclass(found, pydantic.BaseModel):
                return found
    return annotation


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _dotted(err: dict[str, Any], schema: type[pydantic.BaseModel]) -> tuple[tuple[Any, ...], type[pydantic.BaseModel] | None, str]:
    """The error's location without union tags, the model that owns it, and the dotted recipe key."""
    loc, owner = _walk(schema, tuple(p for p in err.get("loc", ()) if str(p) not in {"", "[key]"}))
    return loc, owner, ".".join(str(p) for p in loc) or "<top level>"


def _format_error(
    err: dict[str, Any], schema: type[pydantic.BaseModel], where: str, overridden: set[str], make: Producers | None = None
) -> str:
    loc, owner, dotted = _dotted(err, schema)
    kind = err.get("type", "")
    if kind == "union_tag_invalid":  # the kind key names no registered model kind
        dotted = f"{dotted}.kind"
        tags = [t.strip(" '") for t in str(err.get("ctx", {}).get("expected_tags", "")).split(",") if t.strip()]
        tag = str(err.get("ctx", {}).get("tag", ""))
        what = str(loc[-1]) if loc else "model"  # model.kind, model.adapter.kind
        hint = _did_you_mean(tag, tags) or f" ({'recipes train' if what == 'model' else 'known'}: {', '.join(tags)})"
        origin = " (from a command-line override)" if dotted in overridden else ""
        return f"{where}: {dotted}: unknown {what} kind '{tag}'{origin}{hint}"
    if kind == "union_tag_not_found":  # the section is not a mapping
        example = "{kind: lora, r: 8}" if loc and loc[-1] == "adapter" else "{kind: hf_encoder, backbone: minilm}"
        return f"{where}: {dotted}: expected a mapping of settings, e.g. {example} (got {err.get('input')!r})"
    origin = " (from a command-line override)" if dotted in overridden else ""
    if kind == INPUT_MISSING:  # an input not made yet: which recipe makes it, where a shipped one does
        command = make(err["ctx"]["path"]) if make is not None else None
        return f"{where}: {dotted}: {err.get('msg')}{origin}" + (f" (make it with: {command})" if command else "")
    if kind == "extra_forbidden":
        hint = _did_you_mean(str(loc[-1]), list(owner.model_fields)) if owner else ""
        return f"{where}: {dotted}: unknown key{origin}{hint}"
    if kind == "missing":
        return f"{where}: {dotted}: required value is missing"
    msg = err.get("msg", "invalid value")
    msg = msg.removeprefix("Value error, ")
    if not loc and re.match(r"^[A-Za-z_][\w.\[\]]*: ", msg):  # a whole-recipe check that names its key itself
        return f"{where}: {msg}"
    given = err.get("input")
    shown = f" (got {given!r})" if kind not in {"value_error", "assertion_error"} and not isinstance(given, dict) else ""
    return f"{where}: {dotted}: {msg}{shown}{origin}"


def _read_yaml(path: Path) -> dict[str, Any]:
    """The recipe file as a mapping.

    Raises:
        FinsentError: the file is missing, a folder, not UTF-8, not YAML, or not a mapping (exit code 2).
    """
    where = str(path)
    if not path.exists():
        raise FinsentError(f"{where}: recipe not found", exit_code=2)
    if path.is_dir():
        raise FinsentError(f"{where}: is a folder, expected a YAML recipe file", exit_code=2)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise FinsentError(f"{where}: not UTF-8 text (byte offset {exc.start})", exit_code=2) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise FinsentError(f"{where}:{at}: {problem}", exit_code=2) from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise FinsentError(f"{where}: a recipe must be a mapping of keys to values", exit_code=2)
    return raw


def load_recipe(
    path: str | Path | None,
    schema: type[M],
    overrides: list[str] | None = None,
    data_dir: str | Path | None = None,
    *,
    check_paths: bool = True,
    missing: list[MissingInput] | None = None,
) -> M:
    """Read, override, interpolate and validate a recipe.

    Args:
        path: the YAML recipe; None starts from the schema's defaults (a command whose recipe is
            optional); its errors then say so.
        schema: the pydantic model for this command (``extra="forbid"`` throughout).
        overrides: ``KEY=VALUE`` strings with dotted keys, applied before interpolation: ``${data_dir}`` is
            needed only where a value that is kept uses it.
        data_dir: value of ``${data_dir}`` (see :func:`resolve_data_dir`).
        check_paths: check that input files exist (off to validate a recipe's shape only).
        missing: collect the inputs that do not exist into this list instead of failing on them
            (``--dry-run``); the rest of the recipe is then validated as if they existed.

    Returns:
        The validated, read-only recipe.

    Raises:
        RecipeError: every problem found, one line each (exit code 2); a missing input is one of them,
            unless ``missing`` collects it (other problems still raise, listing the missing inputs too).
        FinsentError: the recipe file is missing or is not YAML.
    """
    raw = _read_yaml(Path(path)) if path is not None else {}
    where = str(path) if path is not None else "defaults (no recipe file)"

    problems: list[str] = []
    data_path, source = data_dir_and_source(data_dir)
    variables = {"data_dir": str(data_path)}
    overridden: set[str] = set()
    for key, value in parse_overrides(overrides):
        _set_dotted(raw, key, value)
        overridden.add(key)
    used: set[str] = set()
    tree = _interpolate(raw, variables, "", where, problems, used)
    lost: list[MissingInput] = []
    missing_data = check_paths and "data_dir" in used and not data_path.is_dir()
    if missing_data:  # one line with the fix, not one "file not found" per file inside it
        line = (
            f"{where}: ${{data_dir}} is {data_path} ({source}), a folder that does not exist; "
            "point it at the data with --data-dir DIR or FINSENT_DATA_DIR=DIR"
        )
        lost.append(MissingInput("${data_dir}", data_path, line))
        problems.append(line)
    make = Producers(recipe_folders(path))
    try:
        recipe = schema.model_validate(tree, context={"check_paths": check_paths})
    except pydantic.ValidationError as exc:
        recipe = None
        for err in exc.errors():
            if missing_data and _under(err.get("input"), data_path):
                continue
            line = _format_error(err, schema, where, overridden, make)
            problems.append(line)
            if err.get("type") == INPUT_MISSING:
                given = Path(err["ctx"]["path"])
                lost.append(MissingInput(_dotted(err, schema)[2], given, line, make(given)))
    if missing is not None and lost:
        # Validate the rest as if the inputs existed: a failing field hides the whole-recipe checks after it
        others = [p for p in problems if p not in {m.problem for m in lost}]
        try:
            recipe = schema.model_validate(tree, context={"check_paths": False})
        except pydantic.ValidationError as exc:
            others.extend(_format_error(e, schema, where, overridden) for e in exc.errors())
        if others:
            raise RecipeError([*dict.fromkeys(others), *(m.problem for m in lost)])
        missing.extend(lost)
    elif problems:
        raise RecipeError(problems)
    assert recipe is not None
    return recipe


def recipe_to_yaml(recipe: pydantic.BaseModel) -> str:
    """The resolved recipe as YAML text (paths as strings, keys in schema order)."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def upgraded_recipe(text: str, schema: type[pydantic.BaseModel]) -> str:
    """A run's recorded recipe in today's spelling (keys that moved or gained defaults since it was written),
    so a run started before an upgrade resumes; the text as it is when it no longer validates."""
    try:
        return recipe_to_yaml(schema.model_validate(yaml.safe_load(text), context={"check_paths": False}))
    except Exception:  # noqa: BLE001 - an unreadable old recipe is compared as it is
        return text


def write_resolved_recipe(recipe: pydantic.BaseModel, folder: str | Path, name: str = "recipe.yaml") -> Path:
    """Write the resolved recipe into ``folder`` atomically and return its path."""
    out = Path(folder) / name
    atomic_write_text(out, recipe_to_yaml(recipe))
    return out
