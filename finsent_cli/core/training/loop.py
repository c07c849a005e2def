"""One training loop for every finsent recipe (fine-tuning now; pretraining and QLoRA reuse it).

Built on ``accelerate`` (device placement, mixed precision, DDP under ``accelerate launch`` or
``torchrun``). It knows nothing about classification: the caller passes the model, a loss callable,
the tokenised training set, a collate function, an evaluation callback and how to write a model
folder. Gradient accumulation is done by hand (``no_sync`` on all but the last micro-batch) so a
checkpoint always falls on an optimizer-step boundary and the data position is exact.

After nanoGPT's train.py and torchtune's recipes, in phases: restore (a checkpoint, if any) -> step
(one optimizer step over ``grad_accum`` micro-batches) -> evaluate (and early stopping) -> save. Ctrl-C
finishes the current step, saves a checkpoint and raises ``KeyboardInterrupt``; a second Ctrl-C stops
at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from typing_extensions import Self

from finsent_cli.config.training import OptimCfg, SchedCfg, TrainCfg
from finsent_cli.core.io import atomic_write_text
from finsent_cli.core.progress import NullReporter, Reporter
from finsent_cli.core.runs import METRICS_FILE
from finsent_cli.core.training import checkpoint as ckpt
from finsent_cli.core.training.data import ResumableBatches
from finsent_cli.core.training.optim import build_optimizer
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
from finsent_cli.errors import FinsentError, Interrupted

TENSORBOARD_DIR = "tensorboard"
TRACKER_PROJECT = "finsent"  # the W&B project, and the TensorBoard run under <run>/tensorboard


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
        set_epoch: called with the epoch number before its batches are drawn (pretraining draws a fresh
            span-corruption mask per epoch, like ``DistributedSampler.set_epoch``).
        on_evaluate: called on the main process after each evaluation with its number (1, 2, ...; counting
            the evaluations before a resume) and its metrics. It may raise to stop the run there, which
            is how ``finsent tune``'s pruner stops a trial (the evaluation is logged, not checkpointed);
            the exception is broadcast and raised on every process, so all of them stop there.
    """

    model: torch.nn.Module
    train_set: Sequence[Any]
    collate: Callable[[list[Any]], dict[str, torch.Tensor]]
    loss_fn: Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor]
    save_model: Callable[[torch.nn.Module, Path], None]
    evaluate: Callable[[torch.nn.Module], dict[str, float]] | None = None
    lengths: Sequence[int] | None = None
    set_epoch: Callable[[int], None] | None = None
    on_evaluate: Callable[[int, dict[str, float]], None] | None = None


@dataclasses.dataclass
class StepStats:
    """One optimizer step, summed over processes: mean loss, gradient norm, tokens (real and padded)."""

    loss: float
    grad_norm: float
    tokens: int
    positions: int


def token_counts(batch: dict[str, torch.Tensor]) -> tuple[int, int]:
    """``(real tokens, positions)`` of a batch: encoder inputs (``attention_mask`` if given, else all of
    ``input_ids``) plus sequence targets (2-D ``labels`` other than -100; class labels do not count)."""
    ids = batch.get("input_ids")
    positions = int(ids.numel()) if ids is not None else 0
    mask = batch.get("attention_mask")
    real = int(mask.sum()) if mask is not None else positions
    labels = batch.get("labels")
    if labels is not None and labels.dim() == 2:
        positions += int(labels.numel())
        real += int((labels != -100).sum())
    return real, positions


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (avx512_bf16 or AMX); elsewhere bf16 autocast is emulated."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclasses.dataclass
class TrainResult:
    """How a call to :func:`train` ended."""

    state: TrainingState
    run_dir: Path
    best_dir: Path
    last_dir: Path
    seconds: float


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
    from accelerate.utils import ProjectConfiguration

    # cpu=True without a GPU makes accelerate use gloo when launched by torchrun / accelerate launch.
    return Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=precision,
        log_with=trackers or None,
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(Path(run_dir) / TENSORBOARD_DIR)),
    )


def wandb_mode() -> tuple[str | None, str | None]:
    """W&B's mode and why: ``$WANDB_MODE`` when set; ``offline`` when no API key is configured (no
    ``$WANDB_API_KEY``, no ``api.wandb.ai`` entry in ``~/.netrc``), so a run never stops at a login prompt;
    else None (W&B's default, online)."""
    import os

    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"], None
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        logged_in = "api.wandb.ai" in netrc.read_text(encoding="utf-8", errors="replace")
    except OSError:
        logged_in = False
    if os.environ.get("WANDB_API_KEY") or logged_in:
        return None, None
    return "offline", "no W&B API key (WANDB_API_KEY or wandb login): logging offline; upload later with wandb sync"


def start_trackers(accelerator: Any, cfg: TrainCfg, run_dir: Path, reporter: Reporter) -> None:
    """Start TensorBoard (events in ``<run>/tensorboard/finsent``) and W&B (project ``finsent``, run named after
    the run folder, files in ``<run>/wandb``, quiet and without capturing the console; in the group set by
    :func:`~finsent_cli.core.training.tracking.tracker_group`: the trials of a ``finsent tune`` study)."""
    from finsent_cli.core.training.tracking import current_group

    kwargs: dict[str, Any] = {}
    if cfg.wandb:
        import wandb

        mode, why = wandb_mode()
        if why and accelerator.is_main_process:
            reporter.log(f"train.wandb: {why}")
        group = current_group()
        kwargs["wandb"] = {
            "name": run_dir.name, "dir": str(run_dir), "settings": wandb.Settings(console="off", silent=True),
            **({"mode": mode} if mode else {}), **({"group": group} if group else {}),
        }  # fmt: skip
    accelerator.init_trackers(TRACKER_PROJECT, init_kwargs=kwargs)


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
        numbers = {
            f"{event['event']}/{k}": v for k, v in event.items() if isinstance(v, float | int) and not isinstance(v, bool) and k != "step"
        }  # fmt: skip
        if self.accelerator.trackers:
            self.accelerator.log(numbers, step=event.get("step"))


class _Window:
    """Train statistics since the last ``train`` log event."""

    def __init__(self) -> None:
        self.steps = self.samples = self.tokens = self.positions = 0
        self.loss = self.grad_norm = 0.0
        self.start = time.monotonic()

    def add(self, stats: StepStats, samples: int) -> None:
        self.steps += 1
        self.samples += samples
        self.loss += stats.loss
        self.grad_norm += stats.grad_norm
        self.tokens += stats.tokens
        self.positions += stats.positions

    def speeds(self) -> dict[str, float]:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        return {"samples_s": self.samples / elapsed, "tokens_s": self.tokens / elapsed}

    def summary(self) -> dict[str, float]:
        """Mean loss and gradient norm, throughput, and the share of positions that hold a real token."""
        elapsed = max(time.monotonic() - self.start, 1e-9)
        n = max(self.steps, 1)
        return {
            "loss": self.loss / n, "grad_norm": self.grad_norm / n, "samples_per_s": self.samples / elapsed,
            "tokens_per_s": self.tokens / elapsed, "nonpad_fraction": self.tokens / max(self.positions, 1),
        }  # fmt: skip


class _CtrlC:
    """While active (main thread only), the first SIGINT only sets :attr:`pending`; the default handler is
    back at once, so a second Ctrl-C raises ``KeyboardInterrupt`` wherever the loop is."""

    def __init__(self) -> None:
        self.pending = False
        self._previous: Any = None

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.pending = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _portable(exc: BaseException | None) -> BaseException | None:
    """``exc`` if it survives pickling (to reach the other processes as it is), else a RuntimeError that
    names it."""
    import pickle

    if exc is None:
        return None
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - any failure to travel is answered the same way
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


class _Run:
    """The state of one call to :func:`train`, and its phases."""

    def __init__(
        self, job: TrainJob, cfg: TrainCfg, optim_cfg: OptimCfg, sched_cfg: SchedCfg, run_dir: Path, accelerator: Any,
        metric: str, metric_mode: str, reporter: Reporter,
    ) -> None:  # fmt: skip
        self.job, self.cfg, self.optim_cfg, self.run_dir = job, cfg, optim_cfg, Path(run_dir)
        self.accelerator, self.metric, self.metric_mode, self.reporter = accelerator, metric, metric_mode, reporter
        self.main = accelerator.is_main_process
        self.log = _MetricsLog(self.run_dir / METRICS_FILE, self.main, accelerator)
        self.sampler = ResumableBatches(
            len(job.train_set), cfg.batch_size, cfg.seed, world=accelerator.num_processes, rank=accelerator.process_index,
            lengths=job.lengths if cfg.group_by_length else None,
        )  # fmt: skip
        self.per_epoch = len(self.sampler)
        self.total = total_steps(cfg, self.per_epoch)
        self.warmup = warmup_steps_for(self.total, sched_cfg.warmup_steps, sched_cfg.warmup_ratio)
        self.model = job.model
        self.optimizer = build_optimizer(self.model, optim_cfg)
        self.scheduler = build_scheduler(
            self.optimizer, sched_cfg.name, self.warmup, self.total, sched_cfg.min_lr_ratio
        )
        self.state = TrainingState()
        self.evals: list[dict[str, Any]] = []

    # ------------------------------------------------------------------------------------ restore

    def restore(self, resume_from: Path | None) -> None:
        """Load optimizer, scheduler, counters and RNG from ``resume_from`` (its weights are already in the
        model), republish ``best/`` and ``last/``, then hand model and optimizer to accelerate."""
        blob = None
        if resume_from is not None:
            blob = load_state_file(resume_from / STATE_FILE)
            self.optimizer.load_state_dict(blob["optimizer"])
            self.scheduler.load_state_dict(blob["scheduler"])
            self.state = state_from_dict(blob["state"])
            self.evals = list(blob.get("evals", []))
            self.log.truncate_after(self.state.step)
            s = self.state
            self.reporter.log(f"resuming from {resume_from} (step {s.step}, epoch {s.epoch}, batch {s.batch_in_epoch})")
            if self.main:
                # A kill between writing step-N and publishing it leaves last/ and best/ behind: publish again.
                ckpt.publish(resume_from, self.run_dir / "last")
                best = ckpt.checkpoint_root(self.run_dir) / f"step-{s.best_step}" if s.best_step is not None else None
                if best is not None and best.is_dir():
                    ckpt.publish(best, self.run_dir / "best")
        else:
            self.log.truncate_after(-1)  # a fresh start: events of an earlier attempt that died before a checkpoint
        if self.cfg.compile:
            self.model.compile()  # in place: parameter names, hence checkpoints, stay those of the plain model
        self.model, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)
        if blob is not None:
            rngs = blob["rng"]
            restore_rng(
                rngs[self.accelerator.process_index] if len(rngs) == self.accelerator.num_processes else rngs[0]
            )
            if blob.get("scaler") is not None and self.accelerator.scaler is not None:
                self.accelerator.scaler.load_state_dict(blob["scaler"])
        if self.state.stop_reason == "complete" and self.state.step < self.total:
            self.state.stop_reason = None  # the recipe now asks for more epochs or steps

    # --------------------------------------------------------------------------------------- step

    def step(self, group: list[list[int]]) -> StepStats:
        """One optimizer step over the micro-batches of ``group``; loss averaged and tokens summed over processes."""
        acc, job = self.accelerator, self.job
        self.model.train()
        group_loss = torch.zeros((), device=acc.device)
        tokens = positions = 0
        for j, indices in enumerate(group):
            batch = job.collate([job.train_set[i] for i in indices])
            real, total = token_counts(batch)
            tokens, positions = tokens + real, positions + total
            batch = {k: v.to(acc.device) for k, v in batch.items()}
            sync = contextlib.nullcontext() if j == len(group) - 1 else acc.no_sync(self.model)
            with sync, acc.autocast():
                loss = job.loss_fn(self.model, batch) / len(group)
                acc.backward(loss)
            group_loss += loss.detach()
        # inf: measure the norm without clipping (the gradients are already synchronised here)
        norm = acc.clip_grad_norm_(self.model.parameters(), self.optim_cfg.grad_clip or float("inf"))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        counts = torch.tensor([tokens, positions], dtype=torch.float64, device=acc.device)
        if acc.num_processes > 1:
            group_loss, counts = acc.reduce(group_loss, reduction="mean"), acc.reduce(counts, reduction="sum")
        grad_norm = float(norm) if norm is not None else float("nan")
        return StepStats(group_loss.item(), grad_norm, int(counts[0]), int(counts[1]))

    # ----------------------------------------------------------------------------------- evaluate

    def evaluate(self) -> None:
        """Score the model on validation data, track the best step and decide on early stopping."""
        state = self.state
        with self.accelerator.autocast():
            metrics = self.job.evaluate(self.accelerator.unwrap_model(self.model))  # type: ignore[misc]
        if self.metric not in metrics:
            raise FinsentError(f"train.metric: '{self.metric}' is not computed (have {', '.join(metrics)})")
        if state.improved(metrics[self.metric], self.metric_mode):
            state.best_metric, state.best_step, state.bad_evals = float(metrics[self.metric]), state.step, 0
        else:
            state.bad_evals += 1
        epoch = round(state.epoch + state.batch_in_epoch / self.per_epoch, 2)
        event = {"event": "eval", "step": state.step, "epoch": epoch, **metrics, "best": state.best_step == state.step}
        self.evals.append(event)
        self.log.write(event)
        if self.main:
            shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float))
            self.reporter.log(f"step {state.step} (epoch {epoch:g}): {shown}{' (best)' if event['best'] else ''}")
        self._after_evaluation(len(self.evals), metrics)
        if self.cfg.patience is not None and state.bad_evals >= self.cfg.patience:
            state.stop_reason = "early_stop"
            self.reporter.log(f"early stopping: {self.metric} did not improve for {self.cfg.patience} evaluations")

    def _after_evaluation(self, n: int, metrics: dict[str, float]) -> None:
        """Call ``job.on_evaluate`` on the main process; what it raises (``finsent tune``'s pruner:
        ``optuna.TrialPruned``) is raised on every process, so that none is left waiting in the next
        collective for a main process that stopped. Every process broadcasts after every evaluation, hook or
        not, so they cannot disagree on whether to wait for the decision."""
        acc = self.accelerator
        error: BaseException | None = None
        if self.main and self.job.on_evaluate is not None:
            try:
                self.job.on_evaluate(n, metrics)
            except Exception as exc:
                if acc.num_processes == 1:
                    raise
                error = exc
        if acc.num_processes == 1:
            return
        from accelerate.utils import broadcast_object_list

        box = [_portable(error)]
        broadcast_object_list(box, from_process=0)
        if error is not None:  # the main process raises its own exception, traceback and all
            raise error
        if box[0] is not None:
            raise box[0]

    # --------------------------------------------------------------------------------------- save

    def save(self) -> None:
        """Write ``checkpoints/step-N`` (model + training state), publish ``last/`` (and ``best/``), prune."""
        from accelerate.utils import gather_object

        acc, state = self.accelerator, self.state
        unwrapped = acc.unwrap_model(self.model)
        rngs = gather_object([capture_rng()]) if acc.num_processes > 1 else [capture_rng()]
        if self.main:
            blob = {
                "state": state_to_dict(state),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": acc.scaler.state_dict() if acc.scaler is not None else None,
                "rng": rngs,
                "evals": self.evals,
                "total_steps": self.total,
            }
            folder = ckpt.save_checkpoint(self.run_dir, state.step, lambda d: self.job.save_model(unwrapped, d), blob)
            ckpt.publish(folder, self.run_dir / "last")
            if state.best_step == state.step:
                ckpt.publish(folder, self.run_dir / "best")
            keep = {state.best_step} if state.best_step is not None else set()
            ckpt.prune(self.run_dir, keep, self.cfg.keep_checkpoints)
        acc.wait_for_everyone()

    # --------------------------------------------------------------------------------------- loop

    def _interrupted(self, ctrl_c: _CtrlC) -> bool:
        """Whether any process saw Ctrl-C (all processes must agree, to save the same step together)."""
        if self.accelerator.num_processes == 1:
            return ctrl_c.pending
        flag = torch.tensor(float(ctrl_c.pending), device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, reduction="sum").item() > 0)

    def run(self) -> None:
        """Steps until the recipe's length, early stopping, or Ctrl-C (which saves, then raises)."""
        cfg, acc = self.cfg, self.accelerator
        if self.main:
            trainable = sum(p.numel() for p in self.job.model.parameters() if p.requires_grad)
            where = f"{acc.num_processes} processes x {acc.device}" if acc.num_processes > 1 else str(acc.device)
            precision = "fp32" if acc.mixed_precision == "no" else acc.mixed_precision
            self.reporter.log(
                f"training {trainable:,} parameters on {where} ({precision}): {len(self.job.train_set):,} examples, "
                f"{math.ceil(self.per_epoch / cfg.grad_accum)} steps/epoch, {self.total} steps, warmup {self.warmup}"
            )
        try:
            self._steps()
        finally:
            for tracker in acc.trackers:
                tracker.finish()  # the caller ends the process group (accelerator.end_training) when done

    def _steps(self) -> None:
        cfg, state, acc = self.cfg, self.state, self.accelerator
        stop = state.stop_reason is not None or state.step >= self.total
        window = _Window()
        with self.reporter.task("train", total=self.total) as bar, _CtrlC() as ctrl_c:
            if state.step:
                bar.advance(state.step)
            while not stop:
                if self.job.set_epoch is not None:
                    self.job.set_epoch(state.epoch)
                batches = list(self.sampler.batches(state.epoch, skip=state.batch_in_epoch))
                position = state.batch_in_epoch
                for g in range(0, len(batches), cfg.grad_accum):
                    group = batches[g : g + cfg.grad_accum]
                    stats = self.step(group)
                    state.step += 1
                    position += len(group)
                    n_global = sum(len(b) for b in group) * acc.num_processes
                    state.samples_seen += n_global
                    end_of_epoch = position >= self.per_epoch
                    state.batch_in_epoch = 0 if end_of_epoch else position
                    if end_of_epoch:
                        state.epoch += 1
                    last = state.step >= self.total

                    window.add(stats, n_global)
                    # the recipe's rate: under optim.scale_by_rms the first group's is scaled by its weight's size
                    lr = self.scheduler.get_last_lr()[0] / self.optimizer.param_groups[0].get("lr_scale", 1.0)
                    bar.advance(1, loss=stats.loss, lr=lr, **window.speeds())
                    if state.step % cfg.log_every == 0 or last:
                        self.log.write({
                            "event": "train", "step": state.step, "epoch": state.epoch, **window.summary(), "lr": lr,
                            "samples_seen": state.samples_seen,
                        })  # fmt: skip
                        window = _Window()

                    evaluated = False
                    if self.job.evaluate is not None and (_due(cfg.eval_every, state.step, end_of_epoch) or last):
                        self.evaluate()
                        evaluated = True
                    if self.job.evaluate is None:
                        state.best_step = state.step
                    if last and state.stop_reason is None:
                        state.stop_reason = "complete"
                    stop = state.stop_reason is not None
                    interrupted = self._interrupted(ctrl_c)
                    if evaluated or stop or interrupted or _due(cfg.save_every, state.step, end_of_epoch):
                        self.save()
                    if interrupted and not stop:  # the CLI prints this once, as the line of the interruption
                        raise Interrupted(f"saved step {state.step}; run the same command again to resume")
                    if stop:
                        break


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
        The final state and folders.

    Raises:
        FinsentError: ``metric`` missing from the evaluation result.
        KeyboardInterrupt: Ctrl-C; the step in progress was finished and saved first.
    """
    run = _Run(job, cfg, optim_cfg, sched_cfg, run_dir, accelerator, metric, metric_mode, reporter or NullReporter())
    run.restore(resume_from)
    if cfg.tensorboard or cfg.wandb:
        start_trackers(accelerator, cfg, run.run_dir, run.reporter)
    start = time.monotonic()
    run.run()
    return TrainResult(
        state=run.state, run_dir=run.run_dir, best_dir=run.run_dir / "best", last_dir=run.run_dir / "last",
        seconds=time.monotonic() - start,
    )  # fmt: skip
