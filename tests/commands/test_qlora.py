"""`finsent qlora`: a 4-bit base (bitsandbytes on CPU), LoRA adapters and a full-precision head, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from finsent_cli.core.inference.loading import load_classifier
from tests.finetune_helpers import assert_serves, micro_recipe
from tests.helpers import HANG_GUARD_S, assert_one_line_error, run_cli

pytest.importorskip("bitsandbytes")

TEXTS = ["Profit rose 20 % to EUR 3 mn", "Sales fell", "The company is based in Helsinki"]
QLORA = ["model.adapter.kind=qlora", "model.adapter.r=4", "train.epochs=1", "optim.lr=1e-2"]


def _linear4bit_count(model: torch.nn.Module) -> int:
    import bitsandbytes as bnb

    return sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())


@pytest.fixture(scope="module")
def qlora_run(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    tmp = tmp_path_factory.mktemp("qlora")
    res = run_cli("qlora", str(micro_recipe(tmp, tiny_bert, "q")), *QLORA)
    assert res.exit_code == 0, res.stderr
    assert "trainable parameters:" in res.stderr + res.stdout and "frozen base in memory" in res.stderr + res.stdout
    return tmp / "q"


def test_qlora_saves_a_peft_adapter_and_the_quantisation(qlora_run: Path) -> None:
    best = qlora_run / "best"
    assert (best / "adapter_config.json").exists() and (best / "adapter_model.safetensors").exists()
    assert not (best / "model.safetensors").exists()
    meta = json.loads((best / "finsent.json").read_text())
    assert meta["adapter"] == "qlora" and meta["adapter_config"]["quant_type"] == "nf4"
    assert meta["adapter_config"]["double_quant"] is True and meta["adapter_config"]["r"] == 4
    adapter = json.loads((best / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and "classifier" in adapter["modules_to_save"]


def test_a_qlora_folder_loads_its_4bit_base_and_merge_gives_full_precision(qlora_run: Path, tmp_path: Path) -> None:
    quantised = load_classifier(qlora_run)
    assert _linear4bit_count(quantised.model) == 12  # q, k, v, attention output, intermediate, output x 2 layers
    assert quantised.model.base_model.model.classifier.modules_to_save["default"].weight.dtype == torch.float32

    res = run_cli("qlora", "--merge", str(qlora_run), "--output", str(tmp_path / "merged"))
    assert res.exit_code == 0, res.stderr
    merged = load_classifier(tmp_path / "merged")
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    assert _linear4bit_count(merged.model) == 0
    assert json.loads((tmp_path / "merged" / "finsent.json").read_text())["adapter"] == "none"
    # The adapter was trained against NF4 weights; folded into the fp32 base, the probabilities move by
    # the quantisation error only.
    a, b = quantised.predict_proba(TEXTS), merged.predict_proba(TEXTS)
    assert a.shape == (3, 3) and abs(a - b).max() < 0.05
    assert abs(a - b).max() > 0  # really two different bases


def test_eval_predict_and_explain_accept_a_qlora_run(qlora_run: Path, tmp_path: Path) -> None:
    assert_serves(qlora_run, TEXTS, TEXTS[0], "Profit", tmp_path)


def test_qlora_turns_a_lora_recipe_into_qlora(tmp_path: Path, tiny_bert: Path) -> None:
    recipe = micro_recipe(tmp_path, tiny_bert)
    res = run_cli("qlora", str(recipe), "model.adapter.kind=lora", "model.adapter.r=2", "--dry-run")
    assert res.exit_code == 0, res.stderr
    assert "kind: qlora" in res.stdout and "r: 2" in res.stdout and "quant_type: nf4" in res.stdout


def test_qlora_refuses_other_adapters(tmp_path: Path, tiny_bert: Path) -> None:
    res = run_cli("qlora", str(micro_recipe(tmp_path, tiny_bert)), "model.adapter.kind=mamba")
    assert_one_line_error(res, "model.adapter.kind is mamba", "finsent finetune", code=2)
    res = run_cli("qlora", str(micro_recipe(tmp_path, tiny_bert)))  # kind none
    assert_one_line_error(res, "model.adapter.kind is none", code=2)


def test_target_modules_that_match_nothing_list_the_names_that_exist(tmp_path: Path, tiny_bert: Path) -> None:
    res = run_cli("qlora", str(micro_recipe(tmp_path, tiny_bert)), *QLORA, "model.adapter.target_modules=[q, v]")
    line = assert_one_line_error(res, "model.adapter.target_modules", "['q', 'v'] match no module", code=1)
    assert "query" in line and "value" in line and "dense" in line and "classifier" not in line
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_without_bitsandbytes_qlora_suggests_lora(tmp_path: Path, tiny_bert: Path) -> None:
    # A bitsandbytes that cannot load (no native library for this platform, say): python -c sets it to None.
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['bitsandbytes'] = None; sys.argv = ['finsent'] + sys.argv[1:]; "
        "from finsent_cli.main import main; main()"
    )
    recipe = micro_recipe(tmp_path, tiny_bert)
    proc = subprocess.run([sys.executable, "-c", code, "qlora", str(recipe), *QLORA], capture_output=True, text=True, timeout=HANG_GUARD_S, check=False)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode != 0 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "qlora needs bitsandbytes" in lines[0] and "model.adapter.kind=lora" in lines[0]


def test_qlora_on_finsents_pretrained_t5(tmp_path: Path, tiny_t5_folder: Path) -> None:
    run = tiny_t5_folder.parent  # a pretrain run folder: its best/ is the backbone
    recipe = micro_recipe(tmp_path, run, "t5")
    res = run_cli("qlora", str(recipe), *QLORA, "model.adapter.target_modules=[q, k, v, o]")
    assert res.exit_code == 0, res.stderr
    clf = load_classifier(tmp_path / "t5")
    assert _linear4bit_count(clf.model) == 12  # q, k, v, o, wi_0, wi_1 x 2 layers (transformers keeps wo in fp32)
    assert clf.predict_proba(TEXTS).shape == (3, 3)


def test_a_bitsandbytes_that_transformers_cannot_use_suggests_lora(monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers.integrations
    from transformers.utils import import_utils

    from finsent_cli.config.models import QLoraCfg
    from finsent_cli.core.peft.qlora import bnb_config
    from finsent_cli.errors import FinsentError

    with monkeypatch.context() as old:  # an installed bitsandbytes older than transformers accepts
        old.setattr(import_utils, "is_bitsandbytes_available", lambda *a, **k: False)
        with pytest.raises(FinsentError, match=r"qlora needs bitsandbytes .*transformers needs bitsandbytes >= .*kind=lora"):
            bnb_config(QLoraCfg())

    def no_backend(raise_exception: bool = False) -> bool:  # a build with no backend for these devices
        raise RuntimeError("None of the available devices `available_devices = {'cpu'}` are supported\nmore")

    monkeypatch.setattr(transformers.integrations, "validate_bnb_backend_availability", no_backend)
    with pytest.raises(FinsentError, match=r"\(None of the available devices .* are supported\); .*kind=lora$"):
        bnb_config(QLoraCfg())


def test_importing_bitsandbytes_prints_nothing() -> None:
    """On avx512_bf16 CPUs bitsandbytes logs at import that the hub's `kernels` package is missing; finsent
    downloads no kernels, so that line is noise in every qlora and lora run."""
    import subprocess
    import sys

    code = "from finsent_cli.config.models import QLoraCfg; from finsent_cli.core.peft.qlora import bnb_config; bnb_config(QLoraCfg())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_GUARD_S, check=False)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
