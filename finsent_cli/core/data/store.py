"""Reading and writing prepared splits (Parquet or JSONL) and loading examples for training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from finsent_cli.core.io import atomic_write_bytes
from finsent_cli.errors import FinsentError


def write_split(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write rows to ``path`` (``.parquet`` or ``.jsonl``) atomically."""
    if path.suffix == ".parquet":
        import io

        import pyarrow as pa
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows), buf)
        atomic_write_bytes(path, buf.getvalue())
    else:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        atomic_write_bytes(path, text.encode("utf-8"))


def read_split(path: Path) -> list[dict[str, Any]]:
    """Read a split written by :func:`write_split`.

    Raises:
        FinsentError: missing or unreadable.
    """
    if not path.exists():
        raise FinsentError(f"{path}: file not found")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_prepared(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """All splits of a folder written by ``finsent prep`` (labelled), keyed by split name.

    Raises:
        FinsentError: not a prepared labelled folder.
    """
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.exists():
        raise FinsentError(f"{folder}: not a prepared data folder (no manifest.json); run finsent prep first")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FinsentError(f"{manifest_path}: not valid JSON ({exc.__class__.__name__}); run finsent prep again") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise FinsentError(f"{manifest_path}: not a finsent prep manifest; run finsent prep again")
    if manifest.get("kind") != "labelled":
        raise FinsentError(f"{folder}: holds a '{manifest.get('kind')}' corpus, expected labelled data")
    return {name: read_split(folder / fname) for name, fname in manifest["files"].items()}
