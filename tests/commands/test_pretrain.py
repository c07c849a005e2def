"""`finsent pretrain` from the CLI: kill -9 and resume, two processes, and bad input as one line."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from finsent_cli.core.training.checkpoint import list_checkpoints
from tests.helpers import HANG_GUARD_S, assert_one_line_error, cli_env, run_cli, stop_when
from tests.pretrain_helpers import pretrain_recipe

CMD = [sys.executable, "-m", "finsent_cli", "pretrain", "-q"]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


@pytest.mark.slow
def test_kill_9_then_rerun_ends_with_the_weights_of_an_uninterrupted_run(
    tmp_path: Path, small_corpus: Path, small_tokenizer: Path
) -> None:
    over = ["train.max_steps=12", "data.heldout_blocks=4"]  # checkpoints every 3 steps
    recipes = {n: pretrain_recipe(tmp_path, small_corpus, small_tokenizer, n) for n in ("whole", "killed")}
    # one process builds the token files first, so both runs below read the same cache
    first = subprocess.run(
        [*CMD, str(recipes["whole"]), *over], env=cli_env(), capture_output=True, text=True, timeout=HANG_GUARD_S, check=False
    )
    assert first.returncode == 0, first.stderr
    killed = subprocess.Popen(
        [*CMD, str(recipes["killed"]), *over], env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    stop_when(killed, tmp_path / "killed", signal.SIGKILL, 3)
    assert killed.wait(60) == -signal.SIGKILL, "the run finished before it could be killed"
    at_kill = max(s for s, _ in list_checkpoints(tmp_path / "killed"))
    assert 3 <= at_kill < 12
    again = subprocess.run(
        [*CMD, str(recipes["killed"]), *over], env=cli_env(), capture_output=True, text=True, timeout=HANG_GUARD_S, check=False
    )
    assert again.returncode == 0, again.stderr
    assert f"resumed from step-{at_kill}" in again.stdout
    for sub in ("last", "best"):
        a, b = _weights(tmp_path / "killed" / sub), _weights(tmp_path / "whole" / sub)
        for k in a:
            assert torch.equal(a[k], b[k]), (sub, k)
    steps = [
        json.loads(x)["step"]
        for x in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
        if '"train"' in x
    ]
    assert steps == list(range(1, 13))  # nothing lost, nothing repeated


@pytest.mark.slow
def test_two_gloo_processes_shard_the_blocks(tmp_path: Path, small_corpus: Path, small_tokenizer: Path) -> None:
    recipe = pretrain_recipe(tmp_path, small_corpus, small_tokenizer)
    dist = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "finsent_cli",
         "pretrain", "-q", str(recipe), "train.batch_size=2", "train.max_steps=4"],
        env=cli_env(), capture_output=True, text=True, timeout=HANG_GUARD_S, check=False,
    )  # fmt: skip
    assert dist.returncode == 0, dist.stderr[-3000:]
    assert dist.stdout.count("complete after 4 steps") == 1  # only the main process reports
    train = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"train"' in x]
    assert train[-1]["samples_seen"] == 4 * 2 * 2  # 2 blocks per process per step
    assert [e["step"] for e in train] == [1, 2, 3, 4]
    from transformers import T5ForConditionalGeneration

    assert T5ForConditionalGeneration.from_pretrained(tmp_path / "run" / "best").config.vocab_size == 512


def test_dry_run_prints_the_resolved_recipe_with_t5_defaults(
    tmp_path: Path, small_corpus: Path, small_tokenizer: Path
) -> None:
    res = run_cli("pretrain", str(pretrain_recipe(tmp_path, small_corpus, small_tokenizer)), "--dry-run")
    assert res.exit_code == 0, res.stderr
    assert (
        "max_seq_len: 32" in res.stdout and "noise_density: 0.15" in res.stdout and "metric: heldout_loss" in res.stdout
    )
    assert not (tmp_path / "run").exists()


def _bad(tmp_path: Path, corpus: Path, tokenizer: Path, *overrides: str) -> str:
    res = run_cli("pretrain", str(pretrain_recipe(tmp_path, corpus, tokenizer)), "-q", *overrides)
    return assert_one_line_error(res)


def test_an_empty_corpus(tmp_path: Path, small_tokenizer: Path) -> None:
    (tmp_path / "empty.txt").write_text("\n \n", encoding="utf-8")
    line = _bad(tmp_path, tmp_path / "empty.txt", small_tokenizer)
    assert "empty.txt: the corpus holds no text" in line
    assert not (tmp_path / "run").exists()


def test_a_corpus_too_short_for_one_block(tmp_path: Path, small_tokenizer: Path) -> None:
    (tmp_path / "short.txt").write_text("profit\nloss\nrose\n", encoding="utf-8")  # no line longer than a sentinel
    line = _bad(tmp_path, tmp_path / "short.txt", small_tokenizer)
    assert "short.txt" in line and "fewer than one block of 34" in line
    assert not (tmp_path / "run").exists()


def test_a_tokenizer_without_sentinels(tmp_path: Path, small_corpus: Path, minilm_path: str) -> None:
    line = _bad(tmp_path, small_corpus, Path(minilm_path))
    assert line.startswith("error: data.tokenizer:")
    assert "sentinel" in line or "no EOS" in line


def test_a_folder_that_is_not_a_corpus(tmp_path: Path, small_tokenizer: Path) -> None:
    line = _bad(tmp_path, small_tokenizer, small_tokenizer)
    assert "data.corpus:" in line and "not a prepared corpus folder" in line


def test_a_zero_length_target(tmp_path: Path, small_corpus: Path, small_tokenizer: Path) -> None:
    line = _bad(tmp_path, small_corpus, small_tokenizer, "data.noise_density=0.001")
    assert "data.noise_density: 0.001 hides no token" in line and "zero-length target" in line


def test_a_typo_in_a_key_gets_a_suggestion(tmp_path: Path, small_corpus: Path, small_tokenizer: Path) -> None:
    line = _bad(tmp_path, small_corpus, small_tokenizer, "model.max_seq_length=64")
    assert "model.max_seq_length" in line and "max_seq_len" in line


def test_resuming_with_another_size_or_tokenizer_is_refused(
    tmp_path: Path, small_corpus: Path, small_tokenizer: Path
) -> None:
    recipe = pretrain_recipe(tmp_path, small_corpus, small_tokenizer)
    assert run_cli("pretrain", str(recipe), "-q", "train.max_steps=3").exit_code == 0
    line = assert_one_line_error(run_cli("pretrain", str(recipe), "-q", "train.max_steps=6", "model.size=t5_small"))
    assert "model.size" in line and "--fresh" in line
    # the same path, another tokenizer inside: the model's vocabulary no longer matches
    import shutil

    other = tmp_path / "tok2"
    shutil.copytree(small_tokenizer, other)
    text = (tmp_path / "run.yaml").read_text().replace(str(small_tokenizer), str(other))
    (tmp_path / "run.yaml").write_text(text)
    shutil.copy(tmp_path / "run" / "recipe.yaml", tmp_path / "recipe.bak")
    (tmp_path / "run" / "recipe.yaml").write_text(
        (tmp_path / "recipe.bak").read_text().replace(str(small_tokenizer), str(other))
    )
    tj = other / "tokenizer.json"
    data = json.loads(tj.read_text())
    data["normalizer"] = None  # a different tokenizer file: another hash
    tj.write_text(json.dumps(data))
    line = assert_one_line_error(run_cli("pretrain", str(recipe), "-q", "train.max_steps=6"))
    assert "data.tokenizer:" in line and "changed since the run started" in line


def test_a_damaged_tokenizer_file(tmp_path: Path, small_corpus: Path, small_tokenizer: Path) -> None:
    import shutil

    broken = tmp_path / "tok"
    shutil.copytree(small_tokenizer, broken)
    (broken / "tokenizer.json").write_text('{"version": "1.0", "model": ', encoding="utf-8")
    line = _bad(tmp_path, small_corpus, broken)
    assert "data.tokenizer: cannot load a tokenizer from" in line


def test_mlm_from_the_cli_says_what_to_run_next(tmp_path: Path, small_corpus: Path, minilm_path: str) -> None:
    """`objective: mlm` on an encoder: the run ends with the fine-tuning command that takes its folder."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    backbone = tmp_path / "tiny_mlm"
    BertForMaskedLM(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)).save_pretrained(backbone)
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(backbone)
    recipe = tmp_path / "mlm.yaml"
    recipe.write_text(
        f"output_dir: {tmp_path / 'mlm'}\nobjective: mlm\nmodel: {{backbone: {backbone}, max_length: 24}}\n"
        f"data: {{corpus: [{small_corpus}], heldout_blocks: 8}}\ntrain: {{max_steps: 2, batch_size: 4, eval_every: 2}}\n",
        encoding="utf-8",
    )
    res = run_cli("pretrain", str(recipe))
    assert res.exit_code == 0, res.stderr
    assert "pretrain (mlm)" in res.stdout + res.stderr and "masked-LM folders" in res.stdout
    assert f"model.backbone={tmp_path / 'mlm'}" in res.stdout.replace("\n", "")


def test_dry_run_on_a_fresh_clone_lists_the_missing_inputs_and_their_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    shutil.copytree(Path(__file__).resolve().parents[2] / "recipes", tmp_path / "recipes")
    monkeypatch.chdir(tmp_path)  # a fresh clone: no runs/ yet
    res = run_cli("pretrain", "recipes/t5_small.yaml", "--dry-run")
    assert res.exit_code == 1 and "Traceback" not in res.stderr, res.stderr
    assert "size: t5_small" in res.stdout and "corpus:\n  - runs/data/corpus" in res.stdout  # validated and printed
    assert res.error_lines == [
        "error: recipes/t5_small.yaml: data.corpus.0: path not found: runs/data/corpus (make it with: finsent prep recipes/prep_corpus.yaml)",
        "error: recipes/t5_small.yaml: data.tokenizer: path not found: runs/tokenizer (make it with: finsent tokenizer recipes/tokenizer.yaml)",
        "error: recipes/t5_small.yaml: the recipe is valid, but 2 of its inputs do not exist yet (above)",
    ]
    real = run_cli("pretrain", "recipes/t5_small.yaml")  # a real run fails on them as before, before any work
    assert real.exit_code == 2 and real.error_lines == res.error_lines[:2]
    assert not (tmp_path / "runs" / "pretrain_t5_small").exists()
    (tmp_path / "runs" / "data" / "corpus").mkdir(parents=True)
    (tmp_path / "runs" / "tokenizer").mkdir()
    ready = run_cli("pretrain", "recipes/t5_small.yaml", "--dry-run")
    assert ready.exit_code == 0 and ready.stderr == "" and ready.stdout == res.stdout


def test_dry_run_with_a_recipe_error_exits_2_and_lists_the_missing_inputs_too(tmp_path: Path, small_tokenizer: Path) -> None:
    recipe = pretrain_recipe(tmp_path, tmp_path / "no_corpus", small_tokenizer)
    res = run_cli("pretrain", str(recipe), "--dry-run", "train.batch_sise=4")
    assert res.exit_code == 2 and res.stdout == "", res.stderr
    assert len(res.error_lines) == 2, res.stderr
    assert "train.batch_sise: unknown key (from a command-line override) (did you mean 'batch_size'?)" in res.error_lines[0]
    assert f"data.corpus.0: path not found: {tmp_path / 'no_corpus'}" in res.error_lines[1]
