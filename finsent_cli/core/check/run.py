"""`finsent check`: classify every case of a capability suite and score each capability and template.

The model runs through the same loader and batched inference as ``predict`` and ``eval``
(``core.inference``). A target-conditioned model reads (target, sentence) pairs: cases without a target
are skipped for it, and capabilities marked ``targets: true`` are skipped for a sentence model. A pass
rate is a measurement; :meth:`CheckReport.below` lists the capabilities under a threshold.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from finsent_cli.core.check.expand import Case, expand_capability
from finsent_cli.core.check.suite import Suite, Template
from finsent_cli.core.io import atomic_write_json
from finsent_cli.core.progress import NullReporter, Reporter, Task
from finsent_cli.core.runs import find_model
from finsent_cli.labels import LABELS

Predict = Callable[[Sequence[str], Sequence[str] | None, Task], np.ndarray]
"""``(texts, targets or None, task) -> (N, 3)`` probabilities, columns negative/neutral/positive."""

NEEDS_TARGETS = "needs a target-conditioned model (this one reads sentences only)"
NO_TARGETS = "no case names a target, and this model reads (target, sentence) pairs"


@dataclass
class Outcome:
    """A case and what the model said."""

    case: Case
    predicted: str
    confidence: float
    probs: list[float]  # (3,) negative, neutral, positive

    @property
    def passed(self) -> bool:
        return self.case.expect.passes(self.predicted)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form of a failure."""
        t = self.case.template
        return {"text": self.case.text, "target": self.case.target, "expected": self.case.expect.spelled,
                "predicted": self.predicted, "confidence": round(self.confidence, 4),
                "probs": dict(zip(LABELS, (round(p, 4) for p in self.probs))), "template": t.text,
                "where": t.where}  # fmt: skip


@dataclass
class TemplateScore:
    """Cases, passes and skips of one template."""

    template: Template
    cases: int = 0
    passed: int = 0
    skipped: int = 0

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.cases if self.cases else None


@dataclass
class CapabilityScore:
    """One capability's result: run (cases > 0) or skipped, with the reason."""

    name: str
    description: str
    templates: list[TemplateScore]
    failures: list[Outcome] = field(default_factory=list)
    skipped_reason: str | None = None

    @property
    def cases(self) -> int:
        return sum(t.cases for t in self.templates)

    @property
    def passed(self) -> int:
        return sum(t.passed for t in self.templates)

    @property
    def skipped_cases(self) -> int:
        return sum(t.skipped for t in self.templates)

    @property
    def pass_rate(self) -> float | None:
        """passed / cases; None when skipped."""
        return self.passed / self.cases if self.cases else None


@dataclass
class CheckReport:
    """The result of one ``finsent check``."""

    model: str
    target_conditioned: bool
    suite_files: list[str]
    capabilities: list[CapabilityScore]
    seconds: float = 0.0

    @property
    def cases(self) -> int:
        return sum(c.cases for c in self.capabilities)

    @property
    def passed(self) -> int:
        return sum(c.passed for c in self.capabilities)

    def below(self, rate: float) -> list[CapabilityScore]:
        """Capabilities that ran and passed fewer than ``rate`` of their cases (skipped ones never are)."""
        return [c for c in self.capabilities if c.pass_rate is not None and c.pass_rate < rate]

    def as_dict(self) -> dict[str, Any]:
        """The JSON report: per capability and per template pass rates, and every failure."""

        def rate(x: float | None) -> float | None:
            return None if x is None else round(x, 4)

        caps = []
        for c in self.capabilities:
            caps.append({
                "name": c.name, "description": c.description,
                "status": "skipped" if c.skipped_reason else "run", "skipped_reason": c.skipped_reason,
                "cases": c.cases, "passed": c.passed, "pass_rate": rate(c.pass_rate), "skipped_cases": c.skipped_cases,
                "templates": [{"template": t.template.text, "where": t.template.where,
                               "expected": " / ".join(f"{tg}: {e.spelled}" if tg and len(t.template.outcomes) > 1 else e.spelled for tg, e in t.template.outcomes),
                               "cases": t.cases, "passed": t.passed, "pass_rate": rate(t.pass_rate), "skipped_cases": t.skipped,
                               "note": t.template.note}
                              for t in c.templates],
                "failures": [f.as_dict() for f in c.failures],
            })  # fmt: skip
        run = [c for c in self.capabilities if c.pass_rate is not None]
        return {
            "model": self.model, "target_conditioned": self.target_conditioned, "labels": list(LABELS),
            "suite": self.suite_files, "seconds": round(self.seconds, 2),
            "cases": self.cases, "passed": self.passed, "pass_rate": rate(self.passed / self.cases if self.cases else None),
            "mean_capability_pass_rate": rate(sum(c.pass_rate or 0.0 for c in run) / len(run) if run else None),
            "capabilities": caps,
        }  # fmt: skip


def score_suite(suite: Suite, predict: Predict, *, target_conditioned: bool, model: str = "model",
                reporter: Reporter | None = None) -> CheckReport:  # fmt: skip
    """Expand every capability, classify its cases in one batched pass, and score them.

    Args:
        suite: the capabilities to run.
        predict: classifies texts (toward targets for a target-conditioned model).
        target_conditioned: whether ``predict`` needs a target per text.
        model: the model's name in the report.
        reporter: progress.

    Returns:
        The report; failures in suite order (capability, template, case).
    """
    reporter = reporter or NullReporter()
    start = time.perf_counter()
    scores: list[CapabilityScore] = []
    runnable: list[tuple[Case, TemplateScore, CapabilityScore]] = []
    for cap in suite.capabilities:
        cases = expand_capability(cap)
        per_template = {id(t): TemplateScore(t) for t in cap.templates}
        score = CapabilityScore(cap.name, cap.description, list(per_template.values()))
        scores.append(score)
        before = len(runnable)
        for case in cases:
            ts = per_template[id(case.template)]
            if (cap.targets and not target_conditioned) or (target_conditioned and case.target is None):
                ts.skipped += 1
            else:
                runnable.append((case, ts, score))
        if len(runnable) == before:
            score.skipped_reason = NEEDS_TARGETS if cap.targets and not target_conditioned else NO_TARGETS
    texts = [c.text for c, _, _ in runnable]
    targets = [c.target or "" for c, _, _ in runnable] if target_conditioned else None
    with reporter.task("check", total=len(texts)) as task:
        probs = predict(texts, targets, task) if texts else np.zeros((0, len(LABELS)), dtype=np.float32)
    for (case, ts, score), p in zip(runnable, probs):
        k = int(np.argmax(p))
        outcome = Outcome(case, LABELS[k], float(p[k]), [float(x) for x in p])
        ts.cases += 1
        if outcome.passed:
            ts.passed += 1
        else:
            score.failures.append(outcome)
    return CheckReport(model, target_conditioned, suite.files, scores, time.perf_counter() - start)


def run_check(
    model: str | None,
    suite: Suite,
    *,
    batch_size: int = 64,
    device: str = "cpu",
    backend: str = "torch",
    reporter: Reporter | None = None,
) -> CheckReport:
    """Find and load the model as ``predict`` does, then score it on ``suite`` (see :func:`score_suite`).

    Args:
        model: a model, LoRA or run folder or a built-in model's name, or None for the fallback of ``predict``
            (``core.runs.find_model``: ``$FINSENT_MODEL``, ``runs/latest``, the shipped default model, said
            through ``reporter.warn``).
        suite: the capabilities to run (``core.check.suite.load_suite``, then ``Suite.select``).
        batch_size: texts per forward pass.
        device: inference device.
        backend: what runs the model (``core.inference.backends``).
        reporter: progress, notes and the default-model warning.

    Returns:
        The report.

    Raises:
        FinsentError: no model, or a model that does not load.
    """
    from finsent_cli.core.inference.loading import load_classifier

    reporter = reporter or NullReporter()
    folder = find_model(model, note=reporter.warn)  # shown with --quiet too, as by predict: not the user's model
    reporter.log(f"loading model {folder}" + (f" (backend {backend})" if backend != "torch" else ""))
    clf = load_classifier(folder, device=device, backend=backend)

    def predict(texts: Sequence[str], targets: Sequence[str] | None, task: Task) -> np.ndarray:
        return clf.predict_proba(texts, batch_size, task, targets)

    return score_suite(suite, predict, target_conditioned=clf.target_conditioned, model=str(folder), reporter=reporter)


def write_report(report: CheckReport, path: str | Path) -> Path:
    """Write the JSON report atomically; returns its path."""
    atomic_write_json(path, report.as_dict())
    return Path(path)
