"""The settings of one server and the JSON bodies its endpoints take.

Limits that depend on the settings (texts per request, characters per text) are checked by the endpoints,
not by the schemas, so that one schema serves every configuration; the schemas check types only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

API_KEY_ENV = "FINSENT_API_KEY"
"""The environment variable read when ``--api-key`` is not given."""


@dataclass(frozen=True)
class ServeConfig:
    """How a server behaves (every ``finsent serve`` option but model, host and port).

    Attributes:
        max_texts: most texts in one ``/v1/predict`` request.
        max_chars: most characters in one text.
        max_body_bytes: most bytes in a JSON request body (413 beyond).
        max_upload_bytes: most bytes in an uploaded file (``/v1/predict/file``; 413 beyond).
        max_wait_ms: how long the batcher waits for more requests after the first one of a batch.
        max_batch_tokens: token budget of one gathered batch (the sum of the requests' token counts).
        batching: gather concurrent requests into shared forward passes (off: one pass per request).
        batch_size: most texts per forward pass (length-sorted, as ``predict``).
        batch_tokens: most padded tokens per forward pass (as ``predict --batch-tokens``).
        api_key: required on ``/v1/*`` and ``/metrics`` when set (``Authorization: Bearer KEY`` or ``X-API-Key``).
        cors_origins: origins allowed by CORS (empty: CORS off).
        drain_timeout_s: after SIGTERM, how long in-flight requests may take before the server stops anyway.
        pass_cost: what one forward pass costs beyond its tokens, in padded tokens: a gathered batch is cut
            into the passes that cost the least in all (``core.inference.classifier.plan_passes``); None:
            measured when the server starts (``pass_cost``).
    """

    max_texts: int = 256
    max_chars: int = 5000
    max_body_bytes: int = 1 << 20
    max_upload_bytes: int = 8 << 20
    max_wait_ms: float = 5.0
    max_batch_tokens: int = 16384
    batching: bool = True
    batch_size: int = 64
    batch_tokens: int = 8192
    api_key: str | None = None
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    drain_timeout_s: float = 30.0
    pass_cost: float | None = None

    def problems(self) -> list[str]:
        """What is wrong with these settings (empty when nothing), one line per option."""
        out = []
        for name in ("max_texts", "max_chars", "max_body_bytes", "max_upload_bytes", "max_batch_tokens", "batch_size", "batch_tokens"):
            if getattr(self, name) < 1:
                out.append(f"--{name.replace('_', '-')} must be at least 1")
        if self.max_wait_ms < 0:
            out.append("--max-wait-ms must be at least 0")
        if self.pass_cost is not None and self.pass_cost < 0:
            out.append("pass_cost must be at least 0")
        if self.drain_timeout_s < 0:
            out.append("--drain-timeout must be at least 0")
        if self.api_key is not None and not self.api_key.strip():
            out.append(f"the API key (--api-key or ${API_KEY_ENV}) is empty")
        return out


def api_key_from(given: str | None, env: dict[str, str] | None = None) -> str | None:
    """``--api-key``, else ``$FINSENT_API_KEY``, else None (no key required)."""
    if given is not None:
        return given
    value = (os.environ if env is None else env).get(API_KEY_ENV)
    return value if value else None


class PredictRequest(BaseModel):
    """``POST /v1/predict``: texts to classify, optionally toward one company."""

    model_config = ConfigDict(extra="forbid")

    texts: list[str] = Field(description="The texts, answered one row each, in this order.")
    target: str | None = Field(None, description="The company every text is judged toward (target-conditioned models).")


class ExplainRequest(BaseModel):
    """``POST /v1/explain``: one text to explain by occlusion."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="The text to explain.")
    target: str | None = Field(None, description="The company the sentiment is judged toward (target-conditioned models).")
    top_k: int = Field(3, ge=1, le=50, description="Words scored by comprehensiveness and sufficiency.")
