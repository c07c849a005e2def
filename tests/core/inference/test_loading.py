"""load_classifier: folder kinds, label mapping, length-sorted batching, truncation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from finsent_cli.core.inference.classifier import map_labels, pick_device
from finsent_cli.core.inference.loading import load_classifier
from finsent_cli.core.runs import resolve_model_folder
from finsent_cli.errors import FinsentError
from tests.classifier_fakes import sharpened_copy

TEXTS = ["Profits rose sharply", "", "Shares fell after the profit warning was issued on Monday", "ok", "EUR 13.1 mn"]


@pytest.fixture(scope="module")
def sharp(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sharpened_copy(tiny_bert, tmp_path_factory.mktemp("sharp"))


def test_loads_model_folder(sharp: Path) -> None:
    clf = load_classifier(sharp)
    assert clf.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    assert clf.max_length == 128  # min(tokenizer 512, max_position_embeddings 128)
    assert not clf.model.training
    probs = clf.predict_proba(TEXTS)
    assert probs.shape == (5, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_order_restored_under_length_sorting(sharp: Path) -> None:
    clf = load_classifier(sharp)
    batched = clf.predict_proba(TEXTS, batch_size=2)
    one_by_one = np.concatenate([clf.predict_proba([t]) for t in TEXTS])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    assert np.ptp(batched[:, 2]) > 1e-3  # the texts really get different answers


def test_run_folder_resolves_to_best_then_last(sharp: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(sharp, run / "last")
    assert resolve_model_folder(run) == run / "last"
    shutil.copytree(sharp, run / "best")
    assert resolve_model_folder(run) == run / "best"
    assert load_classifier(run).path == run / "best"


@pytest.mark.parametrize("kind", ["missing", "file", "empty_dir", "no_weights"])
def test_bad_model_folders(kind: str, sharp: Path, tmp_path: Path) -> None:
    path = tmp_path / "m"
    if kind == "file":
        path.write_text("x")
    elif kind == "empty_dir":
        path.mkdir()
    elif kind == "no_weights":
        path.mkdir()
        shutil.copy(sharp / "config.json", path / "config.json")
    with pytest.raises(FinsentError) as err:
        load_classifier(path)
    assert str(path) in err.value.message


def _relabelled(src: Path, folder: Path, id2label: dict[str, str]) -> Path:
    """A copy of the model folder ``src`` whose ``config.json`` names its outputs ``id2label``."""
    shutil.copytree(src, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["id2label"] = id2label
    cfg["label2id"] = {v: int(k) for k, v in id2label.items()}
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def test_labels_in_another_order_are_permuted(sharp: Path, tmp_path: Path) -> None:
    folder = _relabelled(sharp, tmp_path / "reordered", {"0": "Positive", "1": "NEGATIVE", "2": "neutral"})
    plain, reordered = load_classifier(sharp), load_classifier(folder)
    p, q = plain.predict_proba(TEXTS), reordered.predict_proba(TEXTS)
    # same logits, relabelled: the model's column 0 is now "positive", column 1 "negative"
    np.testing.assert_allclose(q[:, 2], p[:, 0], atol=1e-6)
    np.testing.assert_allclose(q[:, 0], p[:, 1], atol=1e-6)


def test_generic_label_names_need_a_map() -> None:
    generic = {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    with pytest.raises(FinsentError, match="model labels LABEL_0, LABEL_1, LABEL_2 are not negative/neutral/positive"):
        map_labels(generic)
    assert map_labels(generic, {"LABEL_0": "positive", "1": "negative", "2": "neutral"}) == {0: "positive", 1: "negative", 2: "neutral"}
    with pytest.raises(FinsentError, match="not negative/neutral/positive"):
        map_labels({0: "negative", 1: "positive"})


def test_finsent_json_sets_max_length_and_label_map(sharp: Path, tmp_path: Path) -> None:
    folder = _relabelled(sharp, tmp_path / "meta", {"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"})
    with pytest.raises(FinsentError, match="label_map"):
        load_classifier(folder)
    meta = {"task": "classification", "adapter": "none", "max_length": 16, "label_map": {"0": "negative", "1": "neutral", "2": "positive"}}
    (folder / "finsent.json").write_text(json.dumps(meta))
    clf = load_classifier(folder)
    assert clf.max_length == 16 and clf.id2label == {0: "negative", 1: "neutral", 2: "positive"}


def test_not_a_classifier_task(sharp: Path, tmp_path: Path) -> None:
    folder = tmp_path / "t5"
    shutil.copytree(sharp, folder)
    (folder / "finsent.json").write_text(json.dumps({"task": "pretraining"}))
    with pytest.raises(FinsentError, match="not a sentiment classifier"):
        load_classifier(folder)


def test_truncation_keeps_special_tokens_and_is_flagged(sharp: Path) -> None:
    clf = load_classifier(sharp)
    clf.max_length = 8
    ids, truncated = clf.encode(["one two three four five six seven eight nine", "one two"])
    assert truncated == [True, False]
    assert len(ids[0]) == 8 and ids[0][0] == clf.tokenizer.cls_token_id and ids[0][-1] == clf.tokenizer.sep_token_id
    _, flags = clf.predict(["a " * 50, "short"])
    assert flags == [True, False]


def test_plain_lora_adapter_folder(tiny_bert: Path, tmp_path: Path) -> None:
    """A peft adapter without finsent.json: the base comes from adapter_config.json and is merged."""
    from peft import LoraConfig, get_peft_model
    from transformers import BertForSequenceClassification

    torch.manual_seed(1)
    base = BertForSequenceClassification.from_pretrained(tiny_bert)
    peft_model = get_peft_model(base, LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query", "value"], init_lora_weights=False))
    peft_model.eval()
    out = tmp_path / "lora"
    peft_model.save_pretrained(out)
    shutil.copy(tiny_bert / "tokenizer.json", out / "tokenizer.json")
    shutil.copy(tiny_bert / "tokenizer_config.json", out / "tokenizer_config.json")
    clf = load_classifier(out)
    enc = clf.tokenizer(["Profits rose sharply"], return_tensors="pt")
    with torch.no_grad():
        expected = torch.softmax(peft_model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits, -1)
    np.testing.assert_allclose(clf.predict_proba(["Profits rose sharply"]), expected.numpy(), atol=1e-5)


def test_finsent_mean_pooling_folder_goes_through_heads(tiny_bert: Path, tmp_path: Path) -> None:
    from finsent_cli.core.models.hf_encoder import model as heads

    torch.manual_seed(2)
    model = heads.new_classifier(str(tiny_bert), pooling="mean").eval()
    out = tmp_path / "mean"
    model.save_pretrained(out)
    shutil.copy(tiny_bert / "tokenizer.json", out / "tokenizer.json")
    shutil.copy(tiny_bert / "tokenizer_config.json", out / "tokenizer_config.json")
    (out / "finsent.json").write_text(json.dumps({"task": "classification", "adapter": "none", "pooling": "mean", "max_length": 32}))
    clf = load_classifier(out)
    assert clf.max_length == 32
    texts = ["Profits rose sharply", "Shares fell after the profit warning"]
    enc = clf.tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = torch.softmax(model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits, -1)
    np.testing.assert_allclose(clf.predict_proba(texts), expected.numpy(), atol=1e-5)


def test_device_checked() -> None:
    assert pick_device("cpu").type == "cpu"
    with pytest.raises(FinsentError, match="unknown device 'gpu'"):
        pick_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(FinsentError, match="no CUDA GPU"):
            pick_device("cuda")
        assert pick_device("auto").type == "cpu"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(sharp: Path) -> None:
    cpu = load_classifier(sharp).predict_proba(TEXTS)
    gpu = load_classifier(sharp, device="cuda").predict_proba(TEXTS)
    np.testing.assert_allclose(gpu, cpu, atol=1e-4)
