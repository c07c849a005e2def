"""`finsent distill` from the CLI: the closing table holds the student and its teacher side by side."""

from __future__ import annotations

from pathlib import Path

from tests.finetune_helpers import micro_recipe
from tests.helpers import run_cli


def test_distill_prints_student_and_teacher_scores(tmp_path: Path, tiny_bert: Path) -> None:
    res = run_cli("finetune", str(micro_recipe(tmp_path, tiny_bert, "teacher")), "-q")
    assert res.exit_code == 0, res.stderr
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"shares of company {i} rose after results" for i in range(60)) + "\n", encoding="utf-8")
    recipe = tmp_path / "distill.yaml"
    recipe.write_text(
        f"output_dir: {tmp_path / 'student'}\n"
        f"teacher: {{models: [{tmp_path / 'teacher'}], cache_dir: {tmp_path / 'cache'}}}\n"
        f"corpus: {{paths: [{corpus}], lines: 30}}\n"
        f"model: {{backbone: {tiny_bert}, max_length: 24}}\n"
        f"data: {{train: {tmp_path / 'data' / 'train.csv'}, valid: {tmp_path / 'data' / 'valid.csv'}}}\n"
        "train: {epochs: 1, batch_size: 16}\n",
        encoding="utf-8",
    )
    res = run_cli("distill", str(recipe), "--dry-run")
    assert res.exit_code == 0 and "temperature: 2.0" in res.stdout and "lines: 30" in res.stdout
    res = run_cli("distill", str(recipe))
    assert res.exit_code == 0, res.stderr
    rows = {line.split("│")[1].strip(): line for line in res.stdout.splitlines() if line.startswith("│")}
    assert set(rows) == {"valid", "teacher:valid"}
    assert "complete after 5 steps" in res.stdout  # (48 + 30) / 16, rounded up
    assert (tmp_path / "latest").resolve() == (tmp_path / "student").resolve()
