"""Schema of `finsent distill` recipes: a fine-tuning recipe (the student, its labelled data and the loop)
plus a ``teacher`` (one or several model folders), an unlabelled ``corpus`` for the teacher to label, and
the ``distill`` loss settings (after Hinton et al. 2015, "Distilling the Knowledge in a Neural Network")."""

from __future__ import annotations

import difflib
from pathlib import Path

from pydantic import Field, model_validator

from finsent_cli.config.base import InputPath, ModelPath, Schema
from finsent_cli.config.finetune import FinetuneRecipe


class TeacherCfg(Schema):
    """The teacher: model, run or adapter folders (``finsent finetune`` output, or any three-label Hugging
    Face classifier) or built-in models' names (``news``). Several folders make an ensemble whose
    probabilities (at ``distill.temperature``) are averaged. Its logits for every text are cached under
    ``cache_dir`` (default: finsent's cache folder), keyed by the teacher's files and the texts, so a second
    student run, or a resumed one, labels nothing again."""

    models: list[ModelPath] = Field(min_length=1)
    batch_size: int = Field(64, ge=1)
    device: str = "auto"
    cache_dir: Path | None = None


class CorpusCfg(Schema):
    """Unlabelled text for the teacher to label: a folder written by ``finsent prep`` with a ``corpus``
    section (its ``train.txt``) or ``.txt`` / ``.txt.gz`` files, one text a line. ``lines`` of them are drawn
    at random with ``seed`` after removing duplicates, lines of fewer than ``min_words`` words and any text
    of the labelled splits (so validation and test stay unseen)."""

    paths: list[InputPath] = Field(min_length=1)
    lines: int = Field(20000, ge=1)
    min_words: int = Field(3, ge=1)
    seed: int = Field(13, ge=0)


class DistillLossCfg(Schema):
    """``alpha`` weighs the teacher's soft targets (KL divergence at ``temperature``, scaled by temperature²
    so its gradients keep their size) against the labelled examples' cross-entropy (weight ``1 - alpha``).
    Corpus texts carry only the soft target; labelled training texts carry both."""

    temperature: float = Field(2.0, gt=0.0, le=100.0)
    alpha: float = Field(0.5, gt=0.0, le=1.0)
    teacher_sources: list[str] | None = None
    """Names of the labelled training sources (``data.train[].name``) whose texts also carry the teacher's
    soft targets; the others learn from their gold labels alone (full weight, at any temperature). Default:
    every source. A teacher trained on one source (news prose) knows little about another (tweets): its soft
    targets there would pull the student away from the gold labels."""


class DistillRecipe(FinetuneRecipe):
    """A `finsent distill` recipe: the ``model``, ``data``, ``optim``, ``sched`` and ``train`` sections of
    `finsent finetune` (they describe the student), and ``teacher``, ``corpus``, ``distill``."""

    teacher: TeacherCfg
    corpus: CorpusCfg
    distill: DistillLossCfg = Field(default_factory=DistillLossCfg)

    @model_validator(mode="after")
    def _sentence_level(self) -> DistillRecipe:
        if self.model.kind == "t5_text2text":
            raise ValueError("model.kind: a student learns class probabilities; use hf_encoder or t5_cls (kind t5, head classification), not t5_text2text")
        if self.data.target_column or any(s.target_column for split in ("train", "valid", "test") for s in self.data.sources(split)):
            raise ValueError(
                "data.target_column: distillation labels an unlabelled corpus, which names no targets; "
                "distil a sentence-level model (remove data.target_column)"
            )
        if self.distill.teacher_sources is not None:
            names = [s.label for s in self.data.sources("train")]
            for name in self.distill.teacher_sources:
                if not names:  # a prepared data.dir: one training split, no sources to name
                    raise ValueError(
                        "distill.teacher_sources: the training data is a prepared data.dir, which has no named sources; "
                        "give data.train as a list of sources ({path: FILE, name: NAME}) or drop distill.teacher_sources"
                    )
                if name not in names:
                    close = difflib.get_close_matches(name, names, n=1)
                    hint = f"; did you mean '{close[0]}'?" if close else ""
                    raise ValueError(f"distill.teacher_sources: '{name}' is not a training source{hint} (sources: {', '.join(names)})")
        if self.augment is not None:
            raise ValueError("augment: a student learns from the teacher's probabilities of the corpus, which augmentation does not add to; drop the augment section")
        return self
