"""finsent's training pattern sentences (recipes/data/finance_patterns.csv) stay apart from `finsent check`'s
suite, so the suite measures whether what the patterns teach generalises, not whether a model remembers them."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import yaml

from finsent_cli.core.check.expand import expand_suite
from finsent_cli.core.check.suite import BUILTIN_DIR, load_suite
from tests.helpers import HANG_GUARD_S, REPO

PATTERNS = REPO / "recipes" / "data" / "finance_patterns.csv"
N = 4  # word n-grams


def _grams(text: str) -> set[tuple[str, ...]]:
    words = re.sub(r"\d+(?:[.,]\d+)?", "0", text.lower())
    tokens = re.findall(r"[a-z0]+", words)
    return {tuple(tokens[i : i + N]) for i in range(len(tokens) - N + 1)}


def _patterns() -> list[str]:
    with PATTERNS.open(encoding="utf-8", newline="") as fh:
        return [r["text"] for r in csv.DictReader(fh)]


def test_the_committed_patterns_are_what_the_script_writes(tmp_path: Path) -> None:
    out = tmp_path / "patterns.csv"
    script = REPO / "recipes" / "data" / "make_patterns.py"
    subprocess.run([sys.executable, str(script), "--output", str(out)], check=True, timeout=HANG_GUARD_S, capture_output=True)
    assert out.read_bytes() == PATTERNS.read_bytes(), "finance_patterns.csv is stale: python recipes/data/make_patterns.py"


def test_no_pattern_sentence_comes_close_to_a_check_case() -> None:
    cases = [c.text for cs in expand_suite(load_suite()).values() for c in cs]
    index: dict[tuple[str, ...], list[int]] = defaultdict(list)
    case_grams = [_grams(t) for t in cases]
    for i, grams in enumerate(case_grams):
        for g in grams:
            index[g].append(i)
    worst, pair = 0.0, ("", "")
    for text in _patterns():
        grams = _grams(text)
        shared: dict[int, int] = defaultdict(int)
        for g in grams:
            for i in index.get(g, ()):
                shared[i] += 1
        for i, n in shared.items():
            overlap = n / min(len(grams), len(case_grams[i]))  # share of the shorter sentence's 4-grams
            if overlap > worst:
                worst, pair = overlap, (text, cases[i])
    assert worst < 0.5, f"a pattern sentence shares {worst:.0%} of its 4-grams with a check case: {pair}"


def test_the_patterns_name_no_company_of_the_suite() -> None:
    fills = yaml.safe_load((BUILTIN_DIR / "_fills.yaml").read_text(encoding="utf-8"))["fills"]["company"]
    text = " ".join(_patterns())
    for name in fills:
        first = name.split()[0]
        assert first not in text, f"{name} (a company of finsent check's suite) appears in the patterns"
