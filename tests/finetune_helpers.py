"""Shared by the fine-tuning tests: a micro recipe on the tiny BERT and ways to read what it wrote."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from safetensors.torch import load_file

from finsent_cli.core.models.registry import get_kind
from finsent_cli.core.runs import read_meta

SAMPLE = Path(__file__).resolve().parents[1] / "finsent_cli" / "resources" / "sample_headlines.csv"


def write_csv(path: Path, rows: list[dict]) -> Path:
    """Write ``text,label`` rows to ``path``."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["text", "label"])
        w.writeheader()
        w.writerows(rows)
    return path


def micro_data(tmp_path: Path, n_train: int = 48, n_valid: int = 24) -> tuple[Path, Path]:
    """``data/train.csv`` (the first ``n_train`` sample headlines) and ``data/valid.csv`` (``n_valid`` from row 200)."""
    rows = list(csv.DictReader(SAMPLE.open(encoding="utf-8")))
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    return write_csv(data / "train.csv", rows[:n_train]), write_csv(data / "valid.csv", rows[200 : 200 + n_valid])


def micro_recipe(tmp_path: Path, backbone: Path, name: str = "run", n_train: int = 48, extra: str = "") -> Path:
    """A recipe on 48 training / 24 validation headlines with the tiny BERT; deterministic (no dropout)."""
    train, valid = micro_data(tmp_path, n_train)
    recipe = tmp_path / f"{name}.yaml"
    recipe.write_text(
        f"output_dir: {tmp_path / name}\n"
        f"model: {{backbone: {backbone}, max_length: 24, dropout: 0.1, backbone_dropout: 0.1}}\n"
        f"data: {{train: {train}, valid: {valid}}}\n"
        "optim: {lr: 1.0e-3}\n"
        "train: {epochs: 2, batch_size: 8, eval_every: epoch, log_every: 2}\n" + extra,
        encoding="utf-8",
    )
    return recipe


def load_hf_encoder(folder: Path) -> tuple[torch.nn.Module, object]:
    """A model folder of kind hf_encoder through its kind (LoRA kept as an adapter: trainable=True)."""
    model, tok = get_kind("hf_encoder").load(folder, read_meta(folder), trainable=True)
    return model.eval(), tok


def weights(folder: Path) -> dict[str, torch.Tensor]:
    """The tensors of a full model folder."""
    return load_file(folder / "model.safetensors")


def assert_serves(run: Path, texts: list[str], explained: str, word: str, tmp_path: Path) -> None:
    """``eval``, ``predict`` and ``explain`` all accept the run folder ``run`` (made by :func:`micro_recipe`):
    eval prints macro-F1 on its validation file, predict one line per text after the header, explain shows
    ``word`` of ``explained``."""
    from tests.helpers import run_cli

    res = run_cli("eval", str(run), str(run.parent / "data" / "valid.csv"), "-q")
    assert res.exit_code == 0 and "macro" in res.stdout.lower(), res.stderr
    inputs = tmp_path / "in.txt"
    inputs.write_text("\n".join(texts) + "\n", encoding="utf-8")
    res = run_cli("predict", str(inputs), "-m", str(run), "-q")
    assert res.exit_code == 0 and len(res.stdout.strip().splitlines()) == len(texts) + 1, res.stderr
    res = run_cli("explain", explained, "-m", str(run))
    assert res.exit_code == 0 and word in res.stdout, res.stderr


def sweep_recipe(tmp_path: Path, data: str | Path, model: str = "{backbone: minilm, max_length: 24}") -> Path:
    """A one-epoch recipe over ``data``/train.csv and valid.csv writing into ``tmp_path/sweep`` (for sweep tests)."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"output_dir: {tmp_path / 'sweep'}\n"
        f"model: {model}\n"
        f"data: {{train: '{data}/train.csv', valid: '{data}/valid.csv'}}\n"
        "train: {epochs: 1, batch_size: 8, seed: 13}\n",
        encoding="utf-8",
    )
    return recipe


def two_line_splits(tmp_path: Path) -> Path:
    """``tmp_path/data`` with a two-line train.csv and valid.csv."""
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "valid"):
        (data / f"{split}.csv").write_text("text,label\nprofit rose,positive\nshares fell,negative\n", encoding="utf-8")
    return data
