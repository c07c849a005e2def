"""The ``model`` section of training recipes: one schema per model kind, chosen by the ``kind`` key.

Each kind registered in ``finsent_cli.core.models.registry`` has its schema here (a test checks that the
two lists agree). A recipe without ``kind`` means ``hf_encoder``, the only kind older recipes knew.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from finsent_cli.config.base import Schema

DEFAULT_KIND = "hf_encoder"


class LoraCfg(Schema):
    """LoRA adapter (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models")."""

    r: int = Field(8, ge=1, le=1024)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: ["query", "value"], min_length=1)


class HFEncoderCfg(Schema):
    """Kind ``hf_encoder``: a Hugging Face encoder, a classification head, and an optional LoRA adapter.

    ``backbone`` is a local Hugging Face folder, a hub name, or the alias ``minilm``. ``pooling`` is
    ``first`` (hidden state of the first token) or ``mean`` (masked mean over tokens, how MiniLM
    sentence embeddings were trained). ``class_weights``: ``none``, ``balanced`` (n / (3 * count)) or
    three numbers in label order negative, neutral, positive.
    """

    kind: Literal["hf_encoder"] = "hf_encoder"
    backbone: str
    pooling: Literal["first", "mean"] = "mean"
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    backbone_dropout: float | None = Field(None, ge=0.0, lt=1.0)
    class_weights: Literal["none", "balanced"] | list[float] = "none"
    adapter: Literal["none", "lora"] = "none"
    lora: LoraCfg = Field(default_factory=LoraCfg)
    max_length: int = Field(128, ge=8, le=8192)

    @model_validator(mode="before")
    @classmethod
    def _old_head_key(cls, data: Any) -> Any:
        # Recipes written before model kinds said `head: classification`, which kind hf_encoder now implies.
        if isinstance(data, dict) and "head" in data:
            if data["head"] != "classification":
                raise ValueError(f"model.head: {data['head']!r} is not a head of kind hf_encoder (only classification)")
            data = {k: v for k, v in data.items() if k != "head"}
        return data

    @field_validator("class_weights")
    @classmethod
    def _three_weights(cls, v: str | list[float]) -> str | list[float]:
        if isinstance(v, list) and (len(v) != 3 or any(w <= 0 for w in v)):
            raise ValueError("give 3 positive weights (negative, neutral, positive), 'balanced' or 'none'")
        return v


MODEL_SCHEMAS: dict[str, type[Schema]] = {"hf_encoder": HFEncoderCfg}
"""Model kind -> schema of its recipe section."""


def _kind_of(value: Any) -> str | None:
    if isinstance(value, dict):
        return str(value.get("kind", DEFAULT_KIND))
    return getattr(value, "kind", None)


ModelCfg = Annotated[
    Union[tuple(Annotated[schema, Tag(kind)] for kind, schema in MODEL_SCHEMAS.items())],  # noqa: UP007
    Discriminator(_kind_of),
]
"""The ``model`` section: the schema of the kind named by ``kind`` (default ``hf_encoder``)."""
