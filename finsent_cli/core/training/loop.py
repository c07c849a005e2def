"""One training loop for every finsent recipe (fine-tuning now; pretraining and QLoRA reuse it).

Built on ``accelerate`` (device placement, mixed precision, DDP under ``accelerate launch`` or
``torchrun``). It knows nothing about classification: the caller passes the model, a loss callable,
the tokenised training set, a collate function, an evaluation callback and how to write a model
folder. Gradient accumulation is done by hand (``no_sync`` on all but the last micro-batch) so a
checkpoint always falls on an optimizer-step boundary and the data position is exact.

After nanoGPT's train.py and torchtune's recipes: setup -> (resume) -> train -> save.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from finsent_cli.config.finetune import OptimCfg, SchedCfg, TrainCfg
from finsent_cli.core.io import atomic_write_text
from finsent_cli.core.progress import NullReporter, Reporter
from finsent_cli.core.training import checkpoint as ckpt
from finsent_cli.core.training.data import ResumableBatches
from finsent_cli.core.training.schedules import build_scheduler, warmup_steps_for
from finsent_cli.core.training.state import (
    STATE_FILE,
    TrainingState,
    capture_rng,
    load_state_file,
    restore_rng,
    state_from_dict,
    state_to_dict,
)
from finsent_cli.errors import FinsentError

METRICS_FILE = "metrics.jsonl"


@dataclasses.dataclass
class TrainJob:
    """What the loop trains and how.

    Attributes:
        model: the model, with pretrained or resumed weights already loaded.
        train_set: tokenised training examples (whatever ``collate`` accepts).
        lengths: size of each training example (tokens), used when ``group_by_length`` is on.
        collate: a list of examples -> a dict of tensors.
        loss_fn: ``(model, batch) -> scalar loss``.
        save_model: writes a complete model folder for the (unwrapped) model into a folder.
        evaluate: ``model -> {metric: value}`` on the validation data, or None.
    """

    model: torch.nn.Module
    train_set: Sequence[Any]
    collate: Callable[[list[Any]], dict[str, torch.Tensor]]
    loss_fn: Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor]
    save_model: Callable[[torch.nn.Module, Path], None]
    evaluate: Callable[[torch.nn.Module], dict[str, float]] | None = None
    lengths: Sequence[int] | None = None


@dataclasses.dataclass
class TrainResult:
    """How a call to :func:`train` ended."""

    state: TrainingState
    run_dir: Path
    best_dir: Path
    last_dir: Path
    evals: list[dict[str, Any]]
    seconds: float
    resumed_from: Path | None


def make_accelerator(cfg: TrainCfg, run_dir: Path) -> Any:
    """An :class:`accelerate.Accelerator` for ``cfg``.

    ``mixed_precision: auto`` means bf16 on a GPU that supports it, else fp32 (CPU included).

    Raises:
        FinsentError: TensorBoard or Weights & Biases asked for but not installed; fp16 without a GPU.
    """
    from accelerate import Accelerator

    precision = cfg.mixed_precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    if precision == "fp16" and not torch.cuda.is_available():
        raise FinsentError("train.mixed_precision: fp16 needs a CUDA GPU; use bf16 (CPU autocast) or no")
    trackers = []
    for flag, module, name in ((cfg.tensorboard, "tensorboard", "tensorboard"), (cfg.wandb, "wandb", "wandb")):
        if flag:
            try:
                __import__(module)
            except ImportError:
                raise FinsentError(f"train.{name}: true needs the package '{module}' (pip install {module})") from None
            trackers.append(name)
    # cpu=True without a GPU makes accelerate use gloo when launched by torchrun / accelerate launch.
    return Accelerator(
        cpu=not torch.cuda.is_available(), mixed_precision=precision, log_with=trackers or None, project_dir=str(run_dir)
    )


def build_optimizer(model: torch.nn.Module, cfg: OptimCfg) -> torch.optim.Optimizer:
    """AdamW over trainable parameters; biases and normalisation weights (1-D) get no weight decay."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)


def total_steps(cfg: TrainCfg, batches_per_epoch: int) -> int:
    """Optimizer steps of the whole run: ``max_steps`` if set, else ``epochs`` full epochs."""
    if cfg.max_steps is not None:
        return cfg.max_steps
    return cfg.epochs * math.ceil(batches_per_epoch / cfg.grad_accum)


def _due(every: int | str | None, step: int, end_of_epoch: bool) -> bool:
    if every == "epoch":
        return end_of_epoch
    return isinstance(every, int) and step % every == 0


class _MetricsLog:
    """Appends one JSON object per event to ``metrics.jsonl`` (main process only)."""

    def __init__(self, path: Path, enabled: bool, accelerator: Any) -> None:
        self.path, self.enabled, self.accelerator = path, enabled, accelerator

    def truncate_after(self, step: int) -> None:
        """Forget events past ``step`` (written after the checkpoint a run resumes from) and final scores."""
        if not (self.enabled and self.path.exists()):
            return
        if step < 0:
            self.path.unlink()
            return
        lines = [ln for ln in self.path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        kept = [ln for ln in lines if json.loads(ln).get("step", 0) <= step and json.loads(ln).get("event") != "final"]
        atomic_write_text(self.path, "".join(ln + "\n" for ln in kept))

    def write(self, event: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(event) + "\n")
        numbers = {f"{event['event']}/{k}": v for k, v in event.items() if isinstance(v, float | int) and k != "step"}
        if self.accelerator.trackers:
            self.accelerator.log(numbers, step=event.get("step"))


def train(
    job: TrainJob,
    cfg: TrainCfg,
    optim_cfg: OptimCfg,
    sched_cfg: SchedCfg,
    run_dir: Path,
    accelerator: Any,
    *,
    metric: str = "macro_f1",
    metric_mode: str = "max",
    resume_from: Path | None = None,
    reporter: Reporter | None = None,
) -> TrainResult:
    """Train ``job.model`` and keep ``best/``, ``last/`` and resumable checkpoints in ``run_dir``.

    Args:
        job: model, data and callbacks.
        cfg: loop settings (epochs, batch, evaluation, checkpoints, early stopping, logging).
        optim_cfg: optimizer settings.
        sched_cfg: learning-rate schedule.
        run_dir: the run folder (exists).
        accelerator: from :func:`make_accelerator`.
        metric: key of ``job.evaluate``'s result that picks ``best/`` and drives early stopping.
        metric_mode: ``max`` or ``min``.
        resume_from: a checkpoint folder whose weights are already in ``job.model``; its optimizer,
            scheduler, RNG and counters are restored here.
        reporter: progress and log lines.

    Returns:
        The final state, folders and the list of evaluation events.

    Raises:
        FinsentError: ``metric`` missing from the evaluation result.
    """
    from accelerate.utils import gather_object

    reporter = reporter or NullReporter()
    run_dir = Path(run_dir)
    main = accelerator.is_main_process
    log = _MetricsLog(run_dir / METRICS_FILE, main, accelerator)
    sampler = ResumableBatches(
        len(job.train_set), cfg.batch_size, cfg.seed, world=accelerator.num_processes, rank=accelerator.process_index,
        lengths=job.lengths if cfg.group_by_length else None,
    )
    per_epoch = len(sampler)
    steps_per_epoch = math.ceil(per_epoch / cfg.grad_accum)
    total = total_steps(cfg, per_epoch)
    warmup = warmup_steps_for(total, sched_cfg.warmup_steps, sched_cfg.warmup_ratio)

    model = job.model
    optimizer = build_optimizer(model, optim_cfg)
    scheduler = build_scheduler(optimizer, sched_cfg.name, warmup, total, sched_cfg.min_lr_ratio)
    state = TrainingState()
    evals: list[dict[str, Any]] = []
    if resume_from is not None:
        blob = load_state_file(resume_from / STATE_FILE)
        optimizer.load_state_dict(blob["optimizer"])
        scheduler.load_state_dict(blob["scheduler"])
        state = state_from_dict(blob["state"])
        evals = list(blob.get("evals", []))
        log.truncate_after(state.step)
        reporter.log(f"resuming from {resume_from} (step {state.step}, epoch {state.epoch}, batch {state.batch_in_epoch})")
        if main:
            # A kill between writing step-N and publishing it leaves last/ and best/ behind: publish again.
            ckpt.publish(resume_from, run_dir / "last")
            best_folder = ckpt.checkpoint_root(run_dir) / f"step-{state.best_step}" if state.best_step is not None else None
            if best_folder is not None and best_folder.is_dir():
                ckpt.publish(best_folder, run_dir / "best")
    else:
        log.truncate_after(-1)  # a fresh start: events of an earlier attempt that died before a checkpoint
    model, optimizer = accelerator.prepare(model, optimizer)
    if resume_from is not None:
        rngs = blob["rng"]
        restore_rng(rngs[accelerator.process_index] if len(rngs) == accelerator.num_processes else rngs[0])
        if blob.get("scaler") is not None and accelerator.scaler is not None:
            accelerator.scaler.load_state_dict(blob["scaler"])
    if accelerator.trackers or cfg.tensorboard or cfg.wandb:
        accelerator.init_trackers(run_dir.name)

    if main:
        reporter.log(
            f"training {sum(p.numel() for p in job.model.parameters() if p.requires_grad):,} parameters on "
            f"{accelerator.num_processes} x {accelerator.device} ({accelerator.mixed_precision}): "
            f"{len(job.train_set):,} examples, "
            f"{steps_per_epoch} steps/epoch, {total} steps, warmup {warmup}"
        )

    def save() -> None:
        unwrapped = accelerator.unwrap_model(model)
        rngs = gather_object([capture_rng()]) if accelerator.num_processes > 1 else [capture_rng()]
        if main:
            blob = {
                "state": state_to_dict(state),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
                "rng": rngs,
                "evals": evals,
                "total_steps": total,
            }
            folder = ckpt.save_checkpoint(run_dir, state.step, lambda d: job.save_model(unwrapped, d), blob)
            ckpt.publish(folder, run_dir / "last")
            if state.best_step == state.step:
                ckpt.publish(folder, run_dir / "best")
            keep = {state.best_step} if state.best_step is not None else set()
            ckpt.prune(run_dir, keep, cfg.keep_checkpoints)
        accelerator.wait_for_everyone()

    if state.stop_reason == "complete" and state.step < total:
        state.stop_reason = None  # the recipe now asks for more epochs or steps
    start = time.monotonic()
    stop = state.stop_reason is not None or state.step >= total
    window_loss, window_samples, window_start = 0.0, 0, time.monotonic()
    with reporter.task("train", total=total) as bar:
        if state.step:
            bar.advance(state.step)
        while not stop:
            batches = list(sampler.batches(state.epoch, skip=state.batch_in_epoch))
            position = state.batch_in_epoch
            for g in range(0, len(batches), cfg.grad_accum):
                group = batches[g : g + cfg.grad_accum]
                model.train()
                group_loss = torch.zeros((), device=accelerator.device)
                for j, indices in enumerate(group):
                    batch = job.collate([job.train_set[i] for i in indices])
                    batch = {k: v.to(accelerator.device) for k, v in batch.items()}
                    sync = contextlib.nullcontext() if j == len(group) - 1 else accelerator.no_sync(model)
                    with sync, accelerator.autocast():
                        loss = job.loss_fn(model, batch) / len(group)
                        accelerator.backward(loss)
                    group_loss += loss.detach()
                if optim_cfg.grad_clip is not None:
                    accelerator.clip_grad_norm_(model.parameters(), optim_cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)

                state.step += 1
                position += len(group)
                n_global = sum(len(b) for b in group) * accelerator.num_processes
                state.samples_seen += n_global
                end_of_epoch = position >= per_epoch
                state.batch_in_epoch = 0 if end_of_epoch else position
                if end_of_epoch:
                    state.epoch += 1
                last = state.step >= total

                mean_loss = accelerator.reduce(group_loss, reduction="mean").item()
                window_loss += mean_loss
                window_samples += n_global
                lr = scheduler.get_last_lr()[0]
                elapsed = max(time.monotonic() - window_start, 1e-9)
                bar.advance(1, loss=mean_loss, lr=lr, samples_s=window_samples / elapsed)
                if state.step % cfg.log_every == 0 or last:
                    n_window = cfg.log_every if state.step % cfg.log_every == 0 else (state.step % cfg.log_every)
                    log.write({
                        "event": "train", "step": state.step, "epoch": state.epoch, "loss": window_loss / max(n_window, 1),
                        "lr": lr, "samples_per_s": window_samples / elapsed, "samples_seen": state.samples_seen,
                    })  # fmt: skip
                    window_loss, window_samples, window_start = 0.0, 0, time.monotonic()

                evaluated = False
                if job.evaluate is not None and (_due(cfg.eval_every, state.step, end_of_epoch) or last):
                    with accelerator.autocast():
                        metrics = job.evaluate(accelerator.unwrap_model(model))
                    if metric not in metrics:
                        raise FinsentError(f"train.metric: '{metric}' is not computed (have {', '.join(metrics)})")
                    if state.improved(metrics[metric], metric_mode):
                        state.best_metric, state.best_step, state.bad_evals = float(metrics[metric]), state.step, 0
                    else:
                        state.bad_evals += 1
                    event = {"event": "eval", "step": state.step, "epoch": state.epoch, **metrics, "best": state.best_step == state.step}
                    evals.append(event)
                    log.write(event)
                    evaluated = True
                    if main:
                        shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float))
                        reporter.log(f"step {state.step} epoch {state.epoch}: {shown}{' (best)' if event['best'] else ''}")
                    if cfg.patience is not None and state.bad_evals >= cfg.patience:
                        state.stop_reason = "early_stop"
                        reporter.log(f"early stopping: {metric} did not improve for {cfg.patience} evaluations")
                if job.evaluate is None:
                    state.best_step = state.step
                if last and state.stop_reason is None:
                    state.stop_reason = "complete"
                stop = state.stop_reason is not None
                if evaluated or stop or _due(cfg.save_every, state.step, end_of_epoch):
                    save()
                if stop:
                    break
    for tracker in accelerator.trackers:
        tracker.finish()  # the caller ends the process group (accelerator.end_training) when done
    return TrainResult(
        state=state, run_dir=run_dir, best_dir=run_dir / "best", last_dir=run_dir / "last", evals=evals,
        seconds=time.monotonic() - start, resumed_from=resume_from,
    )  # fmt: skip
