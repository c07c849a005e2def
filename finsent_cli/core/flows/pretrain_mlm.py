"""`finsent pretrain` with ``objective: mlm``: domain-adaptive masked-language-model pretraining of an encoder.

After Devlin et al. 2019 (BERT's masked LM, with whole-word masking as in its later release), Gururangan
et al. 2020 ("Don't Stop Pretraining": further pretraining on in-domain text) and Araci 2019 (FinBERT:
BERT further pretrained on Reuters financial news before fine-tuning): the encoder (``minilm``, ``mpnet``,
any Hugging Face masked-LM checkpoint) keeps training as a masked language model on the corpus, one line
an example, and its ``best/`` folder is then a ``model.backbone`` for `finsent finetune`.

Setup (tokenizer, corpus lines, held-out batches with fixed masks, model) -> resume or start -> the loop of
``core.training.loop`` (resume after ``kill -9``, Ctrl-C, several processes, bf16), evaluating the held-out
masked-LM loss and accuracy -> ``best/`` and ``last/``: Hugging Face masked-LM folders with the tokenizer.
Masks are transformers' ``DataCollatorForLanguageModeling``; training masks draw from torch's global
generator, which the loop checkpoints, so a resumed run masks as an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from finsent_cli.config.loader import recipe_to_yaml, upgraded_recipe, write_resolved_recipe
from finsent_cli.config.pretrain import MlmPretrainModel, PretrainRecipe
from finsent_cli.core.data.corpus import corpus_files, corpus_lines
from finsent_cli.core.flows.pretrain import PretrainResult, train_and_report
from finsent_cli.core.io import atomic_write_json
from finsent_cli.core.models.hub import resolve_model_path
from finsent_cli.core.models.registry import quiet_transformers
from finsent_cli.core.progress import NullReporter, Reporter
from finsent_cli.core.runs import DATA_FILE, META_FILE, check_resumable, check_run_dir, check_same_data, prepare_run_dir
from finsent_cli.core.training.checkpoint import latest_checkpoint
from finsent_cli.core.training.loop import TrainJob, make_accelerator
from finsent_cli.errors import FinsentError


class MaskedLines:
    """Collate for the loop: lines -> a padded batch with masked ``input_ids`` and ``labels`` (-100 where a
    token is not predicted). Lines are tokenised here, a batch at a time, so no token file is needed."""

    def __init__(self, tokenizer: Any, max_length: int, probability: float, whole_word: bool, seed: int | None = None) -> None:
        from transformers import DataCollatorForLanguageModeling

        self.tokenizer, self.max_length = tokenizer, max_length
        # Whole-word masking in transformers replaces every chosen token by [MASK] (no random 10%): say so.
        replace = {"mask_replace_prob": 1.0, "random_replace_prob": 0.0} if whole_word else {}
        self.collator = DataCollatorForLanguageModeling(
            tokenizer, mlm=True, mlm_probability=probability, whole_word_mask=whole_word, seed=seed, **replace
        )  # fmt: skip

    def __call__(self, lines: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(
            list(lines), truncation=True, max_length=self.max_length, padding=True,
            return_offsets_mapping=True, return_special_tokens_mask=True,
        )  # fmt: skip
        batch = self.collator([{k: enc[k][i] for k in enc} for i in range(len(lines))])
        return {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}  # (B, T) each


def _head(model: torch.nn.Module) -> torch.nn.Module | None:
    """The masked-LM head (``cls`` of BERT, ``lm_head`` of MPNet / RoBERTa) when it is one module beside the
    encoder; None for models laid out otherwise (they take the reference path)."""
    prefix = getattr(model, "base_model_prefix", "")
    others = [m for name, m in model.named_children() if name != prefix]
    return others[0] if len(others) == 1 and hasattr(model, prefix) else None


def _masked_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits (M, V), labels (M,))`` of the M masked positions of a batch.

    The fast path runs the head on the masked positions only (about 15% of them): the vocabulary
    projection, the largest matmul of a small encoder, shrinks as much. Models without a separate head, and a
    model wrapped for several processes (whose forward must run for the gradients to be synchronised), take
    the reference path: the whole forward, then the masked rows.
    """
    labels = batch["labels"]
    chosen = labels != -100  # (B, T)
    head = _head(model)
    if head is None:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (B, T, V)
        return logits[chosen], labels[chosen]
    hidden = getattr(model, model.base_model_prefix)(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]  # (B, T, H)
    return head(hidden[chosen]), labels[chosen]  # (M, V), (M,)


def mlm_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy over the masked tokens; ``model(..., labels=...).loss`` of transformers, computed on
    the masked positions only (:func:`_masked_logits`). A batch with nothing masked (a few one-word lines
    can draw no mask) gives a zero loss that still reaches every parameter, not a NaN."""
    logits, labels = _masked_logits(model, batch)
    if labels.numel() == 0:
        return logits.sum() * 0.0
    return torch.nn.functional.cross_entropy(logits.float(), labels)


@torch.no_grad()
def heldout_mlm_metrics(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]], device: Any) -> dict[str, float]:
    """Masked-LM loss and accuracy over the masked tokens of fixed held-out batches (every token weighs the same)."""
    was_training = model.training
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    for batch in batches:
        logits, labels = _masked_logits(model, {k: v.to(device) for k, v in batch.items()})
        if labels.numel() == 0:
            continue
        loss_sum += float(torch.nn.functional.cross_entropy(logits.float(), labels, reduction="sum"))
        correct += int((logits.argmax(-1) == labels).sum())
        count += int(labels.numel())
    model.train(was_training)
    return {"heldout_loss": loss_sum / max(count, 1), "heldout_accuracy": correct / max(count, 1)}


def _model(cfg: MlmPretrainModel, backbone: str, resume: Path | None) -> torch.nn.Module:
    """The encoder with a masked-LM head, from the backbone or the checkpoint being resumed.

    Raises:
        FinsentError: naming ``model.backbone``: no masked-LM model can be built from it.
    """
    from transformers import AutoModelForMaskedLM

    quiet_transformers()
    source = str(resume) if resume is not None else backbone
    try:
        return AutoModelForMaskedLM.from_pretrained(source).train()
    except (OSError, ValueError, KeyError) as exc:
        raise FinsentError(f"model.backbone: cannot build a masked language model from '{cfg.backbone}': {str(exc).splitlines()[0][:200]}") from None


def _lines(files: list[Path]) -> list[str]:
    return [line for path in files for line in corpus_lines(path)]


def run_mlm(
    cfg: PretrainRecipe, reporter: Reporter | None = None, *, fresh: bool = False,
    on_evaluate: Callable[[int, dict[str, float]], None] | None = None,
) -> PretrainResult:  # fmt: skip
    """Masked-LM pretraining per ``cfg`` (``objective: mlm``); resume from the newest checkpoint unless ``fresh``.

    Raises:
        FinsentError: a backbone without a fast tokenizer or masked-LM head, a bad corpus, a non-run output
            folder, or a recipe or corpus that changed since the run started.
        KeyboardInterrupt: Ctrl-C, after the step in progress was saved as a checkpoint.
    """
    from accelerate.utils import set_seed
    from transformers import AutoTokenizer

    assert isinstance(cfg.model, MlmPretrainModel)
    reporter = reporter or NullReporter()
    run_dir = Path(cfg.output_dir)
    check_run_dir(run_dir)
    try:
        backbone = resolve_model_path(cfg.model.backbone)
        tokenizer = AutoTokenizer.from_pretrained(backbone)
    except FinsentError as exc:
        raise FinsentError(f"model.backbone: {exc.message}") from None
    except (OSError, ValueError) as exc:
        raise FinsentError(f"model.backbone: cannot load a tokenizer from '{cfg.model.backbone}': {str(exc).splitlines()[0][:200]}") from None
    if tokenizer.mask_token_id is None:
        raise FinsentError(f"model.backbone: {cfg.model.backbone} has no mask token; masked language modelling needs one")
    if cfg.data.whole_word_mask and not tokenizer.is_fast:
        raise FinsentError(f"model.backbone: whole-word masking needs a fast tokenizer (word offsets), and {cfg.model.backbone} has none; set data.whole_word_mask=false")
    train_files, held_files = corpus_files(cfg.data.corpus)
    held_files = [Path(p) for p in cfg.data.heldout] + held_files
    for path in cfg.data.heldout:
        if not Path(path).is_file():
            raise FinsentError(f"data.heldout: {path} is not a file")

    accelerator = make_accelerator(cfg.train, run_dir)
    main = accelerator.is_main_process
    reporter = reporter if main else NullReporter()  # one process speaks
    resume = None if fresh else latest_checkpoint(run_dir)
    if resume is not None:
        check_resumable(run_dir, recipe_to_yaml(cfg), upgrade=partial(upgraded_recipe, schema=PretrainRecipe))
    lines = _lines(train_files)
    held = _lines(held_files)[: cfg.data.heldout_blocks]
    if not held:
        n_held = min(cfg.data.heldout_blocks, len(lines) // 10)
        if n_held == 0:
            raise FinsentError(f"data.corpus: {len(lines)} lines are too few to hold any out; give data.heldout")
        reporter.log(f"no held-out file: the last {n_held} lines of the corpus are held out")
        lines, held = lines[:-n_held], lines[-n_held:]
    if not lines:
        raise FinsentError(f"data.corpus: no text in {', '.join(map(str, train_files))}")

    set_seed(cfg.train.seed)
    model = _model(cfg.model, backbone, resume)
    if accelerator.num_processes > 1:  # the masks draw from this generator: each process its own (a resume restores them)
        torch.manual_seed(cfg.train.seed + 1000 * accelerator.process_index)
    moved = prepare_run_dir(run_dir, fresh) if main else None
    if moved is not None:
        reporter.log(f"--fresh: moved the previous run to {moved}")
    accelerator.wait_for_everyone()

    collate = MaskedLines(tokenizer, cfg.model.max_length, cfg.data.mlm_probability, cfg.data.whole_word_mask)
    fixed = MaskedLines(tokenizer, cfg.model.max_length, cfg.data.mlm_probability, cfg.data.whole_word_mask, seed=cfg.train.seed)
    eval_size = cfg.train.eval_batch_size or cfg.train.batch_size
    heldout_batches = [fixed(held[i : i + eval_size]) for i in range(0, len(held), eval_size)]  # the same masks at every evaluation
    digest = hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()
    held_digest = hashlib.sha256("\n".join(held).encode("utf-8")).hexdigest()
    n_params = sum(p.numel() for p in model.parameters())
    summary = {
        "train_lines": len(lines), "heldout_lines": len(held), "corpus_sha256": digest, "heldout_sha256": held_digest,
        "parameters": n_params,
    }  # fmt: skip
    reporter.log(
        f"{cfg.model.backbone} ({n_params / 1e6:.1f}M parameters with its masked-LM head): {len(lines):,} training lines "
        f"of at most {cfg.model.max_length} tokens, {len(held):,} held-out lines; masking {cfg.data.mlm_probability:.0%}"
        + (" by whole words" if cfg.data.whole_word_mask else "")
    )
    if resume is not None:
        check_same_data(run_dir, summary, ("train_lines", "heldout_lines", "corpus_sha256", "heldout_sha256"))
    if main and resume is None:
        write_resolved_recipe(cfg, run_dir)
        atomic_write_json(run_dir / DATA_FILE, summary)
    meta = {
        "task": "pretrain", "kind": "hf_encoder", "objective": "mlm", "base_model": cfg.model.backbone,
        "max_length": cfg.model.max_length, "run": run_dir.name,
    }  # fmt: skip

    def save_model(m: torch.nn.Module, folder: Path) -> None:
        m.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        atomic_write_json(folder / META_FILE, meta)

    job = TrainJob(
        model=model, train_set=lines, collate=collate, loss_fn=mlm_loss, save_model=save_model,
        evaluate=lambda m: heldout_mlm_metrics(m, heldout_batches, accelerator.device),
        lengths=[len(line.split()) for line in lines],  # words: a token count without tokenising everything first
        on_evaluate=on_evaluate,
    )  # fmt: skip
    return train_and_report(
        cfg, job, accelerator, resume=resume, moved=moved, reporter=reporter, tokens_per_step=0,
        next_command=f"finsent finetune recipes/finetune_phrasebank.yaml model.backbone={run_dir}",
    )  # fmt: skip
