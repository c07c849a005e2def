"""Templates -> test cases: a seeded sample of the fill combinations of each template, after CheckList's
template expansion (Ribeiro et al., 2020).

The sample depends only on the capability, the template text and its fill lists: the same suite gives the
same cases on every machine and run, and adding a template or a file leaves the others' cases alone.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from finsent_cli.core.check.suite import Capability, Expectation, Slot, Suite, Template

EXHAUSTIVE_BELOW = 20_000
"""Templates with fewer fill combinations are sampled from all of them; larger ones by random draws."""


@dataclass(frozen=True)
class Case:
    """One test: a sentence, the company it is judged toward (None: the sentence as a whole), what passes."""

    capability: str
    template: Template
    text: str
    target: str | None
    expect: Expectation


def _seed(template: Template) -> int:
    key = f"{template.capability}\n{template.text}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big")


def _fill(text: str, slots: list[Slot], drawn: dict[str, Any]) -> str:
    for s in slots:
        value = drawn[s.name][s.field] if s.field is not None else drawn[s.name]
        if value.endswith("s"):  # news style: Westmark Airlines' shares, not Airlines's
            text = text.replace(s.token + "'s", value + "'")
        text = text.replace(s.token, value)
    return text


def _combinations(
    template: Template, names: list[str], sizes: list[int], rng: random.Random
) -> Iterator[tuple[int, ...]]:
    """Fill choices (an entry index per name) in a seeded random order, each at most once."""
    total = math.prod(sizes)

    def decode(index: int) -> tuple[int, ...]:
        out = []
        for size in sizes:
            index, r = divmod(index, size)
            out.append(r)
        return tuple(out)

    if total <= EXHAUSTIVE_BELOW:
        yield from (decode(i) for i in rng.sample(range(total), total))
        return
    seen: set[int] = set()
    for _ in range(50 * template.max_cases):  # plenty: distinct draws among thousands rarely collide
        i = rng.randrange(total)
        if i not in seen:
            seen.add(i)
            yield decode(i)


def expand_template(template: Template) -> list[Case]:
    """The cases of one template: up to ``max_cases`` sentences, each once per outcome (per target).

    Placeholders that draw from the same list (``{company}``, ``{company2}``) get different entries;
    ``{company}'s`` after a value ending in s is written ``Airlines'``; the first letter of a sentence is
    capitalised.
    """
    names = list(dict.fromkeys(s.name for s in template.slots))
    source = {s.name: s.source for s in template.slots}
    sizes = [len(template.fills[source[n]]) for n in names]
    rng = random.Random(_seed(template))
    texts: dict[str, dict[str, Any]] = {}
    for choice in _combinations(template, names, sizes, rng):
        by_source: dict[str, set[int]] = {}
        clash = False
        for n, c in zip(names, choice):
            taken = by_source.setdefault(source[n], set())
            clash = clash or c in taken
            taken.add(c)
        if clash:
            continue
        drawn = {n: template.fills[source[n]][c] for n, c in zip(names, choice)}
        text = _fill(template.text, template.slots, drawn)
        text = text[:1].upper() + text[1:]
        if text not in texts:
            texts[text] = drawn
        if len(texts) == template.max_cases:
            break
    cases = []
    for text, drawn in texts.items():
        for target, expect in template.outcomes:
            filled = _fill(target, template.slots, drawn) if target is not None else None
            cases.append(Case(template.capability, template, text, filled, expect))
    return cases


def expand_capability(capability: Capability) -> list[Case]:
    """Every case of a capability, template by template."""
    return [case for t in capability.templates for case in expand_template(t)]


def expand_suite(suite: Suite) -> dict[str, list[Case]]:
    """Capability name -> its cases, in suite order."""
    return {c.name: expand_capability(c) for c in suite.capabilities}
