"""`finsent finetune` end to end on the tiny BERT: run folder, resume after SIGKILL, two processes, LoRA + merge, errors."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from finsent_cli.core.training.checkpoint import list_checkpoints
from tests.finetune_helpers import load_hf_encoder, micro_recipe, weights, write_csv
from tests.helpers import HANG_GUARD_S, assert_one_line_error, cli_env, run_cli, stop_when


@pytest.mark.slow
def test_sigkill_or_ctrl_c_then_rerun_ends_with_the_same_weights(tmp_path: Path, tiny_bert: Path) -> None:
    """kill -9 loses at most the steps since the last checkpoint; Ctrl-C finishes its step, saves it and
    exits 130; either way the rerun ends with exactly the weights of an uninterrupted run."""
    extra = "sched: {name: cosine, warmup_steps: 3}\n"
    names = ("whole", "killed", "ctrl_c")
    recipes = {n: micro_recipe(tmp_path, tiny_bert, n, n_train=80, extra=extra) for n in names}
    over = ["train.epochs=4", "train.save_every=5", "train.group_by_length=true"]  # 10 steps an epoch, 40 in all
    cmd = [sys.executable, "-m", "finsent_cli", "finetune", "-q"]
    ref = subprocess.Popen([*cmd, str(recipes["whole"]), *over], env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed = subprocess.Popen([*cmd, str(recipes["killed"]), *over], env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop_when(killed, tmp_path / "killed", signal.SIGKILL, 10)
    assert killed.wait(60) == -signal.SIGKILL, "the run finished before it could be killed"
    # Ctrl-C once the first scheduled checkpoint (step 5) exists: the run saves the step it is in and stops.
    ctrl_c = subprocess.Popen([*cmd, str(recipes["ctrl_c"]), *over], env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stop_when(ctrl_c, tmp_path / "ctrl_c", signal.SIGINT, 5)
    assert ctrl_c.wait(120) == 130, ctrl_c.stderr.read() if ctrl_c.stderr else ""
    assert "interrupted" in (ctrl_c.stderr.read() if ctrl_c.stderr else "")
    at_kill = max(s for s, _ in list_checkpoints(tmp_path / "killed"))
    at_int = max(s for s, _ in list_checkpoints(tmp_path / "ctrl_c"))
    assert 10 <= at_kill < 40 and 5 < at_int < 40, (at_kill, at_int)
    assert (tmp_path / "ctrl_c" / "last" / "model.safetensors").exists()

    for name, at in (("killed", at_kill), ("ctrl_c", at_int)):
        again = subprocess.run([*cmd, str(recipes[name]), *over], env=cli_env(), capture_output=True, text=True, timeout=HANG_GUARD_S)
        assert again.returncode == 0, again.stderr
        assert f"resumed from step-{at}" in again.stdout
    assert ref.wait(240) == 0, ref.stderr.read().decode() if ref.stderr else ""

    for name in ("killed", "ctrl_c"):
        for sub in ("last", "best"):
            a, b = weights(tmp_path / name / sub), weights(tmp_path / "whole" / sub)
            assert a.keys() == b.keys()
            for k in a:
                assert torch.equal(a[k], b[k]), (name, sub, k)
        events = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        train_steps = [e["step"] for e in events if e["event"] == "train"]
        assert train_steps == sorted(set(train_steps))  # events past the checkpoint were dropped, none repeated


@pytest.mark.slow
def test_ctrl_c_under_torchrun_saves_one_step_in_every_process(tmp_path: Path, tiny_bert: Path) -> None:
    """torchrun forwards Ctrl-C to both workers; they agree on the step (an all-reduce of the flag), save it
    together and stop; the same command resumes from it."""
    recipe = micro_recipe(tmp_path, tiny_bert, "two", n_train=80)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "finsent_cli",
           "finetune", str(recipe), "train.batch_size=4", "train.epochs=4", "train.save_every=5"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stop_when(proc, tmp_path / "two", signal.SIGINT, 5)
    out, _ = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode != 0, "the run finished before it could be interrupted"
    saved = [line for line in out.splitlines() if line.startswith("error: interrupted; saved step")]
    assert len(saved) == 2 and saved[0] == saved[1], out[-3000:]  # one line per process, the same step
    step = int(saved[0].split()[4].rstrip(";"))
    assert step in [s for s, _ in list_checkpoints(tmp_path / "two")] and 5 < step < 40
    again = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumed from step-{step}" in again.stdout


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(tmp_path: Path, tiny_bert: Path) -> None:
    no_dropout = ["model.dropout=0.0", "model.backbone_dropout=0.0"]
    one = micro_recipe(tmp_path, tiny_bert, "one")
    two = micro_recipe(tmp_path, tiny_bert, "two")
    # Both at once: the single-process run and the two gloo processes (4 examples each, 8 per step).
    single = subprocess.Popen(
        [sys.executable, "-m", "finsent_cli", "finetune", "-q", str(one), *no_dropout],
        env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    dist = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "finsent_cli", "finetune", "-q", str(two), *no_dropout, "train.batch_size=4"],
        env=cli_env(), capture_output=True, text=True, timeout=HANG_GUARD_S,
    )  # fmt: skip
    assert dist.returncode == 0, dist.stderr[-3000:]
    assert single.wait(240) == 0, single.stderr.read() if single.stderr else ""
    recipe = (tmp_path / "two" / "recipe.yaml").read_text()
    assert "batch_size: 4" in recipe
    steps = [json.loads(line)["step"] for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 12  # 48 examples / (2 processes x 4) = 6 steps an epoch
    a, b = weights(tmp_path / "one" / "last"), weights(tmp_path / "two" / "last")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4, msg=k)
    assert (tmp_path / "two" / "misclassified_valid.csv").exists()


def test_lora_saves_an_adapter_and_merge_keeps_the_logits(tmp_path: Path, tiny_bert: Path) -> None:
    recipe = micro_recipe(tmp_path, tiny_bert, "lora")
    lora = ["model.adapter=lora", "model.lora.r=4", "model.lora.target_modules=[query, value]", "train.epochs=1", "optim.lr=1e-2"]
    res = run_cli("finetune", str(recipe), *lora, "-q")
    assert res.exit_code == 0, res.stderr
    best = tmp_path / "lora" / "best"
    assert (best / "adapter_config.json").exists() and (best / "adapter_model.safetensors").exists()
    assert not (best / "model.safetensors").exists()
    assert json.loads((best / "finsent.json").read_text())["adapter"] == "lora"

    merged = tmp_path / "merged"
    res = run_cli("finetune", "--merge", str(tmp_path / "lora"), "--output", str(merged))
    assert res.exit_code == 0, res.stderr
    assert (merged / "config.json").exists() and not (merged / "adapter_config.json").exists()
    assert json.loads((merged / "finsent.json").read_text())["adapter"] == "none"

    adapter_model, tok = load_hf_encoder(best)
    plain, _ = load_hf_encoder(merged)
    batch = tok(["Profit rose 20 % to EUR 3 mn", "Sales fell", "The company is based in Helsinki"], return_tensors="pt", padding=True)
    batch.pop("token_type_ids", None)
    with torch.no_grad():
        torch.testing.assert_close(plain(**batch).logits, adapter_model(**batch).logits, atol=1e-5, rtol=0)


def test_refuses_a_folder_that_is_not_a_run(tmp_path: Path, tiny_bert: Path) -> None:
    path = micro_recipe(tmp_path, tiny_bert)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "precious.txt").write_text("x")
    res = run_cli("finetune", str(path))
    assert_one_line_error(res, "not a finsent run folder", code=1)


def test_missing_backbone_is_one_line(tmp_path: Path, tiny_bert: Path) -> None:
    res = run_cli("finetune", str(micro_recipe(tmp_path, tiny_bert)), f"model.backbone={tmp_path / 'nope'}")
    assert_one_line_error(res, "model.backbone", "not found", code=1)


def test_unknown_label_is_one_line(tmp_path: Path, tiny_bert: Path) -> None:
    path = micro_recipe(tmp_path, tiny_bert)
    rows = list(csv.DictReader((tmp_path / "data" / "train.csv").open(encoding="utf-8")))
    rows[5]["label"] = "sideways"
    write_csv(tmp_path / "data" / "train.csv", rows)
    res = run_cli("finetune", str(path))
    assert_one_line_error(res, "train.csv", "sideways", code=1)


def test_recipe_typo_is_reported_with_a_suggestion(tmp_path: Path, tiny_bert: Path) -> None:
    res = run_cli("finetune", str(micro_recipe(tmp_path, tiny_bert)), "optim.lrr=1e-3")
    assert_one_line_error(res, "optim.lrr", "did you mean 'lr'", code=2)
    assert not (tmp_path / "run").exists()


def test_dry_run_prints_the_resolved_recipe(tmp_path: Path, tiny_bert: Path) -> None:
    res = run_cli("finetune", str(micro_recipe(tmp_path, tiny_bert)), "--dry-run", "train.epochs=7")
    assert res.exit_code == 0 and "epochs: 7" in res.stdout
    assert not (tmp_path / "run").exists()


def test_merge_needs_an_adapter(tmp_path: Path) -> None:
    res = run_cli("finetune", "--merge", str(tmp_path), "--output", str(tmp_path / "out"))
    assert_one_line_error(res, "no adapter here", code=1)


def test_fp16_on_cpu_is_a_recipe_error(tmp_path: Path, tiny_bert: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("has a GPU")
    res = run_cli("finetune", str(micro_recipe(tmp_path, tiny_bert)), "train.mixed_precision=fp16")
    assert_one_line_error(res, "fp16 needs a CUDA GPU", code=1)


def test_rerun_republishes_best_and_last_lost_in_a_kill(tmp_path: Path, tiny_bert: Path) -> None:
    """A kill after step-N is written but before best/ and last/ are updated must not leave them stale."""
    import shutil

    recipe = micro_recipe(tmp_path, tiny_bert, "run")
    assert run_cli("finetune", "-q", str(recipe)).exit_code == 0
    run = tmp_path / "run"
    before = {sub: weights(run / sub) for sub in ("best", "last")}
    shutil.rmtree(run / "best")
    shutil.rmtree(run / "last")
    res = run_cli("finetune", "-q", str(recipe))
    assert res.exit_code == 0, res.stderr
    for sub in ("best", "last"):
        after = weights(run / sub)
        assert all(torch.equal(after[k], before[sub][k]) for k in after), sub


def test_train_hashes_cover_raw_and_cleaned_texts(tmp_path: Path, tiny_bert: Path) -> None:
    """A prepared folder trains on cleaned text; eval on the raw file must still see the overlap."""
    from finsent_cli.core.data.clean import text_hash
    from finsent_cli.core.data.store import load_prepared

    src = tmp_path / "raw.csv"
    rows = [(f"Shares of company {i} moved https://t.co/x{i}", ["negative", "neutral", "positive"][i % 3]) for i in range(60)]
    with open(src, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows(rows)
    prep = tmp_path / "prep.yaml"
    prep.write_text(f"output_dir: {tmp_path / 'data'}\ndata:\n  source: {src}\nclean:\n  urls: replace\n")
    assert run_cli("prep", str(prep), "-q").exit_code == 0
    recipe = micro_recipe(tmp_path, tiny_bert, "run")
    res = run_cli("finetune", "-q", str(recipe), f"data.dir={tmp_path / 'data'}", "data.train=null", "data.valid=null", "data.test=null")
    assert res.exit_code == 0, res.stderr
    hashes = set(json.loads((tmp_path / "run" / "train_hashes.json").read_text())["hashes"])
    train_texts = [r["raw_text"] for r in load_prepared(tmp_path / "data")["train"]]
    assert all(text_hash(t) in hashes for t in train_texts)
    assert all(text_hash(t.replace(t.split()[-1], "<url>")) in hashes for t in train_texts)


def test_fresh_moves_a_finished_run_aside(tmp_path: Path, tiny_bert: Path) -> None:
    recipe = micro_recipe(tmp_path, tiny_bert, "run")
    assert run_cli("finetune", "-q", str(recipe), "train.epochs=1").exit_code == 0
    before = weights(tmp_path / "run" / "best")
    res = run_cli("finetune", str(recipe), "train.epochs=1", "optim.lr=2e-3", "train.eval_every=3", "--fresh")
    assert res.exit_code == 0, res.stderr
    assert "on cpu (fp32):" in res.stderr and "step 3 (epoch 0.5):" in res.stderr  # not "1 x cpu (no)", "epoch 0"
    old = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(old) == 1 and f"moved the previous run to {old[0]}" in res.stderr
    kept = weights(old[0] / "best")
    assert all(torch.equal(kept[k], before[k]) for k in before)
    assert (tmp_path / "latest").resolve() == (tmp_path / "run").resolve()
    assert not all(torch.equal(weights(tmp_path / "run" / "best")[k], before[k]) for k in before)


def test_lora_run_extended_by_resuming_equals_one_longer_run(tmp_path: Path, tiny_bert: Path) -> None:
    """LoRA resume restores the adapter, the head, the optimizer and the RNG: 1 epoch + 1 resumed epoch
    ends with exactly the weights of 2 epochs in one go (constant lr, so the schedule length is moot)."""
    lora = ["model.adapter=lora", "model.lora.r=4", "optim.lr=1e-2", "sched.name=constant", "sched.warmup_steps=0"]
    split, whole = micro_recipe(tmp_path, tiny_bert, "split"), micro_recipe(tmp_path, tiny_bert, "whole")
    assert run_cli("finetune", "-q", str(split), *lora, "train.epochs=1").exit_code == 0
    res = run_cli("finetune", "-q", str(split), *lora, "train.epochs=2")
    assert res.exit_code == 0 and "resumed from step-6" in res.stdout, res.stderr
    assert run_cli("finetune", "-q", str(whole), *lora, "train.epochs=2").exit_code == 0
    from safetensors.torch import load_file

    a = load_file(tmp_path / "split" / "last" / "adapter_model.safetensors")
    b = load_file(tmp_path / "whole" / "last" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and any("lora_A" in k for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
