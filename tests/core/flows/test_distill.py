"""`finsent distill`: the teacher's cached soft labels, the loss, the corpus draw, the flow and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from finsent_cli.config.distill import DistillRecipe
from finsent_cli.config.loader import load_recipe
from finsent_cli.core.data.corpus import sample_corpus
from finsent_cli.core.distill import teacher as teacher_mod
from finsent_cli.core.distill.loss import distillation_loss
from finsent_cli.core.distill.teacher import load_teacher, soft_targets, teacher_logits
from finsent_cli.core.flows.distill import run_distill
from finsent_cli.core.inference.loading import load_classifier
from finsent_cli.core.progress import NullReporter
from finsent_cli.core.runs import model_fingerprint
from finsent_cli.errors import FinsentError, RecipeError
from tests.finetune_helpers import micro_recipe
from tests.helpers import CORPUS_WORDS, assert_one_line_error, run_cli

TEXTS = ["Shares of Nokia fell 8% after a profit warning", "Quarterly revenue rose", "The bank kept its dividend", "Oil"]


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    """A run folder fine-tuned from the tiny BERT on 48 sample headlines (a teacher, if a poor one)."""
    tmp = tmp_path_factory.mktemp("teacher")
    res = run_cli("finetune", str(micro_recipe(tmp, tiny_bert, "teacher")), "-q")
    assert res.exit_code == 0, res.stderr
    return tmp / "teacher"


def _corpus(path: Path, n: int = 300) -> Path:
    import random

    rng = random.Random(1)
    lines = [" ".join(rng.choice(CORPUS_WORDS) for _ in range(rng.randint(1, 10))) for _ in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _recipe(tmp_path: Path, run: Path, student: Path, *, teacher: Path | None = None, extra: str = "", lines: int = 100) -> Path:
    """A distillation recipe on the labelled data of the teacher ``run``; ``teacher`` (default: the run) teaches."""
    data, teacher = run.parent / "data", teacher or run
    recipe = tmp_path / "distill.yaml"
    recipe.write_text(
        f"output_dir: {tmp_path / 'student'}\n"
        f"teacher: {{models: [{teacher}], batch_size: 16, device: cpu, cache_dir: {tmp_path / 'cache'}}}\n"
        f"corpus: {{paths: [{_corpus(tmp_path / 'corpus.txt')}], lines: {lines}}}\n"
        f"model: {{backbone: {student}, max_length: 24, dropout: 0.0, backbone_dropout: 0.0}}\n"
        f"data: {{train: {data / 'train.csv'}, valid: {data / 'valid.csv'}}}\n"
        "optim: {lr: 1.0e-3}\n"
        "train: {epochs: 1, batch_size: 8, log_every: 5, mixed_precision: 'no'}\n" + extra,
        encoding="utf-8",
    )
    return recipe


# ------------------------------------------------------------------------------------------------ loss


def test_the_loss_is_hinton_kd_plus_cross_entropy_on_labelled_rows() -> None:
    torch.manual_seed(0)
    logits, teacher = torch.randn(4, 3), torch.randn(4, 3)
    soft = torch.softmax(teacher / 2.0, dim=-1)
    labels = torch.tensor([0, 2, -100, -100])
    log_q = torch.log_softmax(logits / 2.0, dim=-1)
    kl = (soft * (soft.log() - log_q)).sum(-1) * 4.0  # (4,)
    ce = torch.nn.functional.cross_entropy(logits[:2], labels[:2], reduction="none")  # (2,)
    got = distillation_loss(logits, soft, labels, 2.0, 0.3)
    assert torch.allclose(got, (0.3 * kl.sum() + 0.7 * ce.sum()) / 4, atol=1e-6)  # every example weighs 1/4
    assert torch.allclose(distillation_loss(logits, soft, labels, 2.0, 1.0), kl.mean(), atol=1e-6)
    # an untaught labelled example (distill.teacher_sources) learns from its gold label alone, at any temperature
    taught = torch.tensor([1.0, 0.0, 1.0, 1.0])
    got = distillation_loss(logits, soft, labels, 2.0, 0.3, None, taught)
    assert torch.allclose(got, (0.3 * kl[0] + 0.7 * ce[0] + ce[1] + 0.3 * kl[2:].sum()) / 4, atol=1e-6)
    only_corpus = torch.full((4,), -100)
    assert torch.allclose(distillation_loss(logits, soft, only_corpus, 2.0, 0.3), 0.3 * kl.mean(), atol=1e-6)
    w = torch.tensor([1.0, 2.0, 3.0])  # class weights scale each labelled example by its class's weight
    weighted = distillation_loss(logits, soft, labels, 2.0, 0.3, w)
    assert torch.allclose(weighted, (0.3 * kl.sum() + 0.7 * (1.0 * ce[0] + 3.0 * ce[1])) / 4, atol=1e-6)
    # the student that copies the teacher has no soft loss left
    assert float(distillation_loss(teacher, soft, only_corpus, 2.0, 1.0)) == pytest.approx(0.0, abs=1e-6)


def test_soft_targets_average_the_teachers_at_the_temperature() -> None:
    a, b = np.array([[2.0, 0.0, -2.0]]), np.array([[0.0, 0.0, 4.0]])
    got = soft_targets([a, b], 2.0)
    expected = (torch.softmax(torch.tensor(a) / 2, -1) + torch.softmax(torch.tensor(b) / 2, -1)).numpy() / 2
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got.sum() == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------------ corpus


def test_the_corpus_draw_skips_short_duplicate_and_labelled_lines(tmp_path: Path) -> None:
    from finsent_cli.core.data.clean import text_hash

    path = tmp_path / "c.txt"
    path.write_text("one two three\nONE two, three!\nshort line\nvalid text here\nfour five six seven\n\n", encoding="utf-8")
    lines, counts = sample_corpus([path], 10, min_words=3, seed=0, exclude={text_hash("Valid text here.")})
    assert lines == ["one two three", "four five six seven"]
    assert counts == {"read": 5, "short": 1, "duplicate": 1, "excluded": 1, "kept": 2}
    many = tmp_path / "many.txt"
    many.write_text("\n".join(f"line number {i} here" for i in range(100)) + "\n", encoding="utf-8")
    first, _ = sample_corpus([many], 10, seed=3)
    assert first == sample_corpus([many], 10, seed=3)[0] and first != sample_corpus([many], 10, seed=4)[0]
    assert first == sorted(first, key=lambda t: int(t.split()[2]))  # in file order


# ------------------------------------------------------------------------------------------------ teacher


def test_teacher_logits_follow_finsent_order_whatever_the_folder_order(tmp_path: Path, tiny_bert: Path) -> None:
    """A teacher whose config lists positive first (FinBERT's order) gives its columns in finsent order."""
    from transformers import AutoModelForSequenceClassification

    folder = tmp_path / "reordered"
    shutil.copytree(tiny_bert, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["id2label"] = {"0": "positive", "1": "negative", "2": "neutral"}
    cfg["label2id"] = {"positive": 0, "negative": 1, "neutral": 2}
    (folder / "config.json").write_text(json.dumps(cfg))
    clf = load_teacher(folder, "teacher.models[0]")
    got = teacher_logits(folder, TEXTS, lambda: clf, tmp_path / "cache")
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    enc = clf.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        raw = model(**enc).logits.numpy()
    np.testing.assert_allclose(got, raw[:, [1, 2, 0]], atol=1e-5)


def test_labelling_is_cached_and_resumes_at_the_first_missing_chunk(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(teacher_mod, "CHUNK", 3)
    texts = [f"{w} {i}" for i, w in enumerate(CORPUS_WORDS)]  # 14 texts: 5 chunks
    clf = load_teacher(tiny_bert, "teacher.models[0]")
    whole = teacher_logits(tiny_bert, texts, lambda: clf, tmp_path / "whole")

    calls: list[int] = []
    real = clf.logits_from_ids

    def dies_after_two(ids, batch_size=32, task=None):
        calls.append(len(ids))
        if len(calls) > 2:
            raise KeyboardInterrupt
        return real(ids, batch_size, task)

    monkeypatch.setattr(clf, "logits_from_ids", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        teacher_logits(tiny_bert, texts, lambda: clf, tmp_path / "cache")
    calls.clear()
    monkeypatch.setattr(clf, "logits_from_ids", lambda ids, batch_size=32, task=None: (calls.append(len(ids)), real(ids, batch_size, task))[1])
    reporter = NullReporter()
    resumed = teacher_logits(tiny_bert, texts, lambda: clf, tmp_path / "cache", reporter=reporter)
    assert calls == [3, 3, 2]  # chunks 3, 4 and 5 only
    assert any("2 of 5 chunks done" in m for m in reporter.messages)
    np.testing.assert_allclose(resumed, whole, atol=1e-6)
    calls.clear()

    def never() -> None:
        raise AssertionError("a fully cached teacher is not loaded")

    again = teacher_logits(tiny_bert, texts, never, tmp_path / "cache", reporter=reporter)
    assert calls == [] and any("already labelled" in m for m in reporter.messages)
    np.testing.assert_array_equal(again, resumed)
    (folder,) = (tmp_path / "cache").iterdir()  # one entry: <teacher key>-<texts key>
    assert folder.name.count("-") == 1
    assert sorted(p.name for p in folder.iterdir()) == [f"chunk-{i:05d}.npy" for i in range(5)] + ["teacher.json"]
    # a fitted temperature does not change the logits, so it keeps the cache; other weights do not
    meta = json.loads((tiny_bert / "finsent.json").read_text()) if (tiny_bert / "finsent.json").exists() else {}
    copy = tmp_path / "copy"
    shutil.copytree(tiny_bert, copy)
    (copy / "finsent.json").write_text(json.dumps({**meta, "temperature": 1.7}))
    calibrated = tmp_path / "copy2"
    shutil.copytree(tiny_bert, calibrated)
    (calibrated / "finsent.json").write_text(json.dumps({**meta, "temperature": 0.9, "calibration": {"n": 3}}))
    assert model_fingerprint(copy) == model_fingerprint(calibrated)


def test_two_processes_split_the_chunks(tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank r labels chunks r, r + world, ...; after the barrier each reads all of them."""
    monkeypatch.setattr(teacher_mod, "CHUNK", 3)
    texts = [f"{w} {i}" for i, w in enumerate(CORPUS_WORDS)]
    clf = load_teacher(tiny_bert, "teacher.models[0]")
    done: list[int] = []
    real = clf.logits_from_ids
    monkeypatch.setattr(clf, "logits_from_ids", lambda ids, batch_size=32, task=None: (done.append(len(ids)), real(ids, batch_size, task))[1])
    with pytest.raises(FinsentError, match="a chunk of the teacher's labels is missing"):
        teacher_logits(tiny_bert, texts, lambda: clf, tmp_path / "c", rank=1, world=2)  # rank 0 never ran
    assert done == [3, 3]  # chunks 2 and 4
    both = teacher_logits(tiny_bert, texts, lambda: clf, tmp_path / "c", rank=0, world=2)
    assert done == [3, 3, 3, 3, 2]
    np.testing.assert_allclose(both, teacher_logits(tiny_bert, texts, lambda: clf, tmp_path / "single"), atol=1e-6)


# ------------------------------------------------------------------------------------------------ flow


def test_distill_trains_a_student_that_serves_and_records_its_teacher(tmp_path: Path, teacher_run: Path, tiny_bert: Path) -> None:
    cfg = load_recipe(_recipe(tmp_path, teacher_run, tiny_bert), DistillRecipe)
    reporter = NullReporter()
    result = run_distill(cfg, reporter)
    assert result.stop_reason == "complete"
    assert any(m.startswith("corpus: 100 lines drawn of 300") for m in reporter.messages)
    assert result.steps == 19  # (48 labelled + 100 corpus) / 8, rounded up
    assert set(result.final) == {"valid", "teacher:valid"}
    meta = json.loads((result.best_dir / "finsent.json").read_text())
    assert meta["distilled_from"] == ["teacher"] and meta["distill"] == {"temperature": 2.0, "alpha": 0.5, "corpus_lines": 100}
    clf = load_classifier(result.run_dir)
    assert clf.predict_proba(TEXTS).shape == (4, 3)
    events = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    teacher_final = next(e for e in events if e["event"] == "final" and e["split"] == "teacher:valid")
    assert 0.0 <= teacher_final["accuracy"] <= 1.0
    # a second student (another seed) reuses the teacher's labels
    again = run_distill(load_recipe(_recipe(tmp_path, teacher_run, tiny_bert), DistillRecipe, ["train.seed=5", f"output_dir={tmp_path / 's2'}"]), reporter)
    assert again.stop_reason == "complete" and any("already labelled" in m for m in reporter.messages)


def test_an_ensemble_averages_its_teachers(tmp_path: Path, teacher_run: Path, tiny_bert: Path) -> None:
    """Two different teachers teach the same in either order, and not what either teaches alone."""
    from safetensors.torch import load_file

    other = tmp_path / "other"
    shutil.copytree(teacher_run / "best", other)
    state = load_file(other / "model.safetensors")
    from safetensors.torch import save_file

    save_file({k: v * 1.5 if k.startswith("classifier") else v for k, v in state.items()}, other / "model.safetensors")
    recipe = _recipe(tmp_path, teacher_run, tiny_bert, lines=20)

    def student(name: str, teachers: str) -> dict[str, torch.Tensor]:
        out = run_distill(load_recipe(recipe, DistillRecipe, [f"output_dir={tmp_path / name}", f"teacher.models={teachers}"]))
        return load_file(out.best_dir / "model.safetensors")

    ab, ba = student("ab", f"[{teacher_run},{other}]"), student("ba", f"[{other},{teacher_run}]")
    a = student("a", f"[{teacher_run}]")
    assert all(torch.allclose(ab[k], ba[k], atol=1e-6) for k in ab)
    assert not all(torch.allclose(ab[k], a[k], atol=1e-6) for k in ab)


# ------------------------------------------------------------------------------------------------ bad input


def test_a_teacher_with_other_labels_is_one_error_line(tmp_path: Path, teacher_run: Path, tiny_bert: Path) -> None:
    folder = tmp_path / "bullish"
    shutil.copytree(teacher_run / "best", folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["id2label"] = {"0": "bearish", "1": "neutral", "2": "bullish"}
    (folder / "config.json").write_text(json.dumps(cfg))
    res = run_cli("distill", str(_recipe(tmp_path, teacher_run, tiny_bert, teacher=folder)), "-q")
    assert_one_line_error(res, "teacher.models[0]", "bearish, neutral, bullish", "the student learns negative, neutral, positive")
    assert not (tmp_path / "student").exists()


def test_a_target_conditioned_or_pretraining_teacher_is_refused(tmp_path: Path, teacher_run: Path, tiny_bert: Path) -> None:
    folder = tmp_path / "targets"
    shutil.copytree(teacher_run / "best", folder)
    meta = json.loads((folder / "finsent.json").read_text())
    (folder / "finsent.json").write_text(json.dumps({**meta, "targets": True}))
    res = run_cli("distill", str(_recipe(tmp_path, teacher_run, tiny_bert, teacher=folder)), "-q")
    assert_one_line_error(res, "teacher.models[0]", "target-conditioned", "cannot teach")
    (folder / "finsent.json").write_text(json.dumps({**meta, "task": "pretrain"}))
    res = run_cli("distill", str(_recipe(tmp_path, teacher_run, tiny_bert, teacher=folder)), "-q")
    assert_one_line_error(res, "teacher.models[0]", "'pretrain' model")
    (folder / "finsent.json").write_text(json.dumps(meta))
    (folder / "config.json").write_text("{not json")
    res = run_cli("distill", str(_recipe(tmp_path, teacher_run, tiny_bert, teacher=folder)), "-q")
    assert_one_line_error(res, "teacher.models[0]", "not a readable JSON config")


def test_recipe_errors(tmp_path: Path, teacher_run: Path, tiny_bert: Path) -> None:
    recipe = _recipe(tmp_path, teacher_run, tiny_bert)
    with pytest.raises(RecipeError) as err:
        load_recipe(recipe, DistillRecipe, ["data.target_column=target", "teacher.model=x", "distill.alpha=0"])
    text = "\n".join(err.value.problems)
    assert "teacher.model: unknown key (from a command-line override) (did you mean 'models'?)" in text
    assert "distill.alpha" in text
    with pytest.raises(RecipeError, match="data.target_column: distillation labels an unlabelled corpus"):
        load_recipe(recipe, DistillRecipe, ["data.target_column=target"])
    with pytest.raises(RecipeError, match="model.kind: a student learns class probabilities"):
        load_recipe(recipe, DistillRecipe, ["model={kind: t5, head: text2text, backbone: x}"])
    res = run_cli("distill", str(recipe), "corpus.paths=[/nonexistent/corpus]", "-q")
    assert_one_line_error(res, "corpus.paths", "path not found", code=2)


def test_a_corpus_without_usable_lines(tmp_path: Path, teacher_run: Path, tiny_bert: Path) -> None:
    recipe = _recipe(tmp_path, teacher_run, tiny_bert)
    (tmp_path / "short.txt").write_text("a b\nc\n", encoding="utf-8")
    with pytest.raises(FinsentError, match=r"corpus.paths: no usable line \(2 read, 2 shorter than 3 words"):
        run_distill(load_recipe(recipe, DistillRecipe, [f"corpus.paths=[{tmp_path / 'short.txt'}]"]))
    (tmp_path / "bad.txt").write_bytes(b"fine line here\n\xff\xfe broken\n")
    res = run_cli("distill", str(recipe), f"corpus.paths=[{tmp_path / 'bad.txt'}]", "-q")
    assert_one_line_error(res, "bad.txt: line 2 is not UTF-8")


def test_a_stopped_distillation_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path: Path, teacher_run: Path, tiny_bert: Path) -> None:
    from safetensors.torch import load_file

    recipe = _recipe(tmp_path, teacher_run, tiny_bert, lines=40, extra="sched: {name: constant, warmup_steps: 0}\n")  # max_steps moves no lr
    whole = run_distill(load_recipe(recipe, DistillRecipe, [f"output_dir={tmp_path / 'whole'}"]))
    run_distill(load_recipe(recipe, DistillRecipe, [f"output_dir={tmp_path / 'part'}", "train.max_steps=5", "train.save_every=5"]))
    resumed = run_distill(load_recipe(recipe, DistillRecipe, [f"output_dir={tmp_path / 'part'}"]))
    assert resumed.resumed_from is not None and resumed.steps == whole.steps == 11
    a, b = load_file(whole.last_dir / "model.safetensors"), load_file(resumed.last_dir / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(corpus.read_text() + "shares rose after the bank raised its dividend\n", encoding="utf-8")
    with pytest.raises(FinsentError, match=r"teacher.models / corpus: the data changed since the run started \(texts_sha256"):
        run_distill(load_recipe(recipe, DistillRecipe, [f"output_dir={tmp_path / 'part'}", "train.epochs=2"]))


def test_teacher_sources_limit_the_soft_targets_to_the_named_sources(
    tmp_path: Path, teacher_run: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Texts of a source the teacher does not label learn from their gold label alone (a one-hot soft target)."""
    import csv

    from finsent_cli.core.flows import distill as flow

    rows = list(csv.DictReader((teacher_run.parent / "data" / "train.csv").open(encoding="utf-8")))
    half = len(rows) // 2
    for name, part in (("news", rows[:half]), ("tweets", rows[half:])):
        with (tmp_path / f"{name}.csv").open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(part)
    recipe = _recipe(tmp_path, teacher_run, tiny_bert, lines=20)
    train = f"data.train=[{{path: {tmp_path / 'news.csv'}, name: news}}, {{path: {tmp_path / 'tweets.csv'}, name: tweets}}]"
    with pytest.raises(RecipeError, match=r"distill.teacher_sources: 'tweet' is not a training source; did you mean 'tweets'\?"):
        load_recipe(recipe, DistillRecipe, [train, "distill.teacher_sources=[tweet]"])

    labelled: list[str] = []
    real_logits, real_loss = flow.teacher_logits, flow.distillation_loss
    one_hot_rows: list[int] = []

    def spy_logits(folder: Path, texts: list[str], *args: object, **kwargs: object) -> np.ndarray:
        labelled.extend(texts)
        return real_logits(folder, texts, *args, **kwargs)

    def spy_loss(logits: torch.Tensor, soft: torch.Tensor, labels: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
        taught = args[-1]
        one_hot_rows.append(int((taught == 0).sum()))
        assert bool((labels[taught == 0] != -100).all())  # only labelled texts go untaught
        return real_loss(logits, soft, labels, *args)

    monkeypatch.setattr(flow, "teacher_logits", spy_logits)
    monkeypatch.setattr(flow, "distillation_loss", spy_loss)
    cfg = load_recipe(recipe, DistillRecipe, [train, "distill.teacher_sources=[news]", f"output_dir={tmp_path / 'ts'}"])
    out = run_distill(cfg)
    tweets = {r["text"] for r in rows[half:]}
    news = {r["text"] for r in rows[:half]}
    assert news <= set(labelled) and not (tweets - news) & set(labelled)  # the teacher never saw a tweet-only text
    assert sum(one_hot_rows) == len(rows) - half  # one epoch: every tweet once, with its gold label as the target
    assert json.loads((out.run_dir / "best" / "finsent.json").read_text())["distill"]["teacher_sources"] == ["news"]
