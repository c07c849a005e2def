"""``export_onnx``: what ``MODEL/onnx/`` holds, re-exports, and the models it refuses (one clear line each,
nothing written)."""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from finsent_cli.core.inference import export as export_module
from finsent_cli.core.inference.export import EXPORT_DIR, FP32_TOLERANCE, PROBE_TEXTS, export_onnx
from finsent_cli.core.inference.loading import load_classifier
from finsent_cli.core.runs import model_fingerprint
from finsent_cli.errors import FinsentError
from finsent_cli.extras import install_hint
from tests.core.inference.test_backends import TEXTS, build_folder, make_backbone, spread_bert

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def backbone(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_backbone(tiny_bert, tmp_path_factory.mktemp("backbone") / "bert")


@pytest.fixture(scope="module")
def run(backbone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder whose best/ is the spread tiny BERT (kind hf_auto), exported with both graphs."""
    run = tmp_path_factory.mktemp("run") / "run"
    spread_bert(backbone, run / "best")
    result = export_onnx(run, int8=True)
    assert result.folder == run / "best" and set(result.graphs) == {"onnx", "onnx-int8"}
    return run


def test_the_export_holds_the_graphs_the_tokenizer_and_its_record(run: Path) -> None:
    out = run / "best" / EXPORT_DIR
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "model.int8.onnx", "model.onnx", "tokenizer.json", "tokenizer_config.json"]
    record = json.loads((out / "export.json").read_text())
    assert record["format"] == 1 and record["fingerprint"] == model_fingerprint(run / "best")
    assert record["graphs"] == {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}
    assert record["model"]["kind"] == "hf_auto" and record["max_length"] == 128
    assert record["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    assert record["opset"] >= 18 and set(record["versions"]) == {"torch", "onnx", "onnxscript", "onnxruntime"}
    # the check: every probe text, then batches of one text and of long inputs (128, 127 and 65 tokens)
    fp32, int8 = record["check"]["onnx"], record["check"]["onnx-int8"]
    assert fp32["texts"] == int8["texts"] == len(PROBE_TEXTS) + 6
    assert fp32["same_label"] == fp32["texts"] and fp32["max_abs_prob_diff"] <= FP32_TOLERANCE
    assert 0 < int8["max_abs_prob_diff"] < 1 and 0 <= int8["same_label"] <= int8["texts"]  # recorded, not judged
    graph = onnx.load(str(out / "model.onnx")).graph
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert dims == {"input_ids": ["batch", "sequence"], "attention_mask": ["batch", "sequence"]}
    assert [o.name for o in graph.output] == ["logits"]
    assert (out / "model.int8.onnx").stat().st_size < 0.4 * (out / "model.onnx").stat().st_size


def test_a_reexport_replaces_the_export(run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    result = export_onnx(copy / "best")  # fp32 only: the int8 graph of the first export goes
    assert set(result.graphs) == {"onnx"} and not (copy / "best" / EXPORT_DIR / "model.int8.onnx").exists()
    assert not [p for p in (copy / "best").iterdir() if p.name.startswith(".")]  # no temporary folder left
    with pytest.raises(FinsentError, match=r"no int8 graph for --backend onnx-int8; export it: finsent export \S+ --onnx --int8$"):
        load_classifier(copy, backend="onnx-int8")
    probs = load_classifier(copy, backend="onnx").predict_proba(TEXTS)
    np.testing.assert_allclose(probs, load_classifier(copy).predict_proba(TEXTS), atol=1e-5, rtol=0)


def test_text2text_exports_and_qlora_says_why_and_writes_nothing(backbone: Path, tiny_t5_folder: Path, tmp_path: Path) -> None:
    # the text-to-text T5 exports with its full attention cache (the slim one cannot be traced): same scores
    folder = build_folder(tmp_path / "t2t", "t5_text2text", tiny_t5_folder, spread=False)
    export_onnx(folder)
    np.testing.assert_allclose(
        load_classifier(folder, backend="onnx").predict_proba(TEXTS), load_classifier(folder).predict_proba(TEXTS), atol=1e-5, rtol=0
    )
    pytest.importorskip("bitsandbytes")
    qlora = build_folder(tmp_path / "qlora", "hf_encoder", backbone, {"kind": "qlora", "r": 4}, spread=False)
    with pytest.raises(FinsentError) as err:
        export_onnx(qlora)
    assert "a QLoRA folder runs its base in bitsandbytes 4-bit layers, which ONNX cannot hold" in err.value.message
    assert f"finsent finetune --merge {qlora} --output DIR, then finsent export DIR --onnx" in err.value.message
    assert not (qlora / EXPORT_DIR).exists()


def test_an_onnx_folder_that_finsent_did_not_write_is_left_alone(backbone: Path, tmp_path: Path) -> None:
    folder = spread_bert(backbone, tmp_path / "model")
    (folder / EXPORT_DIR).mkdir()
    (folder / EXPORT_DIR / "mine.onnx").write_bytes(b"not finsent's")
    with pytest.raises(FinsentError) as err:
        export_onnx(folder)
    assert err.value.exit_code == 2 and "exists and was not written by finsent export" in err.value.message
    assert (folder / EXPORT_DIR / "mine.onnx").read_bytes() == b"not finsent's"


@pytest.mark.parametrize("package", ["onnx", "onnxscript", "onnxruntime"])
def test_missing_export_tools_name_the_extra(package: str, backbone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # import PACKAGE -> ImportError
    with pytest.raises(FinsentError) as err:
        export_onnx(tmp_path / "never read")
    assert err.value.message == f"finsent export --onnx needs the package {package}: {install_hint('onnx')}"


def test_the_exporters_pages_of_advice_become_one_line() -> None:
    exc = RuntimeError(
        "Failed to export the model with torch.export. \x1b[96mThis is step 1/3\x1b[0m of exporting.\n- Debug it.\n\n"
        "## Exception summary\n\n<class 'torch._dynamo.exc.Unsupported'>: Cannot access data pointer of Tensor "
        "(e.g. FakeTensor, FunctionalTensor). If you're using torch.compile/export/fx, ...\n\n(Refer to the full stack)"
    )
    assert export_module._exporter_reason(exc) == "Unsupported: Cannot access data pointer of Tensor (e.g. FakeTensor, FunctionalTensor)"


@pytest.mark.slow
def test_a_graph_frozen_at_the_tracing_length_is_refused(backbone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Mamba's scan branches on the sequence length in Python (chunks of 64): traced at the probe batch's
    # length, the graph would fail on the check's 127-token batch. export runs it as one chunk...
    folder = build_folder(tmp_path / "mamba", "hf_encoder", backbone, {"kind": "mamba", "num_layers": 1, "head_dim": 16}, max_length=128)
    export_onnx(folder)
    long_texts = [TEXTS[-1] * 3, TEXTS[0], TEXTS[4]]
    clf = load_classifier(folder, backend="onnx")
    assert max(len(ids) for ids in clf.encode(long_texts)[0]) == 128
    np.testing.assert_allclose(clf.predict_proba(long_texts), load_classifier(folder).predict_proba(long_texts), atol=1e-5, rtol=0)
    # ... and a graph frozen at one length is refused, with the old export kept
    monkeypatch.setattr(export_module, "_one_chunk_scans", lambda model, longest: contextlib.nullcontext())
    with pytest.raises(FinsentError, match=r"the exported graph does not run on a batch of shape \(1, 127\)"):
        export_onnx(folder)
    assert load_classifier(folder, backend="onnx").predict_proba(long_texts).shape == (3, 3)
