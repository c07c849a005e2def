"""Inference backends (torch, int8, onnx, onnx-int8): each gives torch's labels on a fixed set of texts, for
every model kind that exports; and each refuses what it cannot run with one clear line.

Tolerances (largest |probability difference| from torch on :data:`TEXTS`): onnx 1e-5 (fp32 kernels sum in
another order: about 1e-6 in practice); int8 and onnx-int8 0.1 (int8 weights with a scale per output
channel, activations quantised per batch: 0.01-0.08 on these models, 0.01-0.02 on average for the fine-tuned
MiniLM), and the same label for every text. The heads of the test models are set (:func:`spread_head`) so
that the texts fall into all three classes, the top two probabilities at least 0.3 apart, so that the int8
rounding of no CPU flips a label.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from finsent_cli.core.inference.backends import BACKENDS, get_backend
from finsent_cli.core.inference.export import export_onnx
from finsent_cli.core.inference.loading import load_classifier
from finsent_cli.core.models.registry import forward_logits, get_kind
from finsent_cli.errors import FinsentError
from finsent_cli.extras import install_hint

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

TEXTS = [
    "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn in the corresponding period in 2007.",
    "Shares of Halvard Telecom fell 8% after a profit warning.",
    "The company is based in Helsinki.",
    "Net sales decreased by 5 % in the third quarter.",
    "Orders",
    "The board proposes a dividend of EUR 0.50 per share.",
    "Pre-tax loss widened to EUR 2.2 mn.",
    "The new plant will employ 120 people.",
    "Quarterly revenue beat analyst estimates and the stock jumped.",
    "The bank cut its full-year guidance.",
    "Merger talks with the rival collapsed on Friday.",
    "Oil prices were little changed.",
    "Profit before taxes was EUR 4.0 mn, up from EUR 3.6 mn.",
    "The company will hold its annual general meeting in March.",
    "Credit rating downgraded to junk.",
    "Record sales lifted margins to an all-time high.",
    "Production will be moved to Estonia.",
    "The market share of the group increased.",
    "Layoffs hit 300 workers at the mill.",
    " ".join(["Revenue guidance for the quarter was confirmed by the chief executive and the board"] * 6),  # past max_length
]
FP32_TOL = 1e-5
INT8_TOL = 0.1
TOL = {"int8": INT8_TOL, "onnx": FP32_TOL, "onnx-int8": INT8_TOL}


# ------------------------------------------------------------------------------------------ test models


def _head(model: torch.nn.Module) -> torch.nn.Linear:
    """The Linear layer that produces the class logits (inside peft's wrapper for LoRA folders)."""
    linears = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    name = next((n for n in linears if n.endswith("classifier.modules_to_save.default")), None)
    return linears[name or next(n for n in linears if n.endswith("classifier"))]


def spread_head(model: torch.nn.Module, tokenizer: Any, logits_fn: Any, texts: list[str], scale: float = 20.0) -> None:
    """Set the classification head so that ``texts`` spread over the three labels, far from the boundaries.

    The head reads the main direction of the texts' features (their first principal component, the one
    that int8 rounding disturbs least for its size): negative below one threshold, positive above another,
    neutral between, the thresholds in the two widest gaps between the texts (at least 4 texts a class).
    """
    head = _head(model)
    feats: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda m, args, out: feats.append(args[0].detach().float()))
    enc = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        logits_fn(model.eval(), enc["input_ids"], enc["attention_mask"])
    hook.remove()
    x = feats[0]  # (N, H)
    mu = x.mean(0)
    v = torch.linalg.svd(x - mu, full_matrices=False).Vh[0]  # (H,)
    t = (x - mu) @ v  # (N,)
    v, t = v / t.std(), t / t.std()
    ts = t.sort().values.tolist()
    n = len(ts)
    lo, hi = max(((i, j) for i in range(3, n - 8) for j in range(i + 4, n - 4)),
                 key=lambda ij: min(ts[ij[0] + 1] - ts[ij[0]], ts[ij[1] + 1] - ts[ij[1]]))  # fmt: skip
    tau1, tau2 = (ts[lo] + ts[lo + 1]) / 2, (ts[hi] + ts[hi + 1]) / 2
    # logits (B, 3): s * (tau1 - t), 0, s * (t - tau2) on t = (x - mu) . v
    w = scale * torch.stack([-v, torch.zeros_like(v), v])  # (3, H)
    b = scale * torch.tensor([tau1, 0.0, -tau2]) - w @ mu  # (3,)
    with torch.no_grad():
        head.weight.copy_(w.to(head.weight.dtype))
        head.bias.copy_(b.to(head.bias.dtype))


def make_backbone(tiny_bert: Path, out: Path) -> Path:
    """``tiny_bert`` again (2 layers of width 32, the MiniLM tokenizer), initialised with std 0.1 instead of
    0.02: its features differ from text to text by more than int8 rounding moves them (at 0.02 its [CLS]
    pooler barely tells the texts apart and int8 answers at random)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig.from_pretrained(tiny_bert, initializer_range=0.1)
    BertForSequenceClassification(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(out)
    return out


def spread_bert(backbone: Path, out: Path) -> Path:
    """A plain Hugging Face classifier folder (kind hf_auto): ``backbone`` with a :func:`spread_head`."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(backbone)
    tok = AutoTokenizer.from_pretrained(backbone)
    spread_head(model, tok, forward_logits, TEXTS)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def build_folder(
    out: Path, kind: str, backbone: Path, adapter: dict[str, Any] | None = None, spread: bool = True, max_length: int = 32
) -> Path:
    """An untrained model folder of ``kind`` over ``backbone`` (for hf_encoder with ``adapter``), as
    ``finsent finetune`` writes it, with a :func:`spread_head`; the matrices that start at zero (LoRA's B,
    the fusion modules' output gates) randomised, so that what they compute reaches the logits."""
    from finsent_cli.config.models import HFEncoderCfg, T5ClsCfg, T5Text2TextCfg

    cfgs = {"hf_encoder": lambda: HFEncoderCfg(backbone=str(backbone), max_length=max_length, adapter=adapter or {"kind": "none"}),
            "t5_cls": lambda: T5ClsCfg(backbone=str(backbone), max_length=max_length),
            "t5_text2text": lambda: T5Text2TextCfg(backbone=str(backbone), max_length=max_length)}  # fmt: skip
    cfg = cfgs[kind]()
    impl = get_kind(kind)
    torch.manual_seed(0)
    model, tok = impl.build(cfg)
    with torch.no_grad():  # zero-initialised matrices (LoRA's B, fusion gates) would hide what they compute
        for p in model.parameters():
            if p.requires_grad and p.dim() > 1 and not p.any():
                p.normal_(0, 0.05)
    if spread:
        spread_head(model, tok, impl.class_logits, TEXTS)
    out.mkdir(parents=True)
    impl.save(model, tok, out, {**impl.meta(cfg), "run": "test"})
    return out


KINDS = {  # name -> (kind, adapter); the Mamba kinds trace slowly (half a minute each)
    "hf_encoder": ("hf_encoder", {"kind": "none"}),
    "lora": ("hf_encoder", {"kind": "lora", "r": 4}),
    "mamba": ("hf_encoder", {"kind": "mamba", "num_layers": 1, "head_dim": 16}),
    "gamba": ("hf_encoder", {"kind": "gamba", "num_layers": 1, "head_dim": 16, "attention_heads": 2}),
    "t5_cls": ("t5_cls", None),
}
SLOW = {"mamba", "gamba"}


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def backbone(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_backbone(tiny_bert, tmp_path_factory.mktemp("backbone") / "bert")


@pytest.fixture(scope="module")
def exported(backbone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The spread tiny BERT (kind hf_auto), exported with both graphs."""
    folder = spread_bert(backbone, tmp_path_factory.mktemp("hf_auto") / "model")
    export_onnx(folder, int8=True)
    return folder


@pytest.fixture(scope="module")
def reference(exported: Path) -> np.ndarray:
    return load_classifier(exported).predict_proba(TEXTS, batch_size=6)


# ------------------------------------------------------------------------------------------ parity


def test_registry_names_the_backends_and_suggests_on_a_typo() -> None:
    assert list(BACKENDS) == ["torch", "int8", "onnx", "onnx-int8"]
    assert all(get_backend(name).name == name for name in BACKENDS)
    with pytest.raises(FinsentError) as err:
        get_backend("onxx")
    assert err.value.exit_code == 2 and "did you mean 'onnx'?" in err.value.message


def test_the_test_model_spreads_the_texts_over_all_labels(reference: np.ndarray) -> None:
    labels = reference.argmax(1)
    assert sorted(set(labels.tolist())) == [0, 1, 2], labels
    top2 = np.sort(reference, axis=1)[:, -2:]
    assert (top2[:, 1] - top2[:, 0]).min() > 0.3  # far from every boundary: int8 cannot flip a label


@pytest.mark.parametrize("backend", ["int8", "onnx", "onnx-int8"])
def test_each_backend_gives_torchs_labels(backend: str, exported: Path, reference: np.ndarray) -> None:
    clf = load_classifier(exported, backend=backend)
    assert clf.backend == backend and clf.max_length == 128
    probs = clf.predict_proba(TEXTS, batch_size=6)
    np.testing.assert_array_equal(probs.argmax(1), reference.argmax(1))
    np.testing.assert_allclose(probs, reference, atol=TOL[backend], rtol=0)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    # one text at a time (batch of one, no padding) too
    alone = np.concatenate([clf.predict_proba([t]) for t in TEXTS[:5]])
    np.testing.assert_allclose(alone, reference[:5], atol=TOL[backend], rtol=0)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in KINDS]
)
def test_every_exportable_kind_gives_torchs_labels_on_every_backend(
    name: str, backbone: Path, tiny_t5_folder: Path, tmp_path: Path
) -> None:
    kind, adapter = KINDS[name]
    folder = build_folder(tmp_path / name, kind, tiny_t5_folder if kind.startswith("t5") else backbone, adapter)
    export_onnx(folder, int8=True)
    reference = load_classifier(folder).predict_proba(TEXTS, batch_size=7)
    top2 = np.sort(reference, axis=1)[:, -2:]
    assert len(set(reference.argmax(1).tolist())) == 3 and (top2[:, 1] - top2[:, 0]).min() > 0.3
    for backend in ("int8", "onnx", "onnx-int8"):
        probs = load_classifier(folder, backend=backend).predict_proba(TEXTS, batch_size=7)
        np.testing.assert_array_equal(probs.argmax(1), reference.argmax(1), err_msg=backend)
        np.testing.assert_allclose(probs, reference, atol=TOL[backend], rtol=0, err_msg=backend)


def test_calibration_and_label_order_stay_outside_the_graph(exported: Path, reference: np.ndarray, tmp_path: Path) -> None:
    import json

    folder = tmp_path / "calibrated"
    shutil.copytree(exported, folder)
    (folder / "finsent.json").write_text(json.dumps({"kind": "hf_auto", "task": "classification", "temperature": 2.0}))
    export_onnx(folder)  # finsent.json is part of the fingerprint; its temperature is not
    meta = json.loads((folder / "finsent.json").read_text())
    (folder / "finsent.json").write_text(json.dumps({**meta, "temperature": 3.0}))  # a later calibration: still valid
    onnx, torch_ = load_classifier(folder, backend="onnx"), load_classifier(folder)
    assert onnx.temperature == torch_.temperature == 3.0
    np.testing.assert_allclose(onnx.predict_proba(TEXTS), torch_.predict_proba(TEXTS), atol=FP32_TOL, rtol=0)
    raw = load_classifier(folder, backend="onnx", calibrated=False).predict_proba(TEXTS)
    np.testing.assert_allclose(raw, reference, atol=FP32_TOL, rtol=0)


# ------------------------------------------------------------------------------------------ refusals


def test_onnx_without_an_export_names_the_command(backbone: Path, tmp_path: Path) -> None:
    folder = spread_bert(backbone, tmp_path / "plain model")
    for backend, command in (("onnx", "--onnx"), ("onnx-int8", "--onnx --int8")):
        with pytest.raises(FinsentError) as err:
            load_classifier(folder, backend=backend)
        assert f"no ONNX export for --backend {backend}" in err.value.message
        assert err.value.message.endswith(f"finsent export '{folder}' {command}"), err.value.message


def test_onnx_int8_without_the_int8_graph_names_the_command(exported: Path, tmp_path: Path) -> None:
    import json

    folder = tmp_path / "fp32_only"
    shutil.copytree(exported, folder)
    record = json.loads((folder / "onnx" / "export.json").read_text())
    del record["graphs"]["onnx-int8"]
    (folder / "onnx" / "export.json").write_text(json.dumps(record))
    with pytest.raises(FinsentError, match=r"no int8 graph for --backend onnx-int8; export it: finsent export \S+ --onnx --int8$"):
        load_classifier(folder, backend="onnx-int8")
    assert load_classifier(folder, backend="onnx").backend == "onnx"


def test_a_graph_of_other_weights_is_refused(exported: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "retrained"
    shutil.copytree(exported, folder)
    weights = load_file(folder / "model.safetensors")
    weights["classifier.bias"] = weights["classifier.bias"] + 1.0  # fine-tuned again after the export
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    for backend in ("onnx", "onnx-int8"):
        with pytest.raises(FinsentError) as err:
            load_classifier(folder, backend=backend)
        message = err.value.message
        assert "exported from other weights than" in message and str(folder) in message
        assert message.endswith(f"export again: finsent export {folder} --onnx" + (" --int8" if backend == "onnx-int8" else ""))
    load_classifier(folder)  # torch runs the folder's new weights


def test_onnxruntime_missing_names_the_extra(exported: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(FinsentError, match=re.escape(f"--backend onnx needs the package onnxruntime: {install_hint('onnx')}")):
        load_classifier(exported, backend="onnx")


def test_cpu_backends_refuse_a_gpu_and_take_auto_as_the_cpu(exported: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a GPU machine
    for backend in ("int8", "onnx", "onnx-int8"):
        with pytest.raises(FinsentError) as err:
            load_classifier(exported, device="cuda", backend=backend)
        assert err.value.exit_code == 2 and f"--backend {backend} runs on the CPU only" in err.value.message
        assert load_classifier(exported, device="auto", backend=backend).device.type == "cpu"


def test_int8_refuses_what_it_cannot_run(tiny_bert: Path, tiny_t5_folder: Path, tmp_path: Path) -> None:
    folder = build_folder(tmp_path / "t2t", "t5_text2text", tiny_t5_folder, spread=False)
    with pytest.raises(FinsentError) as err:
        load_classifier(folder, backend="int8")
    assert "--backend int8 cannot run this model" in err.value.message and err.value.message.endswith("use --backend torch")
    pytest.importorskip("bitsandbytes")
    qlora = build_folder(tmp_path / "qlora", "hf_encoder", tiny_bert, {"kind": "qlora", "r": 4}, spread=False)
    with pytest.raises(FinsentError, match="a QLoRA folder, its base already in 4 bits; use --backend torch"):
        load_classifier(qlora, backend="int8")
