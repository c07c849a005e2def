"""Schema of `finsent select` recipes: how the texts most worth labelling next are scored and picked."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from finsent_cli.config.base import Schema

UNCERTAINTY_MEASURES = ("least_confidence", "margin", "entropy", "normalised")


class Uncertainty(Schema):
    """How unsure the model is of a text (``core.select.scores.uncertainty``)."""

    measure: Literal["least_confidence", "margin", "entropy", "normalised"] = "normalised"
    weight: float = Field(0.6, ge=0)


class Rarity(Schema):
    """The share of a text's words that the tokenizer does not know whole (``core.select.scores.rarity``)."""

    weight: float = Field(0.2, ge=0)


class Outlier(Schema):
    """Distance to the nearest k-means centre of the pool's embeddings (``core.select.scores.outliers``)."""

    weight: float = Field(0.2, ge=0)
    clusters: int = Field(8, ge=1, le=1000)


class Dedup(Schema):
    """What counts as a duplicate of a text already picked (``core.select.scores.pick_diverse``)."""

    by_text: bool = True
    cosine: float | None = Field(0.95, gt=0, le=1)


class SelectRecipe(Schema):
    """Active learning: score every pool text, rank by the weighted score, pick a diverse batch.

    Each component's weight is applied to its rank percentile (so the weights are comparable whatever the
    scale of the raw scores); weight 0 skips the component.
    """

    uncertainty: Uncertainty = Uncertainty()
    rarity: Rarity = Rarity()
    outlier: Outlier = Outlier()
    dedup: Dedup = Dedup()
    batch_size: int = Field(32, ge=1)
    seed: int = 13

    @model_validator(mode="after")
    def _some_weight(self) -> SelectRecipe:
        if self.uncertainty.weight + self.rarity.weight + self.outlier.weight <= 0:
            raise ValueError("weights: uncertainty, rarity and outlier all weigh 0; give one a weight above 0")
        return self

    @property
    def weights(self) -> dict[str, float]:
        """The component weights by name, in output order."""
        return {"uncertainty": self.uncertainty.weight, "rarity": self.rarity.weight, "outlier": self.outlier.weight}

    @property
    def needs_embeddings(self) -> bool:
        """Whether the model's embeddings are needed (outliers, or near-duplicates by cosine)."""
        return self.outlier.weight > 0 or self.dedup.cosine is not None
