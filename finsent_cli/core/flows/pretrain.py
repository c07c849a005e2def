"""`finsent pretrain`: T5 span-corruption pretraining on unlabelled financial news.

After Raffel et al. 2020 (T5, arXiv 1910.10683, section 3.1.4) and nanoT5 (Nawrot 2023, arXiv
2309.02373): packed blocks of the tokenised corpus, corrupted on the fly so that every encoder input
is exactly ``max_seq_len`` tokens (no padding anywhere), Adafactor + inverse square root (T5) or
AdamW + cosine (nanoT5), through the same loop as fine-tuning (``core.training.loop``): resume after
``kill -9``, Ctrl-C, several processes, bf16, ``torch.compile``.

Setup (tokenizer, token files, blocks, model) -> resume or start -> the loop, evaluating the held-out
span-corruption loss -> ``best/`` and ``last/``: T5 folders with the tokenizer, which
``transformers.T5ForConditionalGeneration`` and ``AutoTokenizer`` load, and which ``finsent finetune``
takes as ``model.backbone``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finsent_cli.config.loader import recipe_to_yaml, upgraded_recipe, write_resolved_recipe
from finsent_cli.config.pretrain import PretrainRecipe
from finsent_cli.core.data.corpus import corpus_files
from finsent_cli.core.data.packing import PackedBlocks, token_file, tokenizer_hash
from finsent_cli.core.data.spans import SpanCorruption, block_lengths, sentinel_ids, span_count
from finsent_cli.core.io import atomic_write_json, cache_dir
from finsent_cli.core.models.t5 import FinT5ForConditionalGeneration, T5LoadError, load_t5, save_t5, t5_config
from finsent_cli.core.models.t5.backbone import t5_tokenizer
from finsent_cli.core.progress import NullReporter, Reporter
from finsent_cli.core.runs import (
    DATA_FILE,
    META_FILE,
    check_resumable,
    check_run_dir,
    check_same_data,
    prepare_run_dir,
    read_meta,
)
from finsent_cli.core.training.checkpoint import latest_checkpoint
from finsent_cli.core.training.loop import TrainJob, cpu_has_native_bf16, make_accelerator, train
from finsent_cli.errors import FinsentError

VOCAB_MULTIPLE = 128  # the embedding is padded to a multiple of 128 rows: faster matmuls, as in T5's 32128


@dataclasses.dataclass
class PretrainResult:
    """What a pretraining run produced."""

    run_dir: Path
    best_dir: Path
    last_dir: Path
    steps: int
    best_step: int | None
    best_heldout_loss: float | None
    stop_reason: str | None
    seconds: float
    tokens_per_step: int
    resumed_from: Path | None
    moved_aside: Path | None
    main: bool  # the main process (the one that reports)
    next_command: str = ""  # what to run with the result
    best_metric: float | None = None  # train.metric at best_step (what finsent tune scores a trial by)


class SpanBatches:
    """Collate for the loop: blocks -> ``input_ids`` (B, max_seq_len) and ``labels`` (B, target length),
    corrupted with the mask of ``(seed, epoch, block index)``; :meth:`set_epoch` is the loop's hook."""

    def __init__(self, corruption: SpanCorruption) -> None:
        self.corruption, self.epoch = corruption, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __call__(self, items: list[tuple[int, np.ndarray]]) -> dict[str, torch.Tensor]:
        pairs = [self.corruption(np.asarray(block, dtype=np.int64), self.epoch, i) for i, block in items]
        inputs = torch.from_numpy(np.stack([p[0] for p in pairs]))  # (B, max_seq_len)
        labels = torch.from_numpy(np.stack([p[1] for p in pairs]))  # (B, target length)
        return {"input_ids": inputs, "labels": labels}


def span_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean token cross-entropy of the targets (no attention mask: packed blocks hold no padding)."""
    return model(input_ids=batch["input_ids"], labels=batch["labels"]).loss


COLLAPSE_COSINE = 0.99
"""``heldout_cosine`` above this: the encoder output barely depends on the input (``recipes/t5_tiny.yaml``
logs 0.82 at step 300 and about 0.3 from step 2,100; the collapsed runs of docs/benchmarks.md "T5
pretraining that pays" reached 0.995-1.0 on headlines)."""


def mean_pairwise_cosine(x: torch.Tensor) -> float:
    """Mean cosine similarity over all pairs of rows of ``x`` (N, D), N >= 2, the diagonal left out."""
    z = torch.nn.functional.normalize(x.float(), dim=-1)
    n = z.shape[0]
    return float(((z @ z.T).sum() - n) / (n * (n - 1)))


@torch.no_grad()
def heldout_metrics(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]], device: Any) -> dict[str, float]:
    """Span-corruption loss and token accuracy on fixed held-out batches (every target token weighs the same),
    and ``heldout_cosine``: the mean pairwise cosine of the mean-pooled encoder outputs of the held-out
    blocks, which says whether the encoder still tells its inputs apart (see :data:`COLLAPSE_COSINE`)."""
    was_training = model.training
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    pooled = []
    for batch in batches:
        labels = batch["labels"].to(device)
        out = model(input_ids=batch["input_ids"].to(device), labels=labels)
        n = int(labels.numel())
        loss_sum += float(out.loss) * n
        correct += int((out.logits.argmax(-1) == labels).sum())
        count += n
        pooled.append(out.encoder_hidden_states.mean(dim=1))  # (B, d_model): packed blocks hold no padding
    model.train(was_training)
    metrics = {"heldout_loss": loss_sum / count, "heldout_accuracy": correct / count}
    rows = torch.cat(pooled)
    if rows.shape[0] >= 2:
        metrics["heldout_cosine"] = mean_pairwise_cosine(rows)
    return metrics


def _sources(cfg: PretrainRecipe) -> tuple[list[Path], list[Path], Path]:
    """``(training files, held-out files, cache folder)`` of the recipe's ``data`` section.

    Raises:
        FinsentError: a folder that is not a prepared corpus, or a file that is not ``.txt`` / ``.txt.gz``.
    """
    train, heldout = corpus_files(cfg.data.corpus)
    heldout = list(cfg.data.heldout) + heldout
    cache = cfg.data.cache_dir
    for folder in (Path(p) for p in cfg.data.corpus if Path(p).is_dir()):
        cache = cache or (folder / "tokens" if os.access(folder, os.W_OK) else _cache_root())
    for path in heldout:
        if not Path(path).is_file():
            raise FinsentError(f"data.heldout: {path} is not a file")
    if cache is None:
        beside = train[0].parent
        cache = beside if os.access(beside, os.W_OK) else _cache_root()
    return train, heldout, Path(cache)


def _tokenizer(path: Path) -> tuple[Any, str]:
    """The recipe's tokenizer and its hash (what names the token files and is checked on resume)."""
    try:
        key = tokenizer_hash(path)
    except FinsentError as exc:
        raise FinsentError(f"data.tokenizer: {exc.message}; train one with finsent tokenizer recipes/tokenizer.yaml") from None
    return t5_tokenizer(path, "data.tokenizer"), key


def _cache_root() -> Path:
    """Token files of corpora whose own folder is read-only: the user's cache, never the run folder
    (a run folder must hold only what ``--fresh`` may move aside)."""
    return cache_dir() / "tokens"


def _model(cfg: PretrainRecipe, tokenizer: Any, resume: Path | None) -> FinT5ForConditionalGeneration:
    """A fresh T5 of the recipe's size for this tokenizer, or the checkpoint's weights when resuming.

    Raises:
        FinsentError: the checkpoint does not load, or its vocabulary is smaller than the tokenizer's.
    """
    if resume is None:
        vocab = math.ceil(len(tokenizer) / VOCAB_MULTIPLE) * VOCAB_MULTIPLE
        t5 = t5_config(
            cfg.model.size, variant=cfg.model.variant, vocab_size=vocab, dropout_rate=cfg.model.dropout,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.pad_token_id,
        )  # fmt: skip
        return FinT5ForConditionalGeneration(t5).train()
    try:
        model = load_t5(resume)
    except T5LoadError as exc:
        raise FinsentError(f"{resume}: cannot resume: {exc}") from None
    if model.config.vocab_size < len(tokenizer):
        raise FinsentError(
            f"data.tokenizer: {len(tokenizer):,} tokens, but the model in {resume} has a vocabulary of {model.config.vocab_size:,}"
        )
    return model.train()


SPAN_DATA_KEYS = ("train_blocks", "heldout_blocks", "raw_block_length", "target_length", "tokenizer_sha256")


OBJECTIVES = {
    "span_corruption": "finsent_cli.core.flows.pretrain:run_span_corruption",
    "mlm": "finsent_cli.core.flows.pretrain_mlm:run_mlm",
}
"""The one place a pretraining objective plugs in: its name (``cfg.resolved_objective``) -> the flow."""


def run_pretrain(
    cfg: PretrainRecipe, reporter: Reporter | None = None, *, fresh: bool = False,
    on_evaluate: Callable[[int, dict[str, float]], None] | None = None,
) -> PretrainResult:  # fmt: skip
    """Pretrain per ``cfg`` with its objective (:data:`OBJECTIVES`); resume unless ``fresh``. ``on_evaluate``
    is called after each held-out evaluation (see ``TrainJob.on_evaluate``; ``finsent tune`` prunes there).

    Raises:
        FinsentError: as the objective's flow.
        KeyboardInterrupt: Ctrl-C, after the step in progress was saved as a checkpoint.
    """
    import importlib

    module, _, name = OBJECTIVES[cfg.resolved_objective].partition(":")
    return getattr(importlib.import_module(module), name)(cfg, reporter, fresh=fresh, on_evaluate=on_evaluate)


def run_span_corruption(
    cfg: PretrainRecipe, reporter: Reporter | None = None, *, fresh: bool = False,
    on_evaluate: Callable[[int, dict[str, float]], None] | None = None,
) -> PretrainResult:  # fmt: skip
    """T5 span-corruption pretraining per ``cfg``; resume from the newest checkpoint in ``cfg.output_dir`` unless ``fresh``.

    Args:
        cfg: the validated recipe.
        reporter: progress and log lines.
        fresh: start over; an existing run folder is moved aside (never deleted).

    Returns:
        Folders, counters and the best held-out loss.

    Raises:
        FinsentError: a bad corpus or tokenizer, span settings that cannot work, a non-run output folder,
            or a recipe that changed since the run in ``output_dir`` started.
        KeyboardInterrupt: Ctrl-C, after the step in progress was saved as a checkpoint.
    """
    from accelerate.utils import set_seed

    reporter = reporter or NullReporter()
    run_dir = Path(cfg.output_dir)
    check_run_dir(run_dir)
    raw_len, target_len = block_lengths(cfg.model.max_seq_len, cfg.data.noise_density, cfg.data.mean_noise_span_length)
    tokenizer, key = _tokenizer(Path(cfg.data.tokenizer))
    try:
        sentinels = sentinel_ids(
            tokenizer, span_count(raw_len, cfg.data.noise_density, cfg.data.mean_noise_span_length)
        )
    except FinsentError as exc:
        raise FinsentError(f"data.tokenizer: {cfg.data.tokenizer}: {exc.message}") from None
    train_files, heldout_files, cache = _sources(cfg)

    accelerator = make_accelerator(cfg.train, run_dir)
    main = accelerator.is_main_process
    reporter = reporter if main else NullReporter()  # one process speaks
    resume = None if fresh else latest_checkpoint(run_dir)
    if resume is not None:  # refuse a changed recipe or tokenizer before tokenising anything
        check_resumable(run_dir, recipe_to_yaml(cfg), upgrade=partial(upgraded_recipe, schema=PretrainRecipe))
        if read_meta(resume).get("tokenizer_sha256") not in (None, key):
            raise FinsentError(
                f"data.tokenizer: {cfg.data.tokenizer} changed since the run started (its vocabulary no longer "
                "matches the model); restore it or pass --fresh"
            )
    if accelerator.mixed_precision == "bf16" and accelerator.device.type == "cpu" and not cpu_has_native_bf16():
        reporter.warn(
            "train.mixed_precision: bf16 on a CPU without avx512_bf16/AMX is emulated and usually slower than fp32"
        )
    # Tokenise once (main process first; the others then read the cached files).
    with accelerator.main_process_first():
        streams = [token_file(f, tokenizer, key, cache, reporter=reporter) for f in train_files]
        held = [token_file(f, tokenizer, key, cache, reporter=reporter) for f in heldout_files]
    blocks = PackedBlocks(streams, raw_len, [str(f) for f in train_files])
    if held:
        heldout = PackedBlocks(held, raw_len, [f"data.heldout: {f}" for f in heldout_files])
        train_set: Any = blocks
        held_items = [heldout[i] for i in range(min(len(heldout), cfg.data.heldout_blocks))]
    else:
        n_held = min(cfg.data.heldout_blocks, len(blocks) // 10)
        if n_held == 0:
            raise FinsentError(f"data.corpus: {len(blocks)} blocks are too few to hold any out; give data.heldout")
        reporter.log(f"no held-out file: the last {n_held} blocks of the corpus are held out")
        train_set = torch.utils.data.Subset(blocks, range(len(blocks) - n_held))
        held_items = [blocks[i] for i in range(len(blocks) - n_held, len(blocks))]

    set_seed(cfg.train.seed)
    model = _model(cfg, tokenizer, resume)
    moved = prepare_run_dir(run_dir, fresh) if main else None
    if moved is not None:
        reporter.log(f"--fresh: moved the previous run to {moved}")
    accelerator.wait_for_everyone()

    corruption = SpanCorruption(
        cfg.model.max_seq_len, sentinels, tokenizer.eos_token_id, cfg.data.noise_density, cfg.data.mean_noise_span_length,
        cfg.train.seed,
    )  # fmt: skip
    collate = SpanBatches(corruption)
    eval_size = cfg.train.eval_batch_size or cfg.train.batch_size
    heldout_batches = [
        collate(held_items[i : i + eval_size]) for i in range(0, len(held_items), eval_size)
    ]  # epoch 0: fixed
    tokens_per_step = (
        (cfg.model.max_seq_len + target_len) * cfg.train.batch_size * cfg.train.grad_accum * accelerator.num_processes
    )
    n_params = sum(p.numel() for p in model.parameters())
    summary = {
        "train_blocks": len(train_set), "heldout_blocks": len(held_items), "raw_block_length": raw_len,
        "input_length": cfg.model.max_seq_len, "target_length": target_len, "train_tokens": len(train_set) * raw_len,
        "tokens_per_step": tokens_per_step, "parameters": n_params, "tokenizer_sha256": key,
    }  # fmt: skip
    reporter.log(
        f"{cfg.model.size} ({n_params / 1e6:.1f}M parameters), {len(train_set):,} training blocks of {raw_len} tokens "
        f"-> inputs {cfg.model.max_seq_len} + targets {target_len}; {len(held_items)} held-out blocks"
    )
    meta = {
        "task": "pretrain", "model": "t5", "size": cfg.model.size, "max_seq_len": cfg.model.max_seq_len,
        "noise_density": cfg.data.noise_density, "mean_noise_span_length": cfg.data.mean_noise_span_length,
        "tokenizer_sha256": key, "run": run_dir.name,
    }  # fmt: skip
    if resume is not None:
        check_same_data(run_dir, summary, SPAN_DATA_KEYS)
    if main and resume is None:
        write_resolved_recipe(cfg, run_dir)
        atomic_write_json(run_dir / DATA_FILE, summary)

    def save_model(m: torch.nn.Module, folder: Path) -> None:
        save_t5(m, folder)  # type: ignore[arg-type]
        tokenizer.save_pretrained(folder)
        atomic_write_json(folder / META_FILE, meta)

    warned = False

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        nonlocal warned
        metrics = heldout_metrics(m, heldout_batches, accelerator.device)
        if metrics.get("heldout_cosine", 0.0) > COLLAPSE_COSINE and not warned:
            warned = True
            fix = "lower optim.lr" if cfg.optim.scale_by_rms else "set optim.scale_by_rms: true"
            reporter.warn(
                f"the encoder output barely depends on the input (held-out cosine {metrics['heldout_cosine']:.3f}): "
                f"the learning rate is too large for T5's small weights; {fix} (docs/benchmarks.md, 'T5 pretraining that pays')"
            )
        return metrics

    job = TrainJob(
        model=model, train_set=train_set, collate=collate, loss_fn=span_loss, save_model=save_model,
        evaluate=evaluate, set_epoch=collate.set_epoch, on_evaluate=on_evaluate,
    )  # fmt: skip
    return train_and_report(
        cfg, job, accelerator, resume=resume, moved=moved, reporter=reporter, tokens_per_step=tokens_per_step,
        next_command=f"finsent finetune recipes/finetune_t5_cls.yaml model.backbone={run_dir}",
    )  # fmt: skip


def train_and_report(
    cfg: PretrainRecipe, job: TrainJob, accelerator: Any, *, resume: Path | None, moved: Path | None,
    reporter: Reporter, tokens_per_step: int, next_command: str,
) -> PretrainResult:  # fmt: skip
    """The loop on the held-out metric of ``cfg``, the process group ended, and what the run produced."""
    run_dir = Path(cfg.output_dir)
    result = train(
        job, cfg.train, cfg.optim, cfg.sched, run_dir, accelerator,
        metric=cfg.train.metric, metric_mode=cfg.metric_mode, resume_from=resume, reporter=reporter,
    )  # fmt: skip
    accelerator.wait_for_everyone()
    accelerator.end_training()
    best = result.state.best_metric if cfg.train.metric == "heldout_loss" else None
    return PretrainResult(
        best_metric=result.state.best_metric,
        run_dir=run_dir, best_dir=result.best_dir, last_dir=result.last_dir, steps=result.state.step,
        best_step=result.state.best_step, best_heldout_loss=best, stop_reason=result.state.stop_reason,
        seconds=result.seconds, tokens_per_step=tokens_per_step, resumed_from=resume, moved_aside=moved,
        main=accelerator.is_main_process, next_command=next_command,
    )  # fmt: skip
