"""Why did T5 span-corruption pretraining on a CPU budget make a worse start than random weights?

Short controlled pretraining runs of ``t5_tiny`` on the prepared Reuters corpus, one setting changed at a
time, every run on the same packed batches and the same span masks from the same initial weights. At each
evaluation the run records what says whether the representations are healthy:

- ``heldout_loss`` / ``heldout_accuracy``: span-corruption loss and token accuracy on fixed held-out blocks;
- ``rare_pred_share``: at the span tokens' positions (sentinels and EOS left out), the share of predictions
  that are neither one of the 100 most frequent tokens of the corpus nor a sentinel or EOS (a decoder that
  ignores the input predicts frequent tokens only),
  and ``rare_accuracy``: token accuracy on targets outside those 100;
- ``cosine``: the mean pairwise cosine similarity of the mean-pooled encoder outputs of 64 unrelated
  PhraseBank validation sentences (anisotropy; a fresh ``t5_tiny`` is near 0, a collapsed encoder near 1);
- ``act_rms`` / ``act_max_ratio``: per encoder block, the RMS of the residual stream and the largest
  |value| over that RMS (one huge dimension makes every pooled vector point the same way);
- ``attn_entropy``: the mean attention entropy (nats) per encoder layer (log(128) = 4.85 is uniform);
- ``grad_norm``: per encoder and decoder block, the gradient norm of the last training step;
- ``weight_rms``: per kind of weight (embedding, q, k, v, o, wi, wo, lm_head), RMS over its initial RMS.

At the end a linear probe (logistic regression on the standardised mean-pooled frozen encoder output, the
full PhraseBank 50agree training split, scored by validation macro-F1) says how much sentiment the encoder
represents. ``--impl hf`` trains transformers' ``T5ForConditionalGeneration`` from the same weights on the
same batches (is it finsent's T5 or the recipe?).

    FINSENT_DATA_DIR=../shared/data OMP_NUM_THREADS=1 python bench/t5_diagnose.py --name base \\
        --corpus runs/data/corpus --tokenizer runs/tokenizer --out runs/diag --steps 300 --batch 16

    python bench/t5_diagnose.py --table runs/diag base rms2e-2   # the Markdown table of finished runs
    python bench/t5_diagnose.py --rescore base rms2e-2   # held-out measures of the saved final weights
    python bench/t5_diagnose.py --rescore runs/pretrain_curve/checkpoints/step-600   # + cosine and probe, printed

Every option maps to a recipe key (``optim.*``, ``sched.*``, ``model.*``) except ``--impl``. Writes
``OUT/NAME.jsonl`` (one line per evaluation, the probe on the last) and ``OUT/NAME/`` (the final weights).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from finsent_cli.config.training import OptimCfg
from finsent_cli.core.data.corpus import corpus_files
from finsent_cli.core.data.packing import PackedBlocks, token_file, tokenizer_hash
from finsent_cli.core.data.spans import SpanCorruption, block_lengths, sentinel_ids, span_count
from finsent_cli.core.flows.pretrain import SpanBatches, mean_pairwise_cosine
from finsent_cli.core.models.t5 import FinT5ForConditionalGeneration, save_t5, t5_config
from finsent_cli.core.models.t5 import layers as t5_layers
from finsent_cli.core.training.optim import build_optimizer
from finsent_cli.core.training.schedules import build_scheduler

RARE_TOP = 100
PROBE_SENTENCES = 64


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True)
    p.add_argument("--corpus", default="runs/data/corpus")
    p.add_argument("--tokenizer", default="runs/tokenizer")
    p.add_argument("--out", default="runs/diag")
    p.add_argument("--impl", choices=["finsent", "hf"], default="finsent")
    p.add_argument("--size", default="t5_tiny")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--optim", default="adamw")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--scale-by-rms", action="store_true", help="optim.scale_by_rms: lr x each weight's RMS")
    p.add_argument("--sched", default="cosine")
    p.add_argument("--warmup", type=float, default=0.05)
    p.add_argument("--init-factor", type=float, default=1.0)
    p.add_argument("--z-loss", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--data-dir", default=os.environ.get("FINSENT_DATA_DIR", "../shared/data"))
    return p.parse_args(argv)


# ---------------------------------------------------------------------------- measurements
def _encode(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if isinstance(model, FinT5ForConditionalGeneration):
        return model.encode(ids, mask)
    return model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state


@torch.no_grad()
def pooled(model: torch.nn.Module, tokenizer, texts: list[str], batch: int = 64) -> np.ndarray:
    """Mean-pooled encoder outputs, (N, d_model)."""
    out = []
    for i in range(0, len(texts), batch):
        enc = tokenizer(texts[i : i + batch], padding=True, truncation=True, max_length=128, return_tensors="pt")
        h = _encode(model, enc["input_ids"], enc["attention_mask"])
        m = enc["attention_mask"][..., None].float()
        out.append(((h * m).sum(1) / m.sum(1)).numpy())
    return np.concatenate(out)


def mean_cosine(x: np.ndarray) -> float:
    """Mean pairwise cosine similarity (diagonal left out): what ``finsent pretrain`` logs as ``heldout_cosine``."""
    return mean_pairwise_cosine(torch.from_numpy(x))


class _Entropy:
    """An attention kernel that also records the mean attention entropy of each call."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def __call__(self, q, k, v, mask, dropout_p=0.0):
        scores = torch.matmul(q, k.transpose(-1, -2))
        if mask is not None:
            scores = scores + mask
        w = torch.softmax(scores.float(), dim=-1)
        ent = -(w * torch.log(w.clamp_min(1e-12))).sum(-1)  # (B, H, Tq)
        self.values.append(float(ent.mean()))
        return torch.matmul(w.to(q.dtype), v)


@torch.no_grad()
def encoder_stats(model: torch.nn.Module, ids: torch.Tensor) -> dict[str, list[float]]:
    """Residual-stream RMS and max/RMS after each encoder block, and attention entropy per encoder layer
    (finsent's T5 only: the entropy needs its attention kernel)."""
    acts: list[torch.Tensor] = []
    blocks = model.encoder.block
    hooks = [b.register_forward_hook(lambda _m, _i, o: acts.append(o[0] if isinstance(o, tuple) else o)) for b in blocks]
    rec = None
    if isinstance(model, FinT5ForConditionalGeneration):
        rec = _Entropy()
        t5_layers.ATTENTION_IMPLS["_entropy"] = rec
        model.encoder.apply(lambda m: setattr(m, "impl", "_entropy") if isinstance(m, t5_layers.T5Attention) else None)
    try:
        _encode(model, ids, torch.ones_like(ids))
    finally:
        for h in hooks:
            h.remove()
        if rec is not None:
            model.encoder.apply(lambda m: setattr(m, "impl", "sdpa") if isinstance(m, t5_layers.T5Attention) else None)
    rms = [float(a.float().pow(2).mean().sqrt()) for a in acts]
    ratio = [float(a.float().abs().amax() / a.float().pow(2).mean().sqrt()) for a in acts]
    out = {"act_rms": rms, "act_max_ratio": ratio}
    if rec is not None:
        out["attn_entropy"] = rec.values
    return out


def _kind(name: str) -> str | None:
    for key in ("shared", "lm_head", ".q.", ".k.", ".v.", ".o.", "wi_0", "wi_1", ".wo."):
        if key in name:
            return key.strip(".")
    return None


def weight_rms(model: torch.nn.Module) -> dict[str, float]:
    groups: dict[str, list[float]] = {}
    for name, p in model.named_parameters():
        kind = _kind(name)
        if kind is not None:
            groups.setdefault(kind, []).append(float(p.detach().float().pow(2).mean()))
    return {k: math.sqrt(sum(v) / len(v)) for k, v in groups.items()}


def grad_norms(model: torch.nn.Module) -> dict[str, list[float]]:
    out = {}
    for stack in ("encoder", "decoder"):
        norms = []
        for block in getattr(model, stack).block:
            sq = sum(float(p.grad.float().pow(2).sum()) for p in block.parameters() if p.grad is not None)
            norms.append(math.sqrt(sq))
        out[stack] = norms
    return out


@torch.no_grad()
def heldout(model: torch.nn.Module, batches, frequent: torch.Tensor, special: torch.Tensor) -> dict[str, float]:
    loss_sum = correct = count = 0.0
    rare_pred = rare_den = rare_correct = rare_targets = 0.0
    for b in batches:
        out = model(input_ids=b["input_ids"], labels=b["labels"])
        labels = b["labels"]
        pred = out.logits.argmax(-1)
        n = labels.numel()
        loss_sum += float(out.loss) * n
        correct += float((pred == labels).sum())
        count += n
        content = ~torch.isin(labels, special)  # span tokens, not sentinels or EOS
        rare_pred += float((content & ~torch.isin(pred, frequent) & ~torch.isin(pred, special)).sum())
        rare_den += float(content.sum())
        rare_t = content & ~torch.isin(labels, frequent)
        rare_targets += float(rare_t.sum())
        rare_correct += float((rare_t & (pred == labels)).sum())
    return {
        "heldout_loss": loss_sum / count, "heldout_accuracy": correct / count,
        "rare_pred_share": rare_pred / rare_den, "rare_target_share": rare_targets / rare_den,
        "rare_accuracy": rare_correct / max(rare_targets, 1.0),
    }  # fmt: skip


def probe(model: torch.nn.Module, tokenizer, data_dir: Path) -> dict[str, float]:
    """Linear probe: logistic regression on standardised frozen mean-pooled encoder outputs."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    split = data_dir / "phrasebank" / "splits"
    train = pd.read_csv(split / "50agree_train.csv")
    valid = pd.read_csv(split / "50agree_valid.csv")
    model.eval()
    xt, xv = pooled(model, tokenizer, train.text.tolist()), pooled(model, tokenizer, valid.text.tolist())
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    clf.fit(xt, train.label)
    return {"probe_valid_macro_f1": float(f1_score(valid.label, clf.predict(xv), average="macro"))}


# ---------------------------------------------------------------------------- the run
def z_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """PaLM's auxiliary z-loss: mean log(Z)^2 over the target positions."""
    lz = torch.logsumexp(logits.float(), dim=-1)
    keep = labels != -100
    return (lz[keep] ** 2).mean()


def table(out: Path, names: list[str]) -> str:
    """The Markdown table of finished runs: the last evaluation, the cosine at step 50, and the probe."""
    lines = [
        "| run | held-out loss | token acc. | rare share / acc. | cosine @50 | cosine | attn. entropy | residual RMS | enc. grad | probe F1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        rows = [json.loads(x) for x in (out / f"{name}.jsonl").read_text().splitlines()]
        evals = [r for r in rows if "heldout_loss" in r]
        last, probe_row = evals[-1], rows[-1]
        at50 = next((r["cosine"] for r in evals if r["step"] == 50), float("nan"))
        ent = last.get("attn_entropy")
        grad = last.get("grad_norm", {}).get("encoder")
        lines.append(
            f"| {name} | {last['heldout_loss']:.3f} | {last['heldout_accuracy']:.3f} | "
            f"{last['rare_pred_share']:.2f} / {last['rare_accuracy']:.3f} | {at50:.3f} | {last['cosine']:.3f} | "
            f"{'n/a' if not ent else f'{min(ent):.2f}-{max(ent):.2f}'} | {last['act_rms'][-1]:.1f} | "
            f"{'n/a' if not grad else f'{statistics.fmean(grad):.3f}'} | {probe_row.get('probe_valid_macro_f1', float('nan')):.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--table":
        print(table(Path(sys.argv[2]), sys.argv[3:]))
        return 0
    rescore = argv is None and len(sys.argv) > 1 and sys.argv[1] == "--rescore"
    a = _args(["--name", "rescore"] if rescore else argv)
    torch.manual_seed(a.seed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(a.tokenizer)
    key = tokenizer_hash(a.tokenizer)
    raw_len, target_len = block_lengths(a.seq, 0.15, 3.0)
    sentinels = sentinel_ids(tokenizer, span_count(raw_len, 0.15, 3.0))
    train_files, held_files = corpus_files([a.corpus])
    cache = Path(a.corpus) / "tokens"
    streams = [token_file(f, tokenizer, key, cache) for f in train_files]
    blocks = PackedBlocks(streams, raw_len, [str(f) for f in train_files])
    held = PackedBlocks([token_file(f, tokenizer, key, cache) for f in held_files], raw_len, ["heldout"])
    counts = Counter()
    for s in streams:
        counts.update(np.asarray(s[:2_000_000]).tolist())
    frequent = torch.tensor([t for t, _ in counts.most_common(RARE_TOP)])
    special = torch.tensor([*sentinels.tolist(), tokenizer.eos_token_id, -100])

    corruption = SpanCorruption(a.seq, sentinels, tokenizer.eos_token_id, 0.15, 3.0, a.seed)
    collate = SpanBatches(corruption)
    held_batches = [collate([held[i] for i in range(j, j + 32)]) for j in range(0, 64, 32)]
    rng = np.random.default_rng(a.seed)
    order = rng.permutation(len(blocks))

    import pandas as pd

    data_dir = Path(a.data_dir)
    valid = pd.read_csv(data_dir / "phrasebank" / "splits" / "50agree_valid.csv")
    sentences = valid.text.sample(PROBE_SENTENCES, random_state=0).tolist()

    if rescore:  # held-out measures of saved weights: a run's final row, or a printed row per model folder
        from finsent_cli.core.models.t5 import load_t5

        for name in sys.argv[2:]:
            folder = Path(name) if "/" in name else out / name
            model = load_t5(folder).eval()
            measured = heldout(model, held_batches, frequent, special)
            if "/" in name:
                measured["cosine"] = mean_cosine(pooled(model, tokenizer, sentences))
                measured.update(probe(model, tokenizer, data_dir))
                print(json.dumps({"model": name, **measured}), flush=True)
                continue
            path = out / f"{name}.jsonl"
            rows = [json.loads(x) for x in path.read_text().splitlines()]
            i = max(j for j, r in enumerate(rows) if "heldout_loss" in r)
            rows[i].update(measured)
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
            print(name, {k: round(v, 4) for k, v in rows[i].items() if k.startswith(("heldout", "rare"))})
        return 0

    vocab = math.ceil(len(tokenizer) / 128) * 128
    cfg = t5_config(
        a.size, variant="v1.1", vocab_size=vocab, dropout_rate=0.0, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id,
        initializer_factor=a.init_factor,
    )  # fmt: skip
    torch.manual_seed(a.seed)
    model: torch.nn.Module = FinT5ForConditionalGeneration(cfg).train()
    if a.impl == "hf":
        from transformers import T5ForConditionalGeneration

        with tempfile.TemporaryDirectory() as tmp:  # through a saved folder, as transformers users load it
            save_t5(model, tmp)
            model = T5ForConditionalGeneration.from_pretrained(tmp).train()
    init_rms = weight_rms(model)

    optim = build_optimizer(model, OptimCfg(name=a.optim, lr=a.lr, weight_decay=0.0, grad_clip=1.0, scale_by_rms=a.scale_by_rms))
    sched = build_scheduler(optim, a.sched, round(a.warmup * a.steps), a.steps, 0.1 if a.sched == "cosine" else 0.0)

    log = (out / f"{a.name}.jsonl").open("w")

    def record(step: int, extra: dict) -> dict:
        model.eval()
        row = {"name": a.name, "step": step, "tokens": step * a.batch * (a.seq + target_len), **extra}
        row.update(heldout(model, held_batches, frequent, special))
        row["cosine"] = mean_cosine(pooled(model, tokenizer, sentences))
        row.update(encoder_stats(model, held_batches[0]["input_ids"][:8]))
        now = weight_rms(model)
        row["weight_rms"] = {k: round(now[k] / init_rms[k], 3) for k in now}
        model.train()
        log.write(json.dumps(row) + "\n")
        log.flush()
        print(
            f"{a.name} step {step}: loss {row['heldout_loss']:.3f} acc {row['heldout_accuracy']:.3f} "
            f"rare {row['rare_pred_share']:.3f} cos {row['cosine']:.3f} "
            f"ent {[round(e, 2) for e in row.get('attn_entropy', [])]} maxratio {[round(r) for r in row['act_max_ratio']]}",
            flush=True,
        )
        return row

    record(0, {"config": vars(a)})
    t0 = time.perf_counter()
    losses = []
    for step in range(1, a.steps + 1):
        idx = order[(step - 1) * a.batch : step * a.batch]
        batch = collate([blocks[int(i)] for i in idx])
        out_ = model(input_ids=batch["input_ids"], labels=batch["labels"])
        loss = out_.loss
        if a.z_loss:
            loss = loss + a.z_loss * z_loss(out_.logits, batch["labels"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        grads = grad_norms(model) if step % a.every == 0 else None
        optim.step()
        sched.step()
        optim.zero_grad(set_to_none=True)
        losses.append(float(out_.loss.detach()))
        if grads is not None:
            record(step, {"train_loss": float(np.mean(losses[-a.every :])), "grad_norm": grads, "seconds": time.perf_counter() - t0})
    row = probe(model, tokenizer, data_dir)
    print(a.name, row, flush=True)
    log.write(json.dumps({"name": a.name, "step": a.steps, **row}) + "\n")
    log.close()
    if a.impl == "finsent":
        save_t5(model, out / a.name)
        tokenizer.save_pretrained(out / a.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
