"""TensorBoard and Weights & Biases logging (train.tensorboard / train.wandb) with the real packages.

One micro run logs to both (W&B offline); the numbers each one holds are read back and compared with the
run's own metrics.jsonl. The packages come with the ``tracking`` extra (and the ``test`` extra).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("tensorboard")
pytest.importorskip("wandb")

from finsent_cli.config.finetune import FinetuneRecipe
from finsent_cli.config.loader import load_recipe
from finsent_cli.core.flows.finetune import run_finetune
from finsent_cli.core.progress import NullReporter
from finsent_cli.core.training.loop import wandb_mode
from tests.finetune_helpers import micro_recipe

_BLOCK = 32768  # the .wandb file is a LevelDB-style log of protobuf records in 32 KiB blocks


def wandb_records(path: Path) -> list:
    """The protobuf records of an offline run's ``run-*.wandb`` file."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, buf, records = 7, b"", []
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        if left < 7 or (length == 0 and kind == 0):  # block trailer / padding
            pos += left
            continue
        buf += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            rec = pb.Record()
            rec.ParseFromString(buf)
            buf = b""
            records.append(rec)
    return records


def wandb_history(path: Path) -> list[dict]:
    """The history rows (``wandb.log`` calls) of an offline run's ``run-*.wandb`` file."""
    return [
        {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item}
        for rec in wandb_records(path)
        if rec.WhichOneof("record_type") == "history"
    ]


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> tuple[Path, Path, list[str]]:
    tmp = tmp_path_factory.mktemp("tracked")
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "offline")
    mp.chdir(tmp)  # nothing may land in the working folder
    try:
        recipe = micro_recipe(
            tmp, tiny_bert, extra="train: {epochs: 2, batch_size: 16, log_every: 1, tensorboard: true, wandb: true}\n"
        )
        reporter = NullReporter()
        result = run_finetune(load_recipe(recipe, FinetuneRecipe), reporter)
    finally:
        mp.undo()
    return result.run_dir, tmp, reporter.messages


def _events(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == kind]


def test_tensorboard_holds_the_metrics_of_the_run(tracked_run) -> None:
    run_dir, _, _ = tracked_run
    scalars = tensorboard_scalars(run_dir / "tensorboard" / "finsent")
    evals, trains = _events(run_dir, "eval"), _events(run_dir, "train")
    assert [s for s, _ in scalars["eval/macro_f1"]] == [e["step"] for e in evals] == [3, 6]
    assert [v for _, v in scalars["eval/macro_f1"]] == pytest.approx([e["macro_f1"] for e in evals])
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([e["loss"] for e in trains])
    assert "eval/best" not in scalars  # a flag, not a number


def test_wandb_offline_run_holds_the_metrics_of_the_run(tracked_run) -> None:
    run_dir, cwd, _ = tracked_run
    runs = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and not (cwd / "wandb").exists()
    history = wandb_history(runs[0])
    evals = [h for h in history if "eval/macro_f1" in h]
    assert [h["_step"] for h in evals] == [e["step"] for e in _events(run_dir, "eval")]
    assert [h["eval/macro_f1"] for h in evals] == pytest.approx([e["macro_f1"] for e in _events(run_dir, "eval")])
    assert [h["train/loss"] for h in history if "train/loss" in h] == pytest.approx(
        [e["loss"] for e in _events(run_dir, "train")]
    )


def test_wandb_goes_offline_without_an_api_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    mode, why = wandb_mode()
    assert mode == "offline" and "wandb sync" in why
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password k\n")
    assert wandb_mode() == (None, None)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode() == ("disabled", None)


def test_the_trials_of_a_study_share_a_wandb_group(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`finsent tune` with train.wandb: each trial's run is named after its folder, in the study's group."""
    from finsent_cli.core.flows.tune import plan_tune, run_tune, tunable

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.chdir(tmp_path)
    space = "tune: {trials: 2, pruner: none, space: {optim.lr: {low: 1.0e-4, high: 1.0e-2, log: true}}}\n"
    recipe = micro_recipe(tmp_path, tiny_bert, name="study", extra=space)
    schema, train = tunable("finetune")
    plan = plan_tune(recipe, schema, ["train.epochs=1", "train.wandb=true"], study_name="news-lr")
    run_tune(plan, lambda cfg, on_evaluate: train(cfg, NullReporter(), on_evaluate, plan.study_dir))
    for n in (0, 1):
        runs = list((tmp_path / "study" / f"trial-{n:04d}" / "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(runs) == 1
        run = next(r.run for r in wandb_records(runs[0]) if r.WhichOneof("record_type") == "run")
        assert (run.run_group, run.display_name, run.project) == ("news-lr", f"trial-{n:04d}", "finsent")
