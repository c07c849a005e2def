"""The schema of capability suite files (``finsent check``), and their problems as one line each.

A file's problems are all reported at once, each naming the file, the line and the dotted key, with a
"did you mean" for a typo, as recipes' are (``config.loader``). What the keys mean: ``core.check.suite``
and ``resources/checks/README.md``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pydantic
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from finsent_cli.errors import FinsentError, RecipeError
from finsent_cli.labels import LABELS

DEFAULT_MAX_CASES = 16
"""Sentences sampled per template unless the file or the template says otherwise."""

NAME = r"[a-z][a-z0-9_]*"
"""A capability or fill list name."""

QUOTE_HINT = "quote texts that start with {"
"""Said with every YAML error and every mapping met where a text was meant: unquoted, ``text: {company} rose.``
is YAML's flow mapping syntax, not a string."""

_UNQUOTED_PLACEHOLDER = re.compile(r"(?:^\s*-\s*|:\s+|\[\s*)\{[^{}:,\s\"']+\}")
"""A value that starts with ``{name}`` unquoted: after ``key:``, a list's ``-`` or ``[`` (not mid-text)."""


# ------------------------------------------------------------------------------------------- expectations


@dataclass(frozen=True)
class Expectation:
    """What a case passes with: a set of allowed labels, and how the suite spelled it."""

    allowed: frozenset[str]
    spelled: str

    def passes(self, label: str) -> bool:
        """Whether ``label`` is allowed."""
        return label in self.allowed


def _label_hint(word: str) -> str:
    close = difflib.get_close_matches(word, list(LABELS), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else f" (labels: {', '.join(LABELS)})"


def parse_expectation(value: Any) -> Expectation:
    """``positive``, ``not negative`` or a list of labels (``[neutral, positive]``) as an :class:`Expectation`.

    Raises:
        ValueError: an unknown label, an empty list, or a list that allows every label.
    """
    if isinstance(value, str):
        words = value.strip().lower().split()
        negated = len(words) == 2 and words[0] == "not"
        label = words[-1] if words else ""
        if len(words) not in (1, 2) or (len(words) == 2 and not negated) or label not in LABELS:
            raise ValueError(
                f"{value!r} is not a label{_label_hint(label)}; write a label, 'not LABEL' or a list of labels"
            )
        allowed = frozenset(LABELS) - {label} if negated else frozenset({label})
        return Expectation(allowed, f"not {label}" if negated else label)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        labels = [v.strip().lower() for v in value]
        bad = next((v for v in labels if v not in LABELS), None)
        if bad is not None:
            raise ValueError(f"{bad!r} is not a label{_label_hint(bad)}")
        if set(labels) == set(LABELS):
            raise ValueError("allows every label, so every case passes; drop the template or narrow the list")
        return Expectation(frozenset(labels), " or ".join(label for label in LABELS if label in labels))
    raise ValueError(f"expected a label, 'not LABEL' or a non-empty list of labels (got {value!r})")


# ------------------------------------------------------------------------------------------------- schema


def _fill_list(values: list[Any]) -> tuple[Any, ...]:
    """A fill list: strings (numbers are read as their text), or mappings of field -> string with one set of fields."""
    if not values:
        raise ValueError("an empty fill list")
    out: list[Any] = []
    keys: set[str] | None = None
    for v in values:
        if isinstance(v, dict):
            if keys is None:
                keys = set(map(str, v))
            if set(map(str, v)) != keys or not all(
                isinstance(x, str | int | float) and not isinstance(x, bool) for x in v.values()
            ):
                raise ValueError(
                    f"entry {v!r}: every entry of a list of mappings needs the fields {', '.join(sorted(keys))}, each a string"
                )
            out.append({str(k): str(x) for k, x in v.items()})
        elif isinstance(v, str | int | float) and not isinstance(v, bool):
            out.append(str(v))
        else:
            raise ValueError(f"entry {v!r}: expected a string or a mapping of strings")  # noqa: TRY004 - pydantic reports ValueError
    if len({type(v) for v in out}) > 1:
        raise ValueError("mixes strings and mappings; use one kind per list")
    seen = [repr(sorted(v.items())) if isinstance(v, dict) else v for v in out]
    dup = next((v for i, v in enumerate(out) if seen[i] in seen[:i]), None)
    if dup is not None:
        raise ValueError(f"entry {dup!r} is listed twice (it would be drawn twice as often)")
    return tuple(out)


def _fill_names(fills: dict[str, tuple[Any, ...]]) -> dict[str, tuple[Any, ...]]:
    bad = next((k for k in fills if not re.fullmatch(NAME, k)), None)
    if bad is not None:
        raise ValueError(f"fill list name {bad!r}: use lowercase letters, digits and _, starting with a letter")
    return fills


FillList = Annotated[list[Any], AfterValidator(_fill_list)]
Fills = Annotated[dict[str, FillList], AfterValidator(_fill_names)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TemplateSchema(_Strict):
    """One template of a suite file."""

    text: str
    expect: Any = None
    toward: Any = None
    target: str | None = None
    fills: Fills = Field(default_factory=dict)
    max_cases: int | None = Field(default=None, ge=1)
    note: str | None = None

    @field_validator("expect")
    @classmethod
    def _expect(cls, value: Any) -> Expectation | None:
        return None if value is None else parse_expectation(value)

    @field_validator("toward")
    @classmethod
    def _toward(cls, value: Any) -> dict[str, Expectation] | None:
        if value is None:
            return None
        if not isinstance(value, dict) or not value:
            raise ValueError(
                "expected a mapping of target -> label, e.g. {'{company}': positive, '{company2}': negative}"
            )
        out = {}
        for target, spec in value.items():
            try:
                out[str(target)] = parse_expectation(spec)
            except ValueError as exc:
                raise ValueError(f"{target}: {exc}") from None
        return out


class SuiteFileSchema(_Strict):
    """A suite file: one capability."""

    capability: str = Field(pattern=rf"^{NAME}$")
    description: str = ""
    targets: bool = False
    max_cases: int = Field(default=DEFAULT_MAX_CASES, ge=1)
    fills: Fills = Field(default_factory=dict)
    templates: list[TemplateSchema] = Field(min_length=1)


class FillsFileSchema(_Strict):
    """The shared fill lists (``core.check.suite.SHARED_FILLS``)."""

    fills: Fills


# ------------------------------------------------------------------------------------- reading and errors


def _read(path: Path) -> tuple[Any, yaml.Node | None]:
    """The file's data and its YAML node tree (for line numbers).

    Raises:
        FinsentError: missing, a folder, not UTF-8 or not YAML (exit code 2; a YAML error says to quote texts
            that start with a placeholder, the usual cause).
    """
    if not path.exists():
        raise FinsentError(f"{path}: suite file not found", exit_code=2)
    if path.is_dir():
        raise FinsentError(f"{path}: is a folder, expected a YAML suite file", exit_code=2)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise FinsentError(f"{path}: not UTF-8 text (byte offset {exc.start})", exit_code=2) from None
    try:
        return yaml.safe_load(text), yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise FinsentError(f"{path}{at}: not valid YAML ({problem}); {_quote_hint(text)}", exit_code=2) from None


def _quote_hint(text: str) -> str:
    """:data:`QUOTE_HINT`, with the first line whose value starts with an unquoted ``{placeholder}`` (the YAML
    error may point lines below it, at the end of a quoted string it opened)."""
    for i, line in enumerate(text.splitlines(), 1):
        if _UNQUOTED_PLACEHOLDER.search(line.split("#", 1)[0]):
            return f"{QUOTE_HINT} (line {i})"
    return QUOTE_HINT


def node_at(node: yaml.Node | None, loc: tuple[Any, ...]) -> tuple[yaml.Node | None, int]:
    """The node at ``loc`` (a mapping key's node for its last part) and its 1-based line; the deepest node
    found when ``loc`` leaves the file (a missing key: its mapping)."""
    line = node.start_mark.line + 1 if node is not None else 1
    for i, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if str(k.value) == str(part)), None)
            if pair is None:
                return node, line
            node, line = (pair[0] if i == len(loc) - 1 else pair[1]), pair[0].start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return node, line
    return node, line


def did_you_mean(word: str, choices: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, else ``""``."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _owner(schema: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The schema model whose field the last part of ``loc`` is."""
    owner: Any = schema
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        f = owner.model_fields.get(str(part)) if isinstance(owner, type) and issubclass(owner, BaseModel) else None
        if f is None:
            return None
        owner = TemplateSchema if part == "templates" else f.annotation
    return owner if isinstance(owner, type) and issubclass(owner, BaseModel) else None


def _schema_problems(
    exc: pydantic.ValidationError, schema: type[BaseModel], path: Path, root: yaml.Node | None
) -> list[str]:
    """Pydantic's errors as ``FILE:LINE: dotted.key: message`` lines, in file order."""
    problems: list[tuple[int, str]] = []
    errors = exc.errors()
    # a misspelt required key reads as two errors (unknown 'tempaltes', missing 'templates'): say it once
    typos = set()
    for err in errors:
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden" and (owner := _owner(schema, loc)) is not None:
            close = difflib.get_close_matches(str(loc[-1]), list(owner.model_fields), n=1, cutoff=0.6)
            if close:
                typos.add((*loc[:-1], close[0]))
    for err in errors:
        loc = tuple(p for p in err["loc"] if p not in ("[key]",))
        kind = err["type"]
        if kind == "missing" and loc in typos:
            continue
        _, line = node_at(root, loc)
        dotted = ".".join(str(p) for p in loc) or "<top level>"
        if kind == "extra_forbidden":
            owner = _owner(schema, loc)
            message = f"unknown key{did_you_mean(str(loc[-1]), list(owner.model_fields)) if owner else ''}"
        elif kind == "missing":
            message = "required key is missing"
        elif kind == "string_pattern_mismatch":
            message = f"{err.get('input')!r}: use lowercase letters, digits and _, starting with a letter"
        elif kind in ("value_error", "assertion_error"):
            message = str(err.get("msg", "")).removeprefix("Value error, ")
        elif kind == "string_type" and isinstance(err.get("input"), dict):
            message = f'expected a text, got a mapping; {QUOTE_HINT} ("{{company}} rose.")'
        else:
            message = f"{err.get('msg', 'invalid value')} (got {err.get('input')!r})"
        problems.append((line, f"{path}:{line}: {dotted}: {message}"))
    return [p for _, p in sorted(problems, key=lambda x: x[0])]


def validate_file(path: Path, schema: type[BaseModel]) -> tuple[Any, yaml.Node | None]:
    """Read ``path`` and validate it against ``schema``.

    Returns:
        The validated model and the file's YAML node tree (:func:`node_at` finds lines in it).

    Raises:
        FinsentError: unreadable, empty or not a mapping (exit code 2); RecipeError: every schema problem,
            one line each (``FILE:LINE: dotted.key: message``).
    """
    data, root = _read(path)
    if data is None:
        raise FinsentError(f"{path}: the file is empty", exit_code=2)
    if not isinstance(data, dict):
        raise FinsentError(
            f"{path}:1: expected a mapping of keys (capability, templates, ...), got a {type(data).__name__}",
            exit_code=2,
        )
    try:
        return schema.model_validate(data), root
    except pydantic.ValidationError as exc:
        raise RecipeError(_schema_problems(exc, schema, path, root)) from None
