"""`finsent finetune` with the Mamba adapter kinds (mamba, gamba) on the tiny BERT, end to end: the run folder,
eval / predict / explain on it, --merge, a --sweep from the CLI, and the kernel note."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from finsent_cli.core.inference.loading import load_classifier
from finsent_cli.core.models.adapters import FUSION_WEIGHTS, get_adapter
from finsent_cli.core.models.mamba import ops as mamba_ops
from finsent_cli.errors import FinsentNote
from tests.finetune_helpers import assert_serves, micro_recipe
from tests.helpers import assert_one_line_error, run_cli

TEXTS = ["Profit rose 20 % to EUR 3 mn", "Sales fell", "The company is based in Helsinki"]
KINDS = {
    "mamba_tokens": ["model.adapter.kind=mamba", "model.adapter.scan=tokens"],
    "mamba_cls": ["model.adapter.kind=mamba", "model.adapter.scan=cls"],
    "gamba": ["model.adapter.kind=gamba", "model.adapter.attention_heads=2"],
}
SMALL = ["model.adapter.num_layers=1", "model.adapter.head_dim=16", "train.epochs=1"]


@pytest.fixture(scope="module", params=list(KINDS))
def fusion_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    tmp = tmp_path_factory.mktemp(request.param)
    res = run_cli("finetune", str(micro_recipe(tmp, tiny_bert, "run")), *KINDS[request.param], *SMALL)
    assert res.exit_code == 0, res.stderr
    assert "trainable parameters:" in res.stderr + res.stdout
    return tmp / "run"


def test_the_folder_holds_only_what_trained(fusion_run: Path, tiny_bert: Path) -> None:
    best = fusion_run / "best"
    assert (best / FUSION_WEIGHTS).exists() and not (best / "model.safetensors").exists()
    trained = load_file(str(best / FUSION_WEIGHTS))
    assert trained and not any(k.startswith("backbone.") for k in trained)
    assert any(k.startswith("fusion.") for k in trained) and "classifier.weight" in trained
    meta = json.loads((best / "finsent.json").read_text())
    assert meta["adapter"] in ("mamba", "gamba") and meta["adapter_config"]["num_layers"] == 1
    # The encoder stayed frozen: the loaded model's backbone is the tiny BERT's, weight for weight.
    model = load_classifier(fusion_run).model
    original = load_file(str(tiny_bert / "model.safetensors"))
    for name, tensor in model.backbone.state_dict().items():
        key = f"bert.{name}"
        if key in original:
            torch.testing.assert_close(tensor, original[key], rtol=0, atol=0)


def test_eval_predict_and_explain_accept_the_run(fusion_run: Path, tmp_path: Path) -> None:
    assert_serves(fusion_run, TEXTS, TEXTS[1], "fell", tmp_path)


def test_merge_writes_a_complete_folder_with_the_same_probabilities(fusion_run: Path, tmp_path: Path) -> None:
    res = run_cli("finetune", "--merge", str(fusion_run), "--output", str(tmp_path / "merged"))
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "merged" / "model.safetensors").exists()
    assert not (tmp_path / "merged" / FUSION_WEIGHTS).exists()
    a = load_classifier(fusion_run).predict_proba(TEXTS)
    b = load_classifier(tmp_path / "merged").predict_proba(TEXTS)
    assert a.shape == (3, 3) and abs(a - b).max() < 1e-5


def test_a_sweep_from_the_cli_writes_one_table_and_resumes(tmp_path: Path, tiny_bert: Path) -> None:
    recipe = micro_recipe(tmp_path, tiny_bert, "sweep")
    args = ["finetune", str(recipe), *KINDS["mamba_tokens"], "model.adapter.head_dim=16", "train.epochs=1"]
    args += ["--sweep", "model.adapter.num_layers=1,2", "--sweep", "model.adapter.scan=tokens,cls"]
    res = run_cli(*args)
    assert res.exit_code == 0, res.stderr
    assert "sweep: 4 runs" in res.stdout and "sweep.csv" in res.stdout
    with (tmp_path / "sweep" / "sweep.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["model.adapter.num_layers"], r["model.adapter.scan"]) for r in rows] == [
        ("1", "tokens"), ("1", "cls"), ("2", "tokens"), ("2", "cls"),
    ]  # fmt: skip
    params = [int(r["trainable_params"]) for r in rows]
    assert params[0] == params[1] < params[2] == params[3]  # scan changes no weight, a second block does
    for row in rows:
        assert 0.0 <= float(row["valid_macro_f1"]) <= 1.0 and float(row["train_seconds"]) > 0
        assert (Path(row["run_dir"]) / "best" / FUSION_WEIGHTS).exists()
    table = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert len(table["rows"]) == 4
    again = run_cli(*args)
    assert again.exit_code == 0 and again.stderr.count("skipped (done)") == 4, again.stderr


def test_a_cuda_run_without_mamba_ssm_says_so_and_trains(tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The adapter's check, as on a CUDA machine without mamba-ssm: a FinsentNote, no error.
    monkeypatch.setattr(mamba_ops, "mamba_chunk_scan_combined", None)
    with monkeypatch.context() as cuda:
        cuda.setattr(torch.cuda, "is_available", lambda: True)
        with pytest.warns(FinsentNote, match="mamba-ssm not installed: the Mamba blocks run the PyTorch scan"):
            get_adapter("gamba").base_options(SimpleNamespace(kernels="auto", model_dump=lambda mode: {}))
        with warnings.catch_warnings():
            warnings.simplefilter("error", FinsentNote)
            get_adapter("mamba").base_options(SimpleNamespace(kernels="off", model_dump=lambda mode: {}))
    # The flow passes the note on as a warning line and goes on training.
    monkeypatch.setattr(mamba_ops, "kernel_note", lambda kernels: "mamba-ssm not installed: test note")
    res = run_cli("finetune", str(micro_recipe(tmp_path, tiny_bert)), *KINDS["mamba_tokens"], *SMALL)
    assert res.exit_code == 0, res.stderr
    notes = [ln for ln in res.stderr.splitlines() if "test note" in ln]
    assert len(notes) == 1 and notes[0].startswith("warning:"), res.stderr
    # Loading the folder again (eval, predict, explain) gives the same one line, not a Python warning.
    res = run_cli("eval", str(tmp_path / "run"), str(tmp_path / "data" / "valid.csv"), "-q")
    notes = [ln for ln in res.stderr.splitlines() if "test note" in ln]
    assert res.exit_code == 0 and len(notes) == 1 and notes[0].startswith("warning:"), res.stderr
    assert "FinsentNote" not in res.stderr


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("model.adapter.head_dim=24", "model.adapter.head_dim: head_dim (24) must divide expand * d_model = 2 * 32 = 64"),
        ("model.adapter.attention_heads=5", "model.adapter.attention_heads: attention_heads (5) must divide the hidden size (32)"),
    ],
)
def test_adapter_shapes_that_do_not_fit_the_encoder_are_one_line(tmp_path: Path, tiny_bert: Path, override: str, needle: str) -> None:
    res = run_cli("finetune", str(micro_recipe(tmp_path, tiny_bert)), *KINDS["gamba"], override)
    assert_one_line_error(res, needle, "hidden size is 32", code=2)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.skipif(mamba_ops.kernels_available(), reason="the kernels are available here")
def test_a_folder_trained_with_required_kernels_runs_anywhere(fusion_run: Path, tmp_path: Path) -> None:
    """A run that demanded the kernels (on a GPU machine) still evaluates and merges on a CPU."""
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(fusion_run / "best", folder)
    for name in ("finsent.json", "config.json"):
        doc = json.loads((folder / name).read_text())
        section = doc["adapter_config"] if name == "finsent.json" else doc["fusion"]
        section["kernels"] = "required"
        (folder / name).write_text(json.dumps(doc), encoding="utf-8")
    torch.testing.assert_close(
        torch.as_tensor(load_classifier(folder).predict_proba(TEXTS)),
        torch.as_tensor(load_classifier(fusion_run).predict_proba(TEXTS)),
    )
    res = run_cli("finetune", "--merge", str(folder), "--output", str(tmp_path / "merged"))
    assert res.exit_code == 0, res.stderr
    assert json.loads((tmp_path / "merged" / "config.json").read_text())["fusion"]["kernels"] == "auto"


@pytest.mark.skipif(mamba_ops.kernels_available(), reason="the kernels are available here")
def test_required_kernels_without_them_are_one_line_before_training(tmp_path: Path, tiny_bert: Path) -> None:
    res = run_cli("finetune", str(micro_recipe(tmp_path, tiny_bert)), *KINDS["mamba_tokens"], "model.adapter.kernels=required")
    assert_one_line_error(res, "model.adapter.kernels: required, but the mamba-ssm CUDA kernels are not available", "use kernels: auto", code=1)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_bad_sweep_axes_are_all_reported_before_any_run(tmp_path: Path, tiny_bert: Path) -> None:
    recipe = micro_recipe(tmp_path, tiny_bert, "sweep")
    res = run_cli(
        "finetune", str(recipe), *KINDS["mamba_tokens"], "--sweep", "model.adapter.num_layer=1,2",
        "--sweep", "train.epochs=1,two", "--sweep", "model.adapter.scan=tokens,cnn",
    )  # fmt: skip
    assert res.exit_code == 2 and "Traceback" not in res.stderr, res.stderr
    lines = res.error_lines
    assert any("model.adapter.num_layer" in ln and "did you mean 'model.adapter.num_layers'" in ln for ln in lines), lines
    assert any("train.epochs" in ln and "two" in ln for ln in lines), lines
    assert any("model.adapter.scan" in ln and "cnn" in ln for ln in lines), lines
    assert not (tmp_path / "sweep").exists()
