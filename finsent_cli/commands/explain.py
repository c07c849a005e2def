"""`finsent explain "TEXT" --mask-tokens`: which words drive one prediction (word occlusion)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from finsent_cli import ui
from finsent_cli.commands.options import DeviceOpt, ModelOpt, guarded
from finsent_cli.core.explain.occlusion import Explanation, explain_occlusion, explanation_to_dict, explanation_to_html
from finsent_cli.core.io import atomic_write_text
from finsent_cli.core.models.classifier import load_classifier
from finsent_cli.core.predict.run import resolve_model
from finsent_cli.errors import FinsentError

FORMATS = ("rich", "json", "html")
_GREENS = ("", "rgb(187,247,208)", "rgb(134,239,172)", "rgb(74,222,128)", "rgb(22,163,74)")  # toward the prediction
_REDS = ("", "rgb(254,202,202)", "rgb(252,165,165)", "rgb(248,113,113)", "rgb(220,38,38)")  # against it


def render_rich(exp: Explanation) -> None:
    """The text with each word coloured by its effect, then the word table."""
    from rich.text import Text

    scale = max((abs(w.delta) for w in exp.words), default=0.0) or 1.0
    line, cursor = Text(), 0
    for w in exp.words:
        line.append(exp.text[cursor : w.start])
        level = round(min(1.0, abs(w.delta) / scale) * 4)  # 0 (no colour) .. 4 (strongest)
        shades = _GREENS if w.delta >= 0 else _REDS
        line.append(w.word, style=f"black on {shades[level]}" if level else "")
        cursor = w.end
    line.append(exp.text[cursor:])
    probs = "  ".join(f"{k} {v:.3f}" for k, v in exp.probs.items())
    ui.console.print(f"[bold]{exp.label}[/]  ({probs})")
    ui.console.print(line)
    ui.console.print("[dim]green pushes toward the predicted class, red against it[/]")
    rows = [[w.word, w.p_without, f"{w.delta:+.4f}"] for w in sorted(exp.words, key=lambda w: -w.delta)]
    ui.console.print(ui.table(f"occlusion ({exp.mask_mode})", ["word", f"p({exp.label}) without", "delta"], rows))
    ui.console.print(
        f"top {len(exp.top_k)} ({', '.join(exp.top_k)}): comprehensiveness {exp.comprehensiveness:.4f} (higher = more "
        f"faithful), sufficiency {exp.sufficiency:.4f} (lower = more faithful)"
    )


@guarded
def explain_cmd(
    text: Annotated[str, typer.Argument(help="The text to explain.", show_default=False)],
    model: ModelOpt = None,
    mask_tokens: Annotated[bool, typer.Option("--mask-tokens", help="Occlusion: mask each word in turn (the only method for now).")] = True,
    mask_mode: Annotated[str, typer.Option("--mask-mode", help="mask (mask/unk token, same length) or delete (drop the pieces).")] = "mask",
    top_k: Annotated[int, typer.Option("--top-k", help="Words scored by comprehensiveness and sufficiency.")] = 3,
    format: Annotated[str, typer.Option("--format", "-f", help=f"Output: {', '.join(FORMATS)}.")] = "rich",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write json/html here (atomically).", show_default=False)] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, help="Variants per forward pass (default: all at once).", show_default=False)] = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Explain one prediction: the effect of masking each word, and the faithfulness of the top words."""
    if format not in FORMATS:
        raise FinsentError(f"unknown --format '{format}' (choose {', '.join(FORMATS)})", exit_code=2)
    if format == "rich" and output is not None:
        raise FinsentError("--output needs --format json or html", exit_code=2)
    if not text.strip():
        raise FinsentError("nothing to explain: TEXT is empty")
    model_path, _ = resolve_model(model)
    exp = explain_occlusion(load_classifier(model_path, device=device), text, top_k=top_k, mode=mask_mode, batch_size=batch_size)
    if exp.truncated:
        ui.err_console.print(f"[yellow]warning:[/] text truncated; not scored: {' '.join(exp.skipped)}")
    if format == "rich":
        render_rich(exp)
        return
    if format == "json":
        body = json.dumps(explanation_to_dict(exp), indent=2, ensure_ascii=False) + "\n"
    else:
        body = explanation_to_html(exp)
    if output is None:
        typer.echo(body, nl=False)
        return
    atomic_write_text(output, body)
    ui.err_console.print(f"wrote {output}")
