"""`finsent explain`'s plain-Python twin: pick the model, load it, explain one text.

Methods plug in by name in :data:`METHODS`; ``occlusion`` (``--mask-tokens``: mask each word in turn) is
the one finsent has today.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from finsent_cli.core.explain.occlusion import Explanation, explain_occlusion
from finsent_cli.core.inference.loading import load_classifier
from finsent_cli.core.progress import NullReporter, Reporter
from finsent_cli.core.runs import find_model
from finsent_cli.errors import FinsentError

METHODS = {"occlusion": explain_occlusion}


def explain_text(
    text: str,
    model: str | Path | None = None,
    *,
    method: str = "occlusion",
    top_k: int = 3,
    mask_mode: str = "mask",
    batch_size: int | None = None,
    device: str = "cpu",
    env: Mapping[str, str] | None = None,
    runs_dir: str | Path = "runs",
    reporter: Reporter | None = None,
    target: str | None = None,
) -> Explanation:
    """Explain the prediction for ``text``.

    Args:
        text: the text.
        model: model/run folder; else ``$FINSENT_MODEL``, else ``runs/latest`` (see ``core.runs.resolve_model``).
        method: a key of :data:`METHODS`.
        top_k: words scored by comprehensiveness and sufficiency.
        mask_mode: ``mask`` or ``delete`` (occlusion).
        batch_size: variants per forward pass (None: all at once).
        device: inference device.
        env: environment for ``$FINSENT_MODEL`` (default ``os.environ``).
        runs_dir: where ``latest`` is looked for.
        reporter: log lines and warnings.
        target: the company the sentiment is judged toward (target-conditioned models).

    Returns:
        The explanation.

    Raises:
        FinsentError: empty text, unknown method, no or bad model.
    """
    reporter = reporter or NullReporter()
    if not text.strip():
        raise FinsentError("nothing to explain: TEXT is empty")
    if method not in METHODS:
        raise FinsentError(f"unknown explanation method '{method}' (choose {', '.join(METHODS)})", exit_code=2)
    folder = find_model(model, env, runs_dir, note=reporter.warn)  # shown even by the quiet CLI: not the model the user trained
    reporter.log(f"loading {folder}")
    clf = load_classifier(folder, device=device)
    exp = METHODS[method](clf, text, top_k=top_k, mode=mask_mode, batch_size=batch_size, target=target)
    if exp.truncated:
        reporter.warn(f"text truncated; not scored: {' '.join(exp.skipped)}")
    return exp
