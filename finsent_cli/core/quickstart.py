"""The quickstart: the whole finsent lifecycle on the embedded sample, offline.

The sample (``finsent_cli/resources/sample_headlines.csv``) holds 360 original headlines written for
finsent, 120 per class. They are illustrative, not a benchmark: numbers on them say the pipeline works,
not how good a model is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from finsent_cli.config.prep import PrepRecipe
from finsent_cli.core.data.prep import PrepResult, run_prep
from finsent_cli.core.progress import NullReporter, Reporter


def sample_path() -> Path:
    """The embedded labelled sample shipped inside the package."""
    return Path(str(resources.files("finsent_cli") / "resources" / "sample_headlines.csv"))


@dataclass
class QuickstartResult:
    """Where each step wrote its output, and its headline numbers."""

    output_dir: Path
    prep: PrepResult | None = None
    steps: dict[str, Any] = field(default_factory=dict)


def sample_prep_recipe(output_dir: Path) -> PrepRecipe:
    """Prep recipe of the quickstart: the embedded sample, stratified 70/10/20 split."""
    return PrepRecipe.model_validate(
        {
            "output_dir": output_dir / "data",
            "format": "parquet",
            "data": {"source": sample_path(), "valid_size": 0.1, "test_size": 0.2, "seed": 13},
            "clean": {"urls": "replace", "user_handles": "replace"},
        }
    )


def run_quickstart(output_dir: Path, reporter: Reporter | None = None) -> QuickstartResult:
    """Run every quickstart step into ``output_dir``.

    Args:
        output_dir: folder for all outputs (created; earlier outputs in it are replaced).
        reporter: progress and log sink.

    Returns:
        Paths and numbers of each step.
    """
    reporter = reporter or NullReporter()
    result = QuickstartResult(output_dir)
    reporter.log("step 1: prep the embedded sample")
    result.prep = run_prep(sample_prep_recipe(output_dir), reporter)
    result.steps["prep"] = str(result.prep.output_dir)
    return result
