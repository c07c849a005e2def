"""T5 configuration and named sizes.

The layout is T5 v1.1 (Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified
Text-to-Text Transformer", arXiv 1910.10683, and the v1.1 release notes): gated-GELU feed-forward,
untied input/output embeddings, no output scaling. ``variant="original"`` gives the 2020 layout
(ReLU feed-forward, tied embeddings, logits scaled by d_model^-0.5).

The config is a small frozen dataclass rather than ``transformers.T5Config`` so that it is read-only
and validated once; ``to_hf_dict`` / ``from_hf_dict`` convert it to and from the ``config.json`` that
Hugging Face writes, field names unchanged, so folders load both ways.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

# feed_forward_proj suffix -> activation. "gated-gelu" means the tanh approximation, as in the
# Hugging Face port of v1.1 ("gelu_new"); a plain "gelu" is the exact erf form.
_ACTIVATIONS = ("relu", "gelu", "gelu_new", "silu")


@dataclass(frozen=True)
class FinT5Config:
    """Hyperparameters of a T5 encoder-decoder.

    Field names follow ``transformers.T5Config`` so ``config.json`` round-trips unchanged.

    Args:
        vocab_size: size of the shared token embedding.
        d_model: width of the residual stream.
        d_kv: width of one attention head.
        d_ff: hidden width of the feed-forward block (per branch when gated).
        num_layers: encoder blocks.
        num_decoder_layers: decoder blocks; ``None`` means the same as ``num_layers``.
        num_heads: attention heads per layer.
        relative_attention_num_buckets: buckets of the relative position bias.
        relative_attention_max_distance: distance beyond which all offsets share the last bucket.
        dropout_rate: dropout on residual branches, attention weights and the feed-forward hidden layer.
        layer_norm_epsilon: RMSNorm epsilon.
        initializer_factor: multiplies every init std (1.0 as in T5).
        feed_forward_proj: ``"relu"``, ``"gelu"``, ``"silu"`` or a ``"gated-"`` form of these.
        tie_word_embeddings: the LM head reuses the input embedding matrix.
        scale_decoder_outputs: multiply the decoder output by d_model^-0.5 before the LM head;
            ``None`` means "same as tie_word_embeddings" (the original T5 convention).
        pad_token_id: padding id, also the label value replaced when shifting labels right.
        eos_token_id: end-of-sequence id; greedy decoding stops a row once it emits it.
        decoder_start_token_id: first decoder input (T5 uses the pad id).

    Raises:
        ValueError: on a non-positive size or an unknown ``feed_forward_proj``.
    """

    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 1024
    num_layers: int = 6
    num_decoder_layers: int | None = None
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout_rate: float = 0.0
    layer_norm_epsilon: float = 1e-6
    initializer_factor: float = 1.0
    feed_forward_proj: str = "gated-gelu"
    tie_word_embeddings: bool = False
    scale_decoder_outputs: bool | None = None
    pad_token_id: int = 0
    eos_token_id: int = 1
    decoder_start_token_id: int = 0

    def __post_init__(self) -> None:
        if self.num_decoder_layers is None:
            object.__setattr__(self, "num_decoder_layers", self.num_layers)
        if self.scale_decoder_outputs is None:
            object.__setattr__(self, "scale_decoder_outputs", self.tie_word_embeddings)
        sizes = ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads")
        bad = [f"{name}={getattr(self, name)}" for name in sizes if int(getattr(self, name)) <= 0]
        if bad:
            raise ValueError(f"T5 sizes must be positive, got {', '.join(bad)}")
        # the decoder's exact range is num_buckets // 2 offsets; the log-spaced buckets need room above it
        buckets, max_distance = self.relative_attention_num_buckets, self.relative_attention_max_distance
        if buckets < 4 or max_distance <= buckets // 2:
            raise ValueError(
                "relative_attention_num_buckets must be >= 4 and relative_attention_max_distance > num_buckets // 2, "
                f"got {self.relative_attention_num_buckets} and {self.relative_attention_max_distance}"
            )
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {self.dropout_rate}")
        self.activation  # validates feed_forward_proj

    # ------------------------------------------------------------------ derived
    @property
    def is_gated(self) -> bool:
        """True for the gated feed-forward of T5 v1.1 (two input projections)."""
        return self.feed_forward_proj.startswith("gated-")

    @property
    def activation(self) -> str:
        """Activation name of the feed-forward block, as Hugging Face resolves it."""
        parts = self.feed_forward_proj.split("-")
        if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated") or parts[-1] not in _ACTIVATIONS:
            raise ValueError(
                f"feed_forward_proj={self.feed_forward_proj!r} is not supported; use one of "
                f"{', '.join(_ACTIVATIONS)} or 'gated-' plus one of them (T5 v1.1 uses 'gated-gelu')"
            )
        if self.feed_forward_proj == "gated-gelu":
            return "gelu_new"
        return parts[-1]

    @property
    def inner_dim(self) -> int:
        """num_heads * d_kv: the output width of the q/k/v projections."""
        return self.num_heads * self.d_kv

    @property
    def slim_self_attention_ok(self) -> bool:
        """Slim self-attention inverts W_K, which needs d_model == num_heads * d_kv."""
        return self.d_model == self.inner_dim

    def replace(self, **overrides: Any) -> "FinT5Config":
        """Return a copy with some fields changed.

        Raises:
            ValueError: when an override names no field (lists the valid ones).
        """
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"unknown T5 config field(s) {unknown}; valid fields: {sorted(names)}")
        return dataclasses.replace(self, **overrides)

    # ------------------------------------------------------------------ Hugging Face
    def to_hf_dict(self) -> dict[str, Any]:
        """The ``config.json`` contents that ``T5ForConditionalGeneration.from_pretrained`` reads.

        ``tie_word_embeddings`` and ``scale_decoder_outputs`` are both written: transformers 4.x reads
        the first, 5.x keeps the second (and always ties unless the checkpoint holds a distinct
        ``lm_head.weight``).
        """
        out: dict[str, Any] = {
            "architectures": ["T5ForConditionalGeneration"],
            "model_type": "t5",
            "is_encoder_decoder": True,
            "use_cache": True,
        }
        for f in dataclasses.fields(self):
            out[f.name] = getattr(self, f.name)
        out["dense_act_fn"] = self.activation
        out["is_gated_act"] = self.is_gated
        return out

    @classmethod
    def from_hf_dict(cls, data: dict[str, Any]) -> "FinT5Config":
        """Build from a Hugging Face T5 ``config.json`` dict; unknown keys are ignored.

        Raises:
            ValueError: when a required size is missing or invalid.
        """
        required = ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads")
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(f"config.json lacks T5 field(s) {missing}")
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names and v is not None}
        eos = kwargs.get("eos_token_id")
        if isinstance(eos, list):
            kwargs["eos_token_id"] = eos[0]
        tie = bool(data.get("tie_word_embeddings", True))
        kwargs["tie_word_embeddings"] = tie
        kwargs["scale_decoder_outputs"] = bool(data.get("scale_decoder_outputs", tie))
        return cls(**kwargs)


# ---------------------------------------------------------------------- named sizes
def _variant(variant: str) -> dict[str, Any]:
    if variant == "v1.1":
        return {"feed_forward_proj": "gated-gelu", "tie_word_embeddings": False}
    if variant == "original":
        return {"feed_forward_proj": "relu", "tie_word_embeddings": True}
    raise ValueError(f"unknown T5 variant {variant!r}; use 'v1.1' or 'original'")


def t5_tiny_config(variant: str = "v1.1", **overrides: Any) -> FinT5Config:
    """CPU-friendly size: d_model 256, 4+4 layers, 4 heads of 64, d_ff 512 (about 20M params with the T5 vocab)."""
    base = FinT5Config(d_model=256, d_kv=64, d_ff=512, num_layers=4, num_heads=4, **_variant(variant))
    return base.replace(**overrides)


def t5_small_config(variant: str = "v1.1", **overrides: Any) -> FinT5Config:
    """finsent's small: d_model 512, d_ff 1024 (gated), 8 heads of 64 (square W_K: slim attention
    applies), 6+6 layers. Google's v1.1 small shapes are :func:`t5_v1_1_small_config`."""
    base = FinT5Config(d_model=512, d_kv=64, d_ff=1024, num_layers=6, num_heads=8, **_variant(variant))
    return base.replace(**overrides)


def t5_v1_1_small_config(variant: str = "v1.1", **overrides: Any) -> FinT5Config:
    """Google's T5 v1.1 small exactly: d_model 512, d_ff 1024 (gated), 6 heads of 64, 8+8 layers.

    num_heads * d_kv = 384 != d_model, so W_K is not square and decoding uses the full self-attention
    cache (slim attention needs a square W_K; finsent's ``t5_small`` keeps 8 heads of 64 for that).
    """
    base = FinT5Config(d_model=512, d_kv=64, d_ff=1024, num_layers=8, num_heads=6, **_variant(variant))
    return base.replace(**overrides)


def t5_base_config(variant: str = "v1.1", **overrides: Any) -> FinT5Config:
    """T5 v1.1 base: d_model 768, d_ff 2048 (gated), 12 heads of 64, 12+12 layers."""
    base = FinT5Config(d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_heads=12, **_variant(variant))
    return base.replace(**overrides)


T5_SIZES: dict[str, Callable[..., FinT5Config]] = {
    "t5_tiny": t5_tiny_config,
    "t5_small": t5_small_config,
    "t5_v1_1_small": t5_v1_1_small_config,
    "t5_base": t5_base_config,
}


def t5_config(name: str, **overrides: Any) -> FinT5Config:
    """Config of a named size with overrides (what a recipe's ``model:`` section resolves to).

    Args:
        name: ``"t5_tiny"``, ``"t5_small"``, ``"t5_v1_1_small"`` or ``"t5_base"`` (the ``t5_`` prefix may be left out).
        **overrides: ``variant`` (``"v1.1"`` or ``"original"``) or any ``FinT5Config`` field.

    Returns:
        The frozen config.

    Raises:
        ValueError: unknown size name or unknown field.
    """
    key = name if name.startswith("t5_") else f"t5_{name}"
    if key not in T5_SIZES:
        raise ValueError(f"unknown T5 size {name!r}; choose one of {sorted(T5_SIZES)}")
    return T5_SIZES[key](**overrides)
