"""`finsent check [MODEL]` through the real CLI: the table, the JSON report, --min-pass, one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from finsent_cli.core.inference import loading
from finsent_cli.core.inference.classifier import Classifier
from finsent_cli.labels import LABEL2ID
from tests.classifier_fakes import sharpened_copy
from tests.helpers import HANG_GUARD_S, REPO, assert_one_line_error, run_cli
from tests.test_startup import HEAVY

SUITE = """
capability: demo
description: A demo capability.
fills: {company: [Acme, Borg, Corvus]}
templates:
  - {text: "{company} will report on Monday.", expect: neutral}
  - {text: "{company} profit rose.", expect: positive}
  - {text: "{company} did not cut its dividend.", expect: not negative}
"""

TARGETS = """
capability: rivals
targets: true
fills: {company: [Acme, Borg, Corvus]}
templates:
  - {text: "{company} beat {company2}.", toward: {"{company}": positive, "{company2}": negative}}
"""


class Constant(nn.Module):
    """Logits 2 for one label, 0 for the others, whatever the input: softmax 0.787 for the label."""

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(input_ids.shape[0], 3)  # (B, 3)
        logits[:, LABEL2ID[self.label]] = 2.0
        return logits


@pytest.fixture()
def always(monkeypatch: pytest.MonkeyPatch, tiny_bert: Path):
    """Make every model folder load as a classifier that always says LABEL (target-conditioned or not)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert)

    def use(label: str, targets: bool = False) -> None:
        def load(path, device="cpu", label_map=None, *, calibrated=True, backend="torch"):
            return Classifier(
                Constant(label), tok, {0: "negative", 1: "neutral", 2: "positive"}, 64, {"targets": targets}, Path(path)
            )

        monkeypatch.setattr(loading, "load_classifier", load)

    return use


@pytest.fixture(autouse=True)
def _no_env_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FINSENT_MODEL", raising=False)
    monkeypatch.chdir(tmp_path)  # no runs/latest unless a test makes one


def _suite(tmp_path: Path, text: str = SUITE, name: str = "mine.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def test_exact_pass_rates_table_and_json_report(always, tiny_bert: Path, tmp_path: Path) -> None:
    always("neutral")
    out = tmp_path / "reports" / "check.json"
    res = run_cli("check", str(tiny_bert), "--suite", str(_suite(tmp_path)), "--suite-only", "--output", str(out))
    assert res.exit_code == 0, res.stderr
    assert "demo" in res.stdout and "6 of 9 cases passed (66.7%)" in res.stdout
    compact = re.sub(r"[\s\u2502]", "", res.stdout)  # the table without its wrapping and column rules
    assert re.search(r"\u201c(Acme|Borg|Corvus)profitrose\.\u201d\u2192neutral\(0\.79\),expectedpositive", compact)
    data = json.loads(out.read_text())
    [cap] = data["capabilities"]
    assert (cap["cases"], cap["passed"], cap["pass_rate"]) == (9, 6, 0.6667)
    assert [(t["expected"], t["passed"], t["cases"]) for t in cap["templates"]] == [
        ("neutral", 3, 3),
        ("positive", 0, 3),
        ("not negative", 3, 3),
    ]
    assert sorted(f["text"] for f in cap["failures"]) == [
        "Acme profit rose.",
        "Borg profit rose.",
        "Corvus profit rose.",
    ]
    assert data["model"] == str(tiny_bert) and data["target_conditioned"] is False


def test_the_builtin_suite_on_an_always_neutral_model(always, tiny_bert: Path, tmp_path: Path) -> None:
    always("neutral")
    out = tmp_path / "check.json"
    res = run_cli("check", str(tiny_bert), "-o", str(out), "--failures", "0", "-q")
    assert res.exit_code == 0, res.stderr
    caps = {c["name"]: c for c in json.loads(out.read_text())["capabilities"]}
    assert caps["neutral_facts"]["pass_rate"] == 1.0
    assert (
        caps["target"]["status"] == "skipped" and caps["target"]["cases"] == 0 and caps["target"]["pass_rate"] is None
    )
    for cap in caps.values():  # exactly the templates that allow neutral pass, wholly
        for t in cap["templates"]:
            allows = t["expected"] in ("neutral", "not negative", "not positive")
            assert t["passed"] == (t["cases"] if allows else 0), t
    assert "needsatarget-conditionedmodel" in re.sub(r"[\s\u2502]", "", res.stdout)


def test_target_capability_runs_for_a_target_model_and_is_skipped_otherwise(
    always, tiny_bert: Path, tmp_path: Path
) -> None:
    suite = _suite(tmp_path, TARGETS)
    always("positive", targets=True)
    out = tmp_path / "t.json"
    res = run_cli("check", str(tiny_bert), "--suite", str(suite), "--suite-only", "-o", str(out), "-q")
    assert res.exit_code == 0, res.stderr
    [cap] = json.loads(out.read_text())["capabilities"]
    assert (cap["status"], cap["cases"], cap["passed"]) == ("run", 12, 6)  # 6 ordered pairs, each toward both
    assert {f["target"] for f in cap["failures"]} == {f["text"].split()[2].rstrip(".") for f in cap["failures"]}
    always("positive", targets=False)
    res = run_cli("check", str(tiny_bert), "--suite", str(suite), "--suite-only", "-o", str(out), "-q")
    assert res.exit_code == 0, res.stderr
    [cap] = json.loads(out.read_text())["capabilities"]
    assert (cap["status"], cap["cases"], cap["skipped_cases"]) == ("skipped", 0, 12)


def test_min_pass(always, tiny_bert: Path, tmp_path: Path) -> None:
    always("neutral")
    suite = _suite(tmp_path)
    assert (
        run_cli("check", str(tiny_bert), "--suite", str(suite), "--suite-only", "--min-pass", "0.6", "-q").exit_code
        == 0
    )
    res = run_cli("check", str(tiny_bert), "--suite", str(suite), "--suite-only", "--min-pass", "0.7", "-q")
    assert assert_one_line_error(res, code=1) == "error: below --min-pass 0.7: demo 66.7%"


def test_capability_selection_and_bad_input_are_one_line_errors(always, tiny_bert: Path, tmp_path: Path) -> None:
    always("neutral")
    out = tmp_path / "c.json"
    res = run_cli("check", str(tiny_bert), "--capability", "negation", "-c", "neutral_facts", "-o", str(out), "-q")
    assert res.exit_code == 0, res.stderr
    assert [c["name"] for c in json.loads(out.read_text())["capabilities"]] == ["negation", "neutral_facts"]
    res = run_cli("check", str(tiny_bert), "--capability", "negaton")
    assert_one_line_error(res, "--capability negaton: no such capability (did you mean 'negation'?)", code=2)
    bad = _suite(tmp_path, SUITE.replace("expect: positive", "expect: postive"), "bad.yaml")
    res = run_cli("check", str(tiny_bert), "--suite", str(bad))
    assert_one_line_error(
        res, f"{bad}:6: templates.1.expect: 'postive' is not a label (did you mean 'positive'?)", code=2
    )
    typo = _suite(tmp_path, SUITE.replace('  - {text: "{company} profit', '  - {txet: "{company} profit'), "typo.yaml")
    res = run_cli("check", str(tiny_bert), "--suite", str(typo))
    assert_one_line_error(res, f"{typo}:6: templates.1.txet: unknown key (did you mean 'text'?)", code=2)
    assert_one_line_error(
        run_cli("check", str(tiny_bert), "--suite", str(tmp_path / "nope.yaml")),
        "nope.yaml: suite file not found",
        code=2,
    )
    assert_one_line_error(
        run_cli("check", str(tiny_bert), "--suite-only"), "--suite-only needs at least one --suite FILE", code=2
    )
    unquoted = _suite(
        tmp_path, SUITE.replace('{text: "{company} profit rose."', "{text: {company} profit rose."), "q.yaml"
    )
    res = run_cli("check", str(tiny_bert), "--suite", str(unquoted))
    assert_one_line_error(res, f"{unquoted}:", "not valid YAML", "quote texts that start with { (line 6)", code=2)
    assert_one_line_error(run_cli("check", str(tmp_path / "no_model")), "no_model", code=1)
    folder = tmp_path / "a_folder"
    folder.mkdir()
    assert_one_line_error(run_cli("check", str(tiny_bert), "-o", str(folder)))


def test_the_default_model_is_said_with_quiet_too(always, tmp_path: Path) -> None:
    # nothing names a model (no argument, no $FINSENT_MODEL, no runs/): the shipped one answers, and says so
    # as predict does, as a warning that --quiet keeps
    always("neutral")
    res = run_cli("check", "--suite", str(_suite(tmp_path)), "--suite-only", "-q")
    assert res.exit_code == 0, res.stderr
    assert "warning: using finsent's default model" in res.stderr and "check: loading" not in res.stderr


def test_a_real_model_folder_through_the_shared_loader(tiny_bert: Path, tmp_path: Path) -> None:
    model = sharpened_copy(tiny_bert, tmp_path / "model")
    out = tmp_path / "r.json"
    res = run_cli(
        "check", str(model), "--suite", str(_suite(tmp_path)), "--suite-only", "-o", str(out), "--batch-size", "2", "-q"
    )
    assert res.exit_code == 0, res.stderr
    data = json.loads(out.read_text())
    [cap] = data["capabilities"]
    assert cap["cases"] == 9 and cap["passed"] + len(cap["failures"]) == 9
    for f in cap["failures"]:
        assert f["confidence"] == max(f["probs"].values()) and abs(sum(f["probs"].values()) - 1) < 1e-3


def test_help_imports_no_ml_stack() -> None:
    probe = (
        "import json, sys; from finsent_cli.main import app; app(['check', '--help'], standalone_mode=False); "
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))"
    )
    res = subprocess.run(
        [sys.executable, "-c", probe], check=False, capture_output=True, text=True, cwd=REPO, timeout=HANG_GUARD_S
    )
    assert res.returncode == 0, res.stderr
    assert "--min-pass" in res.stdout and json.loads(res.stdout.strip().splitlines()[-1]) == []
    compact = re.sub(r"[\s\u2502]", "", res.stdout)  # the help without its wrapping and panel rules
    assert "abuilt-inmodel'snamesuchasnewsordefault(finsentmodelsliststhem)" in compact
