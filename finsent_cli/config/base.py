"""Building blocks shared by every recipe schema."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationInfo
from pydantic_core import PydanticCustomError

from finsent_cli.core.models import builtin

RawLabel = Annotated[str, BeforeValidator(str)]
"""A raw label value as a map key: YAML's ``0:`` and ``"0":`` mean the same."""


class Schema(BaseModel):
    """Base for recipe sections: unknown keys are errors and a loaded recipe is read-only."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


def _checking(info: ValidationInfo) -> bool:
    """Paths are checked unless the loader says otherwise (``check_paths=False``: schema-only checks)."""
    return not (isinstance(info.context, dict) and info.context.get("check_paths") is False)


INPUT_MISSING = "input_missing"
"""The pydantic error type of an input path that does not exist: the loader tells these apart from other
problems (a ``--dry-run`` lists them with the command that makes each; a real run fails on them as on any)."""


def _missing(what: str, p: Path) -> PydanticCustomError:
    return PydanticCustomError(INPUT_MISSING, "{what} not found: {path}", {"what": what, "path": str(p)})


def _existing_file(p: Path, info: ValidationInfo) -> Path:
    if not _checking(info):
        return p
    if not p.exists():
        raise _missing("file", p)
    if p.is_dir():
        raise ValueError(f"is a folder, expected a file: {p}")
    return p


def _existing_path(p: Path, info: ValidationInfo) -> Path:
    if not _checking(info):
        return p
    if not p.exists():
        raise _missing("path", p)
    return p


InputFile = Annotated[Path, AfterValidator(_existing_file)]
"""A file that must exist when the recipe is loaded."""

InputPath = Annotated[Path, AfterValidator(_existing_path)]
"""A file or folder that must exist when the recipe is loaded."""


def _existing_model(p: Path, info: ValidationInfo) -> Path:
    if not _checking(info):
        return p
    reading = builtin.classify(p)  # the rule every command follows: a built-in's name, or a path
    if reading == "builtin":
        return p
    if reading == "unknown" and builtin.close_to_builtin(p):
        raise ValueError(builtin.unknown_model_message(p))
    if not p.exists():
        raise _missing("path", p)
    return p


ModelPath = Annotated[Path, AfterValidator(_existing_model)]
"""A model, run or adapter folder that must exist when the recipe is loaded, or a built-in model's name
(``news``: see ``core.models.builtin``)."""
