"""Capability suites (core.check): loading and validating suite files, expanding templates, scoring."""

from __future__ import annotations

import hashlib
import json
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

from finsent_cli.core.check.expand import expand_capability, expand_suite, expand_template
from finsent_cli.core.check.run import NEEDS_TARGETS, NO_TARGETS, score_suite, write_report
from finsent_cli.core.check.schema import SuiteFileSchema, TemplateSchema, parse_expectation
from finsent_cli.core.check.suite import (
    BUILTIN_DIR,
    builtin_files,
    load_shared_fills,
    load_suite,
    load_suite_file,
)
from finsent_cli.errors import FinsentError, RecipeError
from finsent_cli.labels import LABEL2ID, LABELS


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def _problems(path: Path, shared: dict | None = None) -> list[str]:
    with pytest.raises(FinsentError) as info:
        load_suite_file(path, {} if shared is None else shared)
    return info.value.message.split("\n")


def constant(label: str, value: float = 2.0):
    """A predict function that always says ``label``: logits (0, 0, 0) but ``value`` for it, softmaxed."""

    def predict(texts, targets, task):
        logits = np.zeros((len(texts), 3))
        logits[:, LABEL2ID[label]] = value
        task.advance(len(texts))
        return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    return predict


# ------------------------------------------------------------------------------------------ the shipped suite


def test_every_shipped_file_loads_and_each_capability_has_many_templates() -> None:
    suite = load_suite()
    assert suite.names() == [
        "bad_quantity",
        "contrast",
        "expectations",
        "good_quantity",
        "negation",
        "neutral_facts",
        "target",
    ]
    assert [Path(f).name for f in suite.files] == [p.name for p in builtin_files()]
    for cap in suite.capabilities:
        assert len(cap.templates) >= 6, cap.name
        assert cap.description
    assert [c.name for c in suite.capabilities if c.targets] == ["target"]
    assert all(t.outcomes[0][0] is not None for c in suite.capabilities if c.targets for t in c.templates)


EXPANDED_SUITE_SHA256 = "010ef95adecaf090f1f84d8e0a1d477e750752e354ac8c80349e9e5e332eebd5"
"""The shipped suite's cases (capability, text, target, expectation), pinned: another Python, a changed
expansion or an unnoticed edit of a suite file would change what `finsent check` measures."""


def _digest(expanded: dict) -> str:
    cases = {k: [[c.text, c.target, c.expect.spelled] for c in v] for k, v in expanded.items()}
    return hashlib.sha256(json.dumps(cases, ensure_ascii=False).encode()).hexdigest()


def test_the_shipped_suite_expands_to_the_pinned_cases() -> None:
    expanded = expand_suite(load_suite())
    digest = _digest(expanded)
    assert digest == EXPANDED_SUITE_SHA256, (
        "the cases of the built-in suite changed. If you edited finsent_cli/resources/checks/ (or the expansion) "
        f"on purpose, set EXPANDED_SUITE_SHA256 in {Path(__file__).name} to {digest!r} and say so in CHANGELOG.md; "
        "otherwise the same suite no longer gives the same cases"
    )
    sentences = sum(len(v) for k, v in expanded.items() if k != "target")
    assert 1_000 <= sentences <= 1_600  # a whole suite runs in well under a minute on MiniLM on a CPU
    for cases in expanded.values():
        texts = [(c.text, c.target) for c in cases]
        assert len(texts) == len(set(texts))  # no case twice
        assert all("{" not in c.text and "}" not in c.text and c.text[0].isupper() for c in cases)
    # every template gives its full sample (max_cases sentences, once per target of a target sentence)
    for cap in load_suite().capabilities:
        for t in cap.templates:
            assert len(expand_template(t)) == t.max_cases * len(t.outcomes), t.text


def test_shared_fills_are_well_formed() -> None:
    fills = load_shared_fills()
    assert len(fills["company"]) >= 20 and all(isinstance(v, str) for v in fills["company"])
    assert all(set(v) == {"low", "high"} for v in fills["amount"])
    assert (BUILTIN_DIR / "_fills.yaml").is_file() and "_fills.yaml" not in [p.name for p in builtin_files()]


def test_every_shipped_file_opens_with_the_command_that_runs_it() -> None:
    for path in builtin_files():
        lines = path.read_text(encoding="utf-8").splitlines()
        name = load_suite_file(path).name
        assert lines[0].startswith(f"# finsent check capability suite: {name}")
        assert f"finsent check MODEL --capability {name}" in lines[1]
        header = [line for line in lines[: lines.index("")] if line.startswith("#")]
        assert len(header) <= 3 and "README.md" in header[-1], path.name  # the format lives in one place


def test_the_format_is_documented_once_with_every_key_and_shared_list() -> None:
    readme = (BUILTIN_DIR / "README.md").read_text(encoding="utf-8")
    keys = set(SuiteFileSchema.model_fields) | set(TemplateSchema.model_fields)
    assert [k for k in sorted(keys) if not re.search(rf"^\s*(- )?{k}:", readme, re.MULTILINE)] == []
    listed = re.search(r"then `_fills.yaml`:(.*?)\.\n", readme, re.DOTALL)
    assert listed and {w.strip() for w in listed.group(1).split(",")} == set(load_shared_fills())
    for path in [*builtin_files(), BUILTIN_DIR / "_fills.yaml"]:
        assert "expect:" not in path.read_text(encoding="utf-8").split("\ncapability:")[0], path.name  # no copy


# ------------------------------------------------------------------------------------------------ expansion


def test_expansion_counts_distinct_draws_and_mapping_fields(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "s.yaml",
        """
        capability: demo
        fills:
          company: [Acme, Borg, Corvus]
          verb: [rose, fell]
          amount: [{low: "EUR 1 mn", high: "EUR 2 mn"}, {low: "$3 million", high: "$5 million"}]
        templates:
          - text: "{company} shares {verb}."
            expect: neutral
          - text: "{company} beat {company2}."
            expect: positive
          - text: "{company}'s loss narrowed to {amount.low} from {amount.high}."
            expect: positive
            max_cases: 4
          - text: "{company} and {company2} and {company3}."
            expect: neutral
            max_cases: 2
    """,
    )
    cap = load_suite_file(path, {})
    counts = [len(expand_template(t)) for t in cap.templates]
    assert counts == [6, 6, 4, 2]  # 3 x 2; 3 x 2 ordered pairs (never Acme beat Acme); capped at 4 of 6; at 2 of 6
    beat = [c.text for c in expand_template(cap.templates[1])]
    assert sorted(beat) == sorted(
        f"{a} beat {b}." for a in ["Acme", "Borg", "Corvus"] for b in ["Acme", "Borg", "Corvus"] if a != b
    )
    for case in expand_template(cap.templates[2]):
        assert case.text.endswith(
            ("to EUR 1 mn from EUR 2 mn.", "to $3 million from $5 million.")
        )  # one entry for both fields
    assert [c.target for c in expand_template(cap.templates[0])] == [
        c.text.split()[0] for c in expand_template(cap.templates[0])
    ]
    # the sample is seeded by the template: the same cases again, and the same after another template is added
    again = load_suite_file(path, {})
    assert [c.text for c in expand_capability(again)] == [c.text for c in expand_capability(cap)]
    extra = _write(
        tmp_path / "more.yaml",
        "capability: demo\nfills: {company: [Acme, Borg, Corvus]}\ntemplates:\n  - {text: '{company} grew.', expect: positive}\n",
    )
    merged = load_suite([path, extra], builtin=False)
    assert [c.text for c in expand_capability(merged.capabilities[0])][: sum(counts)] == [
        c.text for c in expand_capability(cap)
    ]


def test_possessive_of_a_name_ending_in_s_and_capitalised_start(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "s.yaml",
        """
        capability: demo
        fills: {company: [Westmark Airlines], when: [in May]}
        templates:
          - {text: "{when}, {company}'s sales rose.", expect: positive}
    """,
    )
    assert [c.text for c in expand_capability(load_suite_file(path, {}))] == ["In May, Westmark Airlines' sales rose."]


def test_large_templates_are_sampled_without_enumerating(tmp_path: Path) -> None:
    words = [f"w{i}" for i in range(40)]
    path = _write(
        tmp_path / "s.yaml",
        f"""
        capability: demo
        fills: {{a: {words}, b: {words}, c: {words}}}
        templates:
          - {{text: "{{a}} {{b}} {{c}}", expect: neutral, max_cases: 25}}
    """,
    )
    cases = expand_capability(load_suite_file(path, {}))  # 64,000 combinations
    assert len(cases) == 25 and len({c.text for c in cases}) == 25
    assert [c.text for c in cases] == [c.text for c in expand_capability(load_suite_file(path, {}))]


def test_expectations() -> None:
    assert parse_expectation("positive").allowed == {"positive"}
    not_neg = parse_expectation("not negative")
    assert not_neg.allowed == {"neutral", "positive"} and not_neg.spelled == "not negative"
    assert not_neg.passes("neutral") and not not_neg.passes("negative")
    assert parse_expectation(["positive", "neutral"]).spelled == "neutral or positive"
    with pytest.raises(ValueError, match="did you mean 'positive'"):
        parse_expectation("postive")
    with pytest.raises(ValueError, match="every label"):
        parse_expectation(list(LABELS))


# ------------------------------------------------------------------------------------------ errors in a file


def test_a_misspelt_key_is_one_line_with_file_line_and_did_you_mean(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "s.yaml",
        """
        capability: demo
        templates:
          - text: "Profit rose."
            expcet: positive
    """,
    )
    assert _problems(path) == [f"{path}:4: templates.0.expcet: unknown key (did you mean 'expect'?)"]
    top = _write(tmp_path / "t.yaml", "capability: demo\ntempaltes:\n  - {text: x, expect: neutral}\n")
    assert _problems(top) == [
        f"{top}:2: tempaltes: unknown key (did you mean 'templates'?)"
    ]  # not also "templates missing"


def test_an_unknown_label_names_file_line_and_the_closest_label(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "s.yaml",
        """
        capability: demo
        templates:
          - {text: "Profit rose.", expect: positive}
          - text: "Profit fell."
            expect: negatve
    """,
    )
    [line] = _problems(path)
    assert line.startswith(f"{path}:5: templates.1.expect: 'negatve' is not a label (did you mean 'negative'?)")
    toward = _write(
        tmp_path / "t.yaml",
        """
        capability: demo
        fills: {company: [A, B]}
        templates:
          - {text: "{company} beat {company2}.", toward: {"{company}": positive, "{company2}": negtive}}
    """,
    )
    [line] = _problems(toward)
    assert line.startswith(
        f"{toward}:4: templates.0.toward: {{company2}}: 'negtive' is not a label (did you mean 'negative'?)"
    )


def test_a_placeholder_without_a_fill_list_names_the_template(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "s.yaml",
        """
        capability: demo
        fills: {company: [Acme]}
        templates:
          - {text: "{company} rose.", expect: positive}
          - {text: "{compny} fell.", expect: negative}
    """,
    )
    assert _problems(path) == [
        f"{path}:5: templates.1.text: placeholder {{compny}} has no fill list (did you mean 'company'?) in template '{{compny}} fell.'"
    ]


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "s.yaml",
        """
        capability: Demo
        max_cases: 0
        fills: {verb: []}
        templates:
          - {text: "{verb} {x.y}", expect: positive}
          - {text: "Profit rose."}
          - {text: "Profit rose.", expect: positive, toward: {a: positive}}
    """,
    )
    with pytest.raises(RecipeError) as info:
        load_suite_file(path, {})
    problems = info.value.problems
    assert [p.split(": ")[0] for p in problems] == [
        f"{path}:1",
        f"{path}:2",
        f"{path}:3",
    ]  # schema first, then templates
    assert "capability: 'Demo': use lowercase letters" in problems[0]
    assert "max_cases: Input should be greater than or equal to 1" in problems[1]
    assert "fills.verb: an empty fill list" in problems[2]
    assert info.value.exit_code == 2


def test_template_level_problems(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "s.yaml",
        """
        capability: demo
        fills:
          company: [Acme]
          amount: [{low: "1", high: "2"}]
        templates:
          - {text: "{amount} rose.", expect: positive}
          - {text: "{company} rose.", expect: positive, target: "{bank}"}
          - {text: "{company} beat {company2}.", expect: positive}
          - {text: "Profit rose."}
          - {text: "Profit {rose.", expect: positive}
    """,
    )
    problems = _problems(path)
    assert problems[0].startswith(
        f"{path}:6: templates.0.text: placeholder {{amount}}: the list 'amount' holds mappings; name a field: {{amount.low}}, {{amount.high}}"
    )
    assert (
        problems[1]
        == f"{path}:7: templates.1.target: '{{bank}}': a target names placeholders of the text ({{company}})"
    )
    assert problems[2].startswith(
        f"{path}:8: templates.2.text: company, company2 need 2 different values of 'company', which has 1"
    )
    assert (
        problems[3]
        == f"{path}:9: templates.3: give either expect (the label of every case) or toward (a label per target), not neither"
    )
    assert problems[4].startswith(f"{path}:10: templates.4.text: a brace that opens or closes no placeholder")


def test_toward_with_two_targets_needs_a_targets_file(tmp_path: Path) -> None:
    """A sentence model would score "Acme beat Borg." as positive and as negative: one case always fails."""
    text = """
        capability: demo
        fills: {company: [Acme, Borg]}
        templates:
          - {text: "{company} rose.", toward: {"{company}": positive}}
          - text: "{company} beat {company2}."
            toward: {"{company}": positive, "{company2}": negative}
    """
    path = _write(tmp_path / "s.yaml", text)
    assert _problems(path) == [
        (
            f"{path}:6: templates.1.toward: 2 targets need 'targets: true' at the top of the file (a sentence model "
            "would score the one sentence against each target's label, so one case always fails); or give expect"
        )
    ]  # one target is a plain expectation toward it: allowed
    ok = _write(tmp_path / "t.yaml", "targets: true\n" + textwrap.dedent(text).lstrip())
    assert [t.outcomes for t in load_suite_file(ok, {}).templates][1] == [
        ("{company}", parse_expectation("positive")),
        ("{company2}", parse_expectation("negative")),
    ]


def test_an_unquoted_placeholder_says_to_quote_the_text(tmp_path: Path) -> None:
    # YAML reads {company} as a flow mapping: an error a few lines on, or no error and a mapping for a text
    cases = {
        "capability: demo\ntemplates:\n  - text: {company} rose 5%.\n    expect: positive\n": ":3: not valid YAML",
        "capability: demo\ntemplates:\n  - text: {company}'s loss narrowed.\n    expect: positive\n": ":5: not valid YAML",
    }
    for i, (text, where) in enumerate(cases.items()):
        path = _write(tmp_path / f"s{i}.yaml", text)
        with pytest.raises(FinsentError) as info:
            load_suite_file(path, {})
        assert info.value.message.startswith(f"{path}{where} (") and info.value.message.endswith(
            "; quote texts that start with { (line 3)"
        )
        assert "\n" not in info.value.message and info.value.exit_code == 2
    other = _write(tmp_path / "other.yaml", "capability: demo\ntemplates: [\n")  # no placeholder to blame
    with pytest.raises(FinsentError, match=r"\); quote texts that start with \{$"):
        load_suite_file(other, {})
    whole = _write(tmp_path / "whole.yaml", "capability: demo\ntemplates:\n  - text: {company}\n    expect: neutral\n")
    assert _problems(whole) == [
        f'{whole}:3: templates.0.text: expected a text, got a mapping; quote texts that start with {{ ("{{company}} rose.")'
    ]


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(FinsentError, match="suite file not found"):
        load_suite_file(tmp_path / "nope.yaml", {})
    bad = _write(tmp_path / "bad.yaml", "capability: demo\ntemplates: [\n")
    with pytest.raises(FinsentError, match=rf"^{bad}:3: not valid YAML"):
        load_suite_file(bad, {})
    listing = _write(tmp_path / "list.yaml", "- a\n- b\n")
    with pytest.raises(FinsentError, match="expected a mapping of keys"):
        load_suite_file(listing, {})


def test_merging_by_capability_and_selecting(tmp_path: Path) -> None:
    mine = _write(
        tmp_path / "neg.yaml",
        "capability: negation\ntemplates:\n  - {text: '{company} did not go bust.', expect: not negative}\n",
    )
    suite = load_suite([mine])
    negation = suite.select(["negation"]).capabilities[0]
    assert negation.templates[-1].text == "{company} did not go bust." and negation.files[-1] == str(mine)
    assert len(negation.templates) == len(load_suite().select(["negation"]).capabilities[0].templates) + 1
    with pytest.raises(FinsentError, match=r"--capability negaton: no such capability \(did you mean 'negation'\?\)"):
        suite.select(["negaton"])
    clash = _write(
        tmp_path / "t.yaml",
        "capability: negation\ntargets: true\ntemplates:\n  - {text: '{company} rose.', expect: positive}\n",
    )
    with pytest.raises(FinsentError, match="has targets: true here but false in"):
        load_suite([clash])
    with pytest.raises(FinsentError, match="no suite"):
        load_suite([], builtin=False)


# --------------------------------------------------------------------------------------------------- scoring


def test_an_always_neutral_model_passes_exactly_the_cases_that_allow_neutral() -> None:
    suite = load_suite()
    report = score_suite(suite, constant("neutral"), target_conditioned=False)
    by_name = {c.name: c for c in report.capabilities}
    templates = {c.name: c.templates for c in suite.capabilities}
    sentences = {name: sum(t.max_cases * len(t.outcomes) for t in ts) for name, ts in templates.items()}
    assert by_name["neutral_facts"].pass_rate == 1.0 and by_name["neutral_facts"].cases == sentences["neutral_facts"]
    cases = expand_suite(suite)
    for name, cap in by_name.items():
        if name == "target":
            continue
        allowing = [c for c in cases[name] if "neutral" in c.expect.allowed]
        assert cap.passed == len(allowing) and cap.cases == len(cases[name])
        assert len(cap.failures) == cap.cases - cap.passed
        assert all(
            f.predicted == "neutral" and f.confidence == pytest.approx(np.exp(2) / (np.exp(2) + 2))
            for f in cap.failures
        )
    # counted from the templates' expectations as written, not from the expanded cases the loop above used
    negation = [
        t for t in templates["negation"] if t.outcomes[0][1].spelled in ("neutral", "not negative", "not positive")
    ]
    assert negation and by_name["negation"].passed == sum(t.max_cases for t in negation)
    assert by_name["target"].pass_rate is None and by_name["target"].skipped_reason == NEEDS_TARGETS
    assert by_name["target"].skipped_cases == sentences["target"]
    assert report.cases == sum(len(v) for k, v in cases.items() if k != "target")
    assert [c.name for c in report.below(0.5)] == [
        "bad_quantity",
        "contrast",
        "expectations",
        "good_quantity",
        "negation",
    ]
    assert report.below(0.0) == []


def test_a_target_model_reads_pairs_and_skips_sentences_without_a_target(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "s.yaml",
        """
        capability: demo
        targets: true
        fills: {company: [Acme, Borg], verb: [rose, fell]}
        templates:
          - {text: "{company} beat {company2}.", toward: {"{company}": positive, "{company2}": negative}}
          - {text: "{company} shares {verb}.", expect: neutral}
          - {text: "Shares {verb}.", expect: neutral}
    """,
    )
    seen: list[tuple[str, str]] = []

    def predict(texts, targets, task):
        seen.extend(zip(texts, targets))
        return constant("positive")(texts, targets, task)

    report = score_suite(load_suite([path], builtin=False), predict, target_conditioned=True)
    [cap] = report.capabilities
    assert [(t.cases, t.passed, t.skipped) for t in cap.templates] == [(4, 2, 0), (4, 0, 0), (0, 0, 2)]
    assert sorted(seen[:4]) == [
        ("Acme beat Borg.", "Acme"),
        ("Acme beat Borg.", "Borg"),
        ("Borg beat Acme.", "Acme"),
        ("Borg beat Acme.", "Borg"),
    ]
    assert all(text.startswith(target) for text, target in seen[4:])
    only_sentences = _write(
        tmp_path / "n.yaml", "capability: plain\ntemplates:\n  - {text: 'Shares rose.', expect: positive}\n"
    )
    plain = score_suite(load_suite([only_sentences], builtin=False), predict, target_conditioned=True).capabilities[0]
    assert plain.pass_rate is None and plain.skipped_reason == NO_TARGETS


def test_the_json_report(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "s.yaml",
        """
        capability: demo
        description: A demo.
        fills: {company: [Acme, Borg, Corvus]}
        templates:
          - {text: "{company} will report on Monday.", expect: neutral}
          - {text: "{company} profit rose.", expect: positive, note: up}
    """,
    )
    report = score_suite(load_suite([path], builtin=False), constant("neutral"), target_conditioned=False, model="m")
    out = write_report(report, tmp_path / "out" / "check.json")
    data = json.loads(out.read_text())
    assert {k: data[k] for k in ("model", "target_conditioned", "cases", "passed", "pass_rate", "mean_capability_pass_rate")} == {
        "model": "m", "target_conditioned": False, "cases": 6, "passed": 3, "pass_rate": 0.5, "mean_capability_pass_rate": 0.5,
    }  # fmt: skip
    [cap] = data["capabilities"]
    assert (cap["name"], cap["description"], cap["status"], cap["cases"], cap["passed"], cap["pass_rate"]) == (
        "demo",
        "A demo.",
        "run",
        6,
        3,
        0.5,
    )
    assert [
        (t["template"], t["expected"], t["cases"], t["passed"], t["pass_rate"], t["where"]) for t in cap["templates"]
    ] == [
        ("{company} will report on Monday.", "neutral", 3, 3, 1.0, f"{path}:5"),
        ("{company} profit rose.", "positive", 3, 0, 0.0, f"{path}:6"),
    ]
    assert len(cap["failures"]) == 3
    first = cap["failures"][0]
    assert first["expected"] == "positive" and first["predicted"] == "neutral" and first["confidence"] == 0.787
    assert first["probs"] == {"negative": 0.1065, "neutral": 0.787, "positive": 0.1065}
    assert first["text"].endswith(" profit rose.") and first["template"] == "{company} profit rose."
    assert data["suite"] == [str(path)] and data["labels"] == list(LABELS)
