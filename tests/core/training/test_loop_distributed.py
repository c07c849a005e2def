"""The loop under two gloo processes: an exception of ``on_evaluate`` (``finsent tune``'s pruner) stops
every process after the same evaluation, none is left waiting in a collective.

``on_evaluate`` runs on the main process only; before the broadcast, the other process went on to its next
step and waited there for ever. Two real processes (``torch.distributed.run``, gloo on the CPU) train a toy
model; the hang guard only turns a hang into a failure.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.helpers import HANG_GUARD_S, cli_env

WORKER = textwrap.dedent("""
    import json, sys
    from pathlib import Path

    import optuna
    import torch

    from finsent_cli.config.finetune import OptimCfg, SchedCfg, TrainCfg
    from finsent_cli.core.training.loop import TrainJob, make_accelerator, train

    out, rank_file = Path(sys.argv[1]), None
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    xs = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
    data = [{"x": xs[i], "y": i % 3} for i in range(64)]
    cfg = TrainCfg(epochs=10, batch_size=4, eval_every=2, log_every=1)
    accelerator = make_accelerator(cfg, out)
    rank = accelerator.process_index
    calls, evals = [], []

    def evaluate(m):
        evals.append(len(evals) + 1)
        return {"macro_f1": 0.1 * len(evals)}

    def on_evaluate(n, metrics):
        calls.append(n)
        if n == 2:
            raise optuna.TrialPruned(f"pruned after evaluation {n}")

    job = TrainJob(
        model=model, train_set=data,
        collate=lambda fs: {"x": torch.stack([f["x"] for f in fs]), "y": torch.tensor([f["y"] for f in fs])},
        loss_fn=lambda m, b: torch.nn.functional.cross_entropy(m(b["x"]), b["y"]),
        save_model=lambda m, folder: torch.save(m.state_dict(), folder / "model.pt"),
        evaluate=evaluate, on_evaluate=on_evaluate,
    )
    stopped = None
    try:
        train(job, cfg, OptimCfg(lr=0.1), SchedCfg(name="constant"), out, accelerator)
    except optuna.TrialPruned as exc:
        stopped = f"{type(exc).__name__}: {exc}"
    (out / f"rank-{rank}.json").write_text(json.dumps({"stopped": stopped, "evals": evals, "calls": calls}))
    accelerator.wait_for_everyone()  # both ranks here before either tears gloo down (else one may abort at exit)
    accelerator.end_training()
""")


def test_a_pruned_trial_stops_every_process(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), str(run_dir)]  # fmt: skip
    proc = subprocess.run(cmd, check=False, env=cli_env(), capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((run_dir / f"rank-{r}.json").read_text()) for r in (0, 1)]
    for r in ranks:  # both stopped after the second evaluation, with the main process's exception
        assert r["stopped"] == "TrialPruned: pruned after evaluation 2" and r["evals"] == [1, 2]
    assert ranks[0]["calls"] == [1, 2] and ranks[1]["calls"] == []  # the hook itself ran on the main process
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 4  # 64 examples / (2 processes x 4) = 8 steps an epoch; evaluations at steps 2 and 4
