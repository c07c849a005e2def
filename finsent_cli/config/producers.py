"""Which recipe makes a path: the hint of an input that does not exist yet ("make it with: finsent prep
recipes/prep_corpus.yaml").

Read from the recipes themselves, not from a table: a recipe makes the folder of its top-level
``output_dir``, and every shipped recipe opens with the command that runs it (``# finsent prep
recipes/prep_corpus.yaml``, checked by ``tests/recipes``). The recipes looked at are those beside the recipe
being loaded and those in ``./recipes``; paths compare as the recipes give them, relative to the working
folder, where every command reads and writes them.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable
from pathlib import Path

import yaml

HEADER = re.compile(r"^#\s*(finsent \w+(?: \S+)*?) (\S*?)([^/\s]+\.ya?ml)\s*$")
"""The first line of a recipe: the command, any arguments before the recipe, then the recipe's path."""


def _absolute(path: str | Path) -> str:
    return os.path.normpath(os.path.abspath(os.path.expanduser(str(path))))


def recipe_outputs(folder: Path) -> dict[str, str]:
    """What the recipes in ``folder`` make: their ``output_dir`` (absolute) -> the command that runs each.

    The command names the recipe by its path in ``folder`` as given (``recipes/prep_corpus.yaml`` for the
    folder ``recipes``), so it runs from where the user is. Files that are not recipes (no header, not
    YAML, no plain ``output_dir``) are skipped.
    """
    out: dict[str, str] = {}
    for path in sorted(folder.glob("*.y*ml")):
        try:
            text = path.read_text(encoding="utf-8")
            match = HEADER.match(text.split("\n", 1)[0])
            data = yaml.safe_load(text) if match else None
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        made = data.get("output_dir") if isinstance(data, dict) else None
        if match is None or match.group(3) != path.name or not isinstance(made, str) or "${" in made:
            continue
        out.setdefault(_absolute(made), f"{match.group(1)} {shlex.quote(str(path))}")
    return out


def recipe_folders(recipe: str | Path | None) -> list[Path]:
    """Where to look for the recipes that make a recipe's inputs: its own folder, then ``./recipes``."""
    folders = [Path(recipe).parent] if recipe is not None else []
    folders.append(Path("recipes"))
    seen: set[str] = set()
    out = []
    for folder in folders:
        key = _absolute(folder)
        if key not in seen and folder.is_dir():
            seen.add(key)
            out.append(folder)
    return out


class Producers:
    """The commands that make paths, from the recipes of some folders (read once, when first asked).

    Example::

        make = Producers(recipe_folders("recipes/t5_small.yaml"))
        make("runs/data/corpus")  # 'finsent prep recipes/prep_corpus.yaml'
    """

    def __init__(self, folders: Iterable[Path]) -> None:
        self.folders = list(folders)
        self._outputs: dict[str, str] | None = None

    def __call__(self, path: str | Path) -> str | None:
        """The command of the recipe whose ``output_dir`` is ``path`` or holds it (the closest), or None."""
        if self._outputs is None:
            self._outputs = {}
            for folder in self.folders:
                for made, command in recipe_outputs(folder).items():
                    self._outputs.setdefault(made, command)
        target = _absolute(path)
        holders = [made for made in self._outputs if target == made or target.startswith(made.rstrip(os.sep) + os.sep)]
        return self._outputs[max(holders, key=len)] if holders else None
