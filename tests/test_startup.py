"""Help, version and completions start fast: they never import the ML stack (torch and friends).

Each case runs the real app in a fresh interpreter and checks ``sys.modules`` right after it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import HANG_GUARD_S

HEAVY = ("torch", "transformers", "datasets", "sklearn", "numpy", "pyarrow", "pandas", "scipy", "safetensors",
         "tokenizers", "huggingface_hub", "peft", "accelerate", "sentencepiece", "matplotlib")  # fmt: skip
COMMANDS = ("prep", "tokenizer", "finetune", "tune", "quickstart", "completions", "eval", "report", "predict", "explain", "select", "export", "serve", "check", "models")
CASES = [["--help"], ["--version"], *[[c, "--help"] for c in COMMANDS], ["completions", "bash"]]

# One interpreter runs the cases in turn and stops at the first that imports a heavy module, so a
# failure names the case that did it; every case before it was checked in a clean state.
PROBE = """
import json, sys
from finsent_cli.main import app
heavy, cases = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for args in cases:
    code = app(args, standalone_mode=False)
    found = sorted({m.split(".")[0] for m in sys.modules} & set(heavy))
    print(json.dumps({"args": args, "code": code, "heavy": found}), file=sys.stderr)
    if found:
        break
"""


def test_help_version_and_completions_import_no_ml_stack() -> None:
    res = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(HEAVY), json.dumps(CASES)],
        check=False, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=HANG_GUARD_S,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    reports = [json.loads(line) for line in res.stderr.splitlines() if line.startswith("{")]
    for r in reports:
        assert r["heavy"] == [], f"finsent {' '.join(r['args'])} imported {', '.join(r['heavy'])}"
        assert r["code"] in (0, None), r
    assert [r["args"] for r in reports] == CASES


def test_module_entry_point_help_imports_no_ml_stack() -> None:
    # the way users run it (python -m finsent_cli, like the console script): -X importtime lists every import
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "finsent_cli", "predict", "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert res.returncode == 0 and "--text-column" in res.stdout
    imported = {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in res.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "finsent_cli" in imported
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
