"""The distill recipe schema: mistakes in the ``distill`` section are named with the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from finsent_cli.config.distill import DistillRecipe
from finsent_cli.config.loader import load_recipe
from finsent_cli.errors import RecipeError


def test_teacher_sources_with_a_prepared_data_dir_says_there_are_none(tmp_path: Path) -> None:
    recipe = tmp_path / "distill.yaml"
    recipe.write_text(
        f"output_dir: {tmp_path / 'student'}\n"
        "teacher: {models: [default]}\n"
        f"corpus: {{paths: [{tmp_path}]}}\n"
        "model: {backbone: minilm}\n"
        f"data: {{dir: {tmp_path}}}\n"
        "distill: {teacher_sources: [news]}\n",
        encoding="utf-8",
    )
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe, DistillRecipe)
    assert "(sources: )" not in str(info.value)
    assert any(
        "distill.teacher_sources: the training data is a prepared data.dir, which has no named sources; give data.train "
        "as a list of sources ({path: FILE, name: NAME}) or drop distill.teacher_sources" in p
        for p in info.value.problems
    ), info.value.problems
