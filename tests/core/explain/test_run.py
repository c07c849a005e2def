"""explain_text, the plain-Python twin of `finsent explain`: model lookup, methods, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from finsent_cli.core.explain.run import METHODS, explain_text
from finsent_cli.core.progress import NullReporter
from finsent_cli.errors import FinsentError
from tests.classifier_fakes import sharpened_copy


@pytest.fixture(scope="module")
def model(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sharpened_copy(tiny_bert, tmp_path_factory.mktemp("sharp"))


def test_explains_with_the_given_model_or_runs_latest(model: Path, tmp_path: Path) -> None:
    reporter = NullReporter()
    exp = explain_text("Profit rose sharply", model, reporter=reporter)
    assert [w.word for w in exp.words] == ["Profit", "rose", "sharply"] and exp.mask_mode == "mask"
    assert reporter.messages == [f"loading {model}"]
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "latest").symlink_to(model)
    same = explain_text("Profit rose sharply", None, env={}, runs_dir=tmp_path / "runs")
    assert same.probs == exp.probs


def test_errors(model: Path, tmp_path: Path) -> None:
    assert list(METHODS) == ["occlusion"]
    with pytest.raises(FinsentError, match="TEXT is empty"):
        explain_text("  ", model)
    with pytest.raises(FinsentError, match="unknown explanation method 'shap'"):
        explain_text("Profit rose", model, method="shap")
    with pytest.raises(FinsentError, match=r"model folder not found \(model from \$FINSENT_MODEL\)"):
        explain_text("Profit rose", None, env={"FINSENT_MODEL": str(tmp_path / "nope")})
