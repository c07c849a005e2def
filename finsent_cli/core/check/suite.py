"""Capability suite files: load, validate and merge them (the format: ``resources/checks/README.md``).

A suite file holds one capability: ``capability`` (its name), ``description``, ``targets`` (true: only for
target-conditioned models), ``max_cases`` (sentences sampled per template), ``fills`` (named fill lists)
and ``templates``. A template is a ``text`` with ``{placeholders}``, an ``expect`` (a label, ``not LABEL``
or a list of labels) or a ``toward`` (an expectation per target), and optional ``target``, ``fills``,
``max_cases`` and ``note``. ``{name}`` takes a value of the fill list ``name``; ``{name.field}`` a field of
a fill list of mappings (every field of one drawn entry: ``{amount.low}`` and ``{amount.high}`` agree);
``{name2}`` draws another value of ``name`` than ``{name}`` does. Fill lists come from the template, then
its file, then the shared ``_fills.yaml`` of the built-in suite.

Every problem of a file is reported at once, one line each, naming the file, the line and the key (with a
"did you mean" for a typo): the schema and its messages are ``core.check.schema``; the checks that need the
fill lists (a placeholder without one, a target that is not in the text) or the whole file (a ``toward``
with two or more targets outside a ``targets: true`` file, whose cases a sentence model would score as one
sentence with opposite labels) are here.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from finsent_cli.core.check.schema import (
    NAME,
    Expectation,
    FillsFileSchema,
    SuiteFileSchema,
    did_you_mean,
    node_at,
    validate_file,
)
from finsent_cli.errors import FinsentError, RecipeError

BUILTIN_DIR = Path(__file__).resolve().parents[2] / "resources" / "checks"
"""The built-in suite: one ``*.yaml`` per capability, and the shared fill lists :data:`SHARED_FILLS`."""

SHARED_FILLS = "_fills.yaml"
"""The built-in file of fill lists every suite file may use (``{company}``, ``{period}``, ...)."""

_SLOT = re.compile(r"\{([^{}]*)\}")
_SLOT_INNER = re.compile(rf"^({NAME})(?:\.({NAME}))?$")
_SUFFIX = re.compile(r"^(.*?[a-z_])(\d+)$")


# ------------------------------------------------------------------------------------------- the suite


@dataclass(frozen=True)
class Slot:
    """A placeholder: ``{name}`` or ``{name.field}``, filled from the list ``source``."""

    token: str
    name: str
    field: str | None
    source: str


@dataclass
class Template:
    """A validated template, its fill lists resolved.

    Attributes:
        capability: the capability it tests.
        text: the sentence with placeholders.
        outcomes: (target template or None, expectation) per case made from one sentence.
        slots: the placeholders of ``text``, in order of appearance.
        fills: fill list name -> entries, for every list ``slots`` use.
        max_cases: most sentences sampled.
        file: the suite file; line: where the template starts in it; index: its place in ``templates``.
    """

    capability: str
    text: str
    outcomes: list[tuple[str | None, Expectation]]
    slots: list[Slot]
    fills: dict[str, tuple[Any, ...]]
    max_cases: int
    file: str
    line: int
    index: int
    note: str | None = None

    @property
    def where(self) -> str:
        """``file:line``, for messages and the report."""
        return f"{self.file}:{self.line}"


@dataclass
class Capability:
    """One capability: its templates, from every file that names it."""

    name: str
    description: str
    targets: bool
    templates: list[Template] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


@dataclass
class Suite:
    """Capabilities in order: the built-in ones (by file name), then new ones from ``--suite`` files."""

    capabilities: list[Capability]
    files: list[str]

    def names(self) -> list[str]:
        """The capability names, in order."""
        return [c.name for c in self.capabilities]

    def select(self, names: list[str] | None) -> Suite:
        """The capabilities ``names`` (all when empty), in suite order.

        Raises:
            FinsentError: a name the suite does not have (exit code 2, with a "did you mean").
        """
        if not names:
            return self
        known = self.names()
        for name in names:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
                hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(known)}"
                raise FinsentError(f"--capability {name}: no such capability ({hint})", exit_code=2)
        return Suite([c for c in self.capabilities if c.name in names], self.files)


# ------------------------------------------------------------------------------------------------ loading


def load_shared_fills(folder: Path = BUILTIN_DIR) -> dict[str, tuple[Any, ...]]:
    """The shared fill lists of the built-in suite (``{}`` when the folder has none).

    Raises:
        RecipeError: the file breaks the format.
    """
    path = folder / SHARED_FILLS
    if not path.is_file():
        return {}
    parsed, _ = validate_file(path, FillsFileSchema)
    return dict(parsed.fills)


def parse_slots(text: str) -> list[tuple[str, str, str | None]]:
    """The placeholders of ``text`` as (token, name, field), in order.

    Raises:
        ValueError: a malformed placeholder or a stray brace.
    """
    out = []
    for m in _SLOT.finditer(text):
        inner = _SLOT_INNER.match(m.group(1).strip())
        if inner is None:
            raise ValueError(f"malformed placeholder {m.group(0)} (write {{name}} or {{name.field}}, lowercase)")
        out.append((m.group(0), inner.group(1), inner.group(2)))
    rest = _SLOT.sub("", text)
    if "{" in rest or "}" in rest:
        raise ValueError("a brace that opens or closes no placeholder")
    return out


def _resolve_slots(text: str, fills: dict[str, tuple[Any, ...]]) -> list[Slot]:
    """The slots of ``text`` with their fill list; ``ValueError`` naming the first that has none or misuses one."""
    slots = []
    for token, name, fld in parse_slots(text):
        source = name
        if name not in fills and (m := _SUFFIX.match(name)) and m.group(1) in fills:
            source = m.group(1)  # {company2}: another company than {company}
        if source not in fills:
            raise ValueError(f"placeholder {token} has no fill list{did_you_mean(name, sorted(fills))}")
        entries = fills[source]
        if isinstance(entries[0], dict) and fld is None:
            raise ValueError(
                f"placeholder {token}: the list '{source}' holds mappings; name a field: {', '.join('{' + name + '.' + k + '}' for k in entries[0])}"
            )
        if isinstance(entries[0], str) and fld is not None:
            raise ValueError(f"placeholder {token}: the list '{source}' holds strings, not mappings; write {{{name}}}")
        if fld is not None and fld not in entries[0]:
            raise ValueError(
                f"placeholder {token}: the entries of '{source}' have no field '{fld}'{did_you_mean(fld, list(entries[0]))}"
            )
        slots.append(Slot(token, name, fld, source))
    names_by_source: dict[str, set[str]] = {}
    for s in slots:
        names_by_source.setdefault(s.source, set()).add(s.name)
    for source, names in names_by_source.items():
        if len(names) > len(fills[source]):
            raise ValueError(
                f"{', '.join(sorted(names))} need {len(names)} different values of '{source}', which has {len(fills[source])}"
            )
    return slots


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _templates(
    parsed: SuiteFileSchema, path: Path, root: yaml.Node | None, shared: dict[str, tuple[Any, ...]]
) -> tuple[list[Template], list[tuple[int, str]]]:
    out: list[Template] = []
    problems: list[tuple[int, str]] = []
    for i, t in enumerate(parsed.templates):
        fills = {**shared, **parsed.fills, **t.fills}

        def problem(key: str, message: str, i: int = i) -> None:
            _, line = node_at(root, ("templates", i, key) if key else ("templates", i))
            problems.append((line, f"{path}:{line}: templates.{i}{'.' + key if key else ''}: {message}"))

        try:
            slots = _resolve_slots(t.text, fills)
        except ValueError as exc:
            problem("text", f"{exc} in template {_short(t.text)!r}")
            continue
        if (t.expect is None) == (t.toward is None):
            problem(
                "",
                "give either expect (the label of every case) or toward (a label per target), not "
                + ("both" if t.expect else "neither"),
            )
            continue
        if t.toward is not None and t.target is not None:
            problem("target", "toward names the targets already; drop target")
            continue
        if t.toward is not None and len(t.toward) > 1 and not parsed.targets:
            problem(
                "toward",
                f"{len(t.toward)} targets need 'targets: true' at the top of the file (a sentence model would score "
                "the one sentence against each target's label, so one case always fails); or give expect",
            )
            continue
        tokens = {s.token for s in slots}
        outcomes: list[tuple[str | None, Expectation]] = []
        if t.toward is not None:
            outcomes = list(t.toward.items())
        else:
            default = "{company}" if "{company}" in tokens else None
            outcomes = [(t.target if t.target is not None else default, t.expect)]
        bad = False
        for target, _ in outcomes:
            if target is None:
                continue
            try:
                used = {tok for tok, _, _ in parse_slots(target)}
            except ValueError as exc:
                problem("toward" if t.toward is not None else "target", f"{target!r}: {exc}")
                bad = True
                continue
            if not used or not used <= tokens:
                problem(
                    "toward" if t.toward is not None else "target",
                    f"{target!r}: a target names placeholders of the text ({', '.join(sorted(tokens)) or 'it has none'})",
                )
                bad = True
        if bad:
            continue
        _, line = node_at(root, ("templates", i))
        out.append(Template(parsed.capability, t.text, outcomes, slots, {s.source: fills[s.source] for s in slots},
                            t.max_cases or parsed.max_cases, str(path), line, i, t.note))  # fmt: skip
    return out, problems


def load_suite_file(path: str | Path, shared: dict[str, tuple[Any, ...]] | None = None) -> Capability:
    """One suite file as a :class:`Capability`.

    Args:
        path: the YAML file.
        shared: fill lists every template may use (default: the built-in :data:`SHARED_FILLS`).

    Raises:
        FinsentError: unreadable file (exit code 2); RecipeError: every problem of the file, one line each,
            naming the file, line and key.
    """
    path = Path(path)
    shared = load_shared_fills() if shared is None else shared
    parsed, root = validate_file(path, SuiteFileSchema)
    templates, problems = _templates(parsed, path, root, shared)
    if problems:
        raise RecipeError([p for _, p in sorted(problems, key=lambda x: x[0])])
    return Capability(parsed.capability, parsed.description.strip(), parsed.targets, templates, [str(path)])


def builtin_files(folder: Path = BUILTIN_DIR) -> list[Path]:
    """The built-in suite files, by name (``_fills.yaml`` is not one)."""
    return sorted(p for p in folder.glob("*.yaml") if not p.name.startswith("_"))


def load_suite(extra: list[str | Path] | None = None, *, builtin: bool = True, folder: Path = BUILTIN_DIR) -> Suite:
    """The built-in suite (unless ``builtin`` is off) and the ``extra`` files, merged by capability name: a
    file naming a known capability adds its templates to it.

    Raises:
        FinsentError: no file at all, or a file naming a capability with another ``targets`` than before;
            RecipeError: the problems of a file (see :func:`load_suite_file`).
    """
    paths = [*(builtin_files(folder) if builtin else []), *map(Path, extra or [])]
    if not paths:
        raise FinsentError("no suite: give --suite FILE, or drop --suite-only to use the built-in suite", exit_code=2)
    shared = load_shared_fills(folder)
    by_name: dict[str, Capability] = {}
    for path in paths:
        cap = load_suite_file(path, shared)
        known = by_name.get(cap.name)
        if known is None:
            by_name[cap.name] = cap
            continue
        if known.targets != cap.targets:
            raise FinsentError(
                f"{path}: capability '{cap.name}' has targets: {str(cap.targets).lower()} here but {str(known.targets).lower()} in {known.files[0]}",
                exit_code=2,
            )
        known.templates.extend(cap.templates)
        known.files.extend(cap.files)
        known.description = known.description or cap.description
    return Suite(list(by_name.values()), [str(p) for p in paths])
