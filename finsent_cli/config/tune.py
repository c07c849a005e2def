"""Schema of the ``tune:`` section of a training recipe (`finsent tune`, ``core.flows.tune``).

A search space names recipe keys with dots, as overrides do::

    tune:
      trials: 20
      space:
        optim.lr: {low: 1.0e-5, high: 3.0e-4, log: true}   # a float, log-uniform
        train.epochs: {low: 2, high: 6}                      # an integer
        train.batch_size: [16, 32, 64]                       # a choice (short for {choices: [...]})

The metric is a validation metric of the training recipe (``train.metric`` by default): the test split
never chooses anything. The study lives in ``<output_dir>/study.db`` (SQLite) unless ``storage`` names a
database that several machines share (``postgresql://user@host:5432/db``; ``finsent tune --storage`` wins).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from finsent_cli.config.base import Schema

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> float | None:
    """Seconds in ``90``, ``"90s"``, ``"45m"``, ``"2h"``, ``"1.5d"``; None stays None.

    Raises:
        ValueError: anything else, or a duration that is not positive.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 90s, 45m or 2h (got {value!r})")  # noqa: TRY004 - pydantic reports ValueError
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(f"expected a duration such as 90s, 45m or 2h (got {value!r})")
        seconds = float(m.group(1)) * _SECONDS[m.group(2) or "s"]
    if seconds <= 0:
        raise ValueError(f"a duration must be positive (got {value!r})")
    return seconds


def _choices_shorthand(value: Any) -> Any:
    return {"choices": value} if isinstance(value, list) else value


class ParamSpec(Schema):
    """One searched key: a ``float`` in ``[low, high]`` (``log: true`` samples log-uniformly, ``step``
    discretises), an ``int`` in ``[low, high]``, or a ``categorical`` choice among ``choices`` (any YAML
    values, lists included). ``type`` may be left out: ``choices`` mean categorical, two whole numbers
    an int, anything else a float."""

    type: Literal["float", "int", "categorical"] | None = None
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: int | float | None = Field(None, gt=0)
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ParamSpec:
        kind = self.kind
        if kind == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty list of choices")
            if self.low is not None or self.high is not None or self.log or self.step is not None:
                raise ValueError("give choices, or low and high, not both")
            texts = [repr(c) for c in self.choices]
            twice = sorted({t for t in texts if texts.count(t) > 1})
            if twice:
                raise ValueError(f"choice {twice[0]} is given twice")
            return self
        if self.choices is not None:
            raise ValueError(f"a {kind} parameter takes low and high, not choices")
        if self.low is None or self.high is None:
            raise ValueError(f"a {kind} parameter needs low and high (or give choices: [...])")
        if not self.low < self.high:
            raise ValueError(f"low must be below high (got low {self.low}, high {self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low > 0 (got {self.low})")
        if self.log and self.step is not None:
            raise ValueError("give log or step, not both")
        if kind == "int" and not all(float(v).is_integer() for v in (self.low, self.high, self.step or 1)):
            raise ValueError("an int parameter needs whole numbers for low, high and step")
        return self

    @property
    def kind(self) -> str:
        """``float``, ``int`` or ``categorical`` (``type``, or what the other keys imply)."""
        if self.type is not None:
            return self.type
        if self.choices is not None:
            return "categorical"
        whole = all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high))
        return "int" if whole and not self.log and not isinstance(self.step, float) else "float"

    def values_to_check(self) -> list[Any]:
        """Values that the recipe must accept at this key before any trial runs: the ends, or every choice."""
        if self.kind == "categorical":
            return list(self.choices or [])
        if self.kind == "int":
            return [int(self.low), int(self.high)]  # type: ignore[arg-type]
        # a point between the ends too: an int key given a float range accepts 1.0 and 5.0, not 2.48
        inside = float(self.low) + 0.37 * (float(self.high) - float(self.low))  # type: ignore[arg-type]
        return [float(self.low), float(self.high), inside]  # type: ignore[arg-type]


Param = Annotated[ParamSpec, BeforeValidator(_choices_shorthand)]


class TuneCfg(Schema):
    """``finsent tune``: Optuna's TPE sampler (Bergstra et al. 2011) or random search over ``space``, trials
    stopped early by Hyperband (Li et al. 2018), the median rule, or nothing.

    ``trials`` is the size of the study (an interrupted or shared study counts the trials it has);
    ``timeout`` stops starting new trials after a duration (``45m``, ``2h``); ``startup_trials`` are
    sampled at random before TPE models the results, and are never pruned by the median rule.

    ``storage`` is any SQLAlchemy URL Optuna accepts (default: SQLite in ``<output_dir>/study.db``) and
    ``study_name`` the study's name in it (default: the output folder's name, so machines running the same
    recipe meet in one study). A running trial records a heartbeat every ``heartbeat_interval``; one silent
    for ``grace_period`` (default twice the interval) is taken for dead, by any process of the study on any
    machine, and queued again.
    """

    space: dict[str, Param] = Field(min_length=1)
    metric: str | None = None
    direction: Literal["maximize", "minimize"] | None = None
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: Literal["hyperband", "median", "none"] = "hyperband"
    trials: int = Field(20, ge=1)
    timeout: float | None = None
    startup_trials: int = Field(5, ge=0)
    seed: int = Field(13, ge=0)
    storage: str | None = Field(None, min_length=1)
    study_name: str | None = Field(None, min_length=1, max_length=512)  # Optuna's column is 512 characters
    heartbeat_interval: float = 60.0
    grace_period: float | None = None

    @field_validator("timeout", "heartbeat_interval", "grace_period", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float | None:
        return parse_duration(v)

    @model_validator(mode="after")
    def _grace(self) -> TuneCfg:
        # a grace period no longer than the interval would take every live trial for dead between two beats
        if self.grace_period is not None and self.grace_period <= self.heartbeat_interval:
            raise ValueError(
                f"grace_period ({self.grace_period:g} s) must be longer than heartbeat_interval "
                f"({self.heartbeat_interval:g} s), e.g. twice it"
            )
        return self

    @property
    def grace(self) -> float:
        """Seconds without a heartbeat after which a running trial is taken for dead."""
        return self.grace_period if self.grace_period is not None else 2 * self.heartbeat_interval

    @field_validator("space")
    @classmethod
    def _keys(cls, v: dict[str, ParamSpec]) -> dict[str, ParamSpec]:
        for key in v:
            if not key or any(not part for part in key.split(".")):
                raise ValueError(f"{key!r} is not a dotted recipe key such as optim.lr")
            head = key.split(".", 1)[0]
            if key == "train.mixed_precision":
                raise ValueError("train.mixed_precision cannot be tuned: accelerate fixes it once per process")
            if head in ("output_dir", "tune"):
                raise ValueError(
                    f"{key} cannot be tuned ({'each trial gets its own folder' if head == 'output_dir' else 'the search space does not search itself'})"
                )
        return v
