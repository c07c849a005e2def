"""Training examples: prepared folders as data, class weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from finsent_cli.core.data.examples import class_weights
from finsent_cli.errors import FinsentError


def test_class_weights() -> None:
    assert class_weights("none", [0, 1]) is None
    torch.testing.assert_close(class_weights("balanced", [0, 1, 1, 1, 2, 2]), torch.tensor([2.0, 2 / 3, 1.0]))
    torch.testing.assert_close(class_weights([1.0, 0.5, 2.0], [0]), torch.tensor([1.0, 0.5, 2.0]))


def test_prepared_folder_as_data(tmp_path: Path) -> None:
    from finsent_cli.config.finetune import FinetuneData
    from finsent_cli.core.data.examples import load_examples

    folder = tmp_path / "prepared"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"kind": "labelled", "files": {"train": "train.jsonl", "valid": "valid.jsonl"}}))
    (folder / "train.jsonl").write_text('{"text": "Profit rose", "label": "positive"}\n{"text": "Sales fell", "label": "negative"}\n')
    (folder / "valid.jsonl").write_text('{"text": "Shares flat", "label": "neutral"}\n')
    splits = load_examples(FinetuneData(dir=folder))
    assert splits["train"][1] == {"text": "Sales fell", "label": "negative"} and len(splits["valid"]) == 1
    (folder / "manifest.json").write_text(json.dumps({"kind": "labelled", "files": {"train": "train.jsonl"}}))
    with pytest.raises(FinsentError, match="no 'valid' split"):
        load_examples(FinetuneData(dir=folder))
