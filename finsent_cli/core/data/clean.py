"""Explicit, inspectable text cleaning.

Each step is a named function; :class:`Cleaner` counts how many texts each step changed and keeps a few
before/after examples for the manifest, so what cleaning did can be checked and undone by reading the
``raw_text`` column. Tickers such as ``$AAPL`` are never touched.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from collections import Counter

from finsent_cli.config.prep import Clean

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_HANDLE = re.compile(r"(?<![\w$])@\w{1,30}")
_SPACE = re.compile(r"\s+")
_NON_ALNUM = re.compile(r"[^0-9a-z]+")


def normalised_key(text: str) -> str:
    """Key for near-duplicate detection: case-folded, letters and digits only."""
    return _NON_ALNUM.sub("", text.casefold())


def text_hash(text: str) -> str:
    """SHA-256 hex of :func:`normalised_key`: how runs record their training texts for overlap checks."""
    return hashlib.sha256(normalised_key(text).encode("utf-8")).hexdigest()


class Cleaner:
    """Applies the cleaning steps chosen in a :class:`Clean` recipe section.

    Args:
        cfg: the recipe's ``clean`` section.
        max_examples: before/after examples kept per step.
    """

    def __init__(self, cfg: Clean, max_examples: int = 3) -> None:
        self.cfg = cfg
        self.changed: Counter[str] = Counter()
        self.examples: dict[str, list[dict[str, str]]] = {}
        self.max_examples = max_examples
        self.steps: list[tuple[str, object]] = []
        if cfg.html_entities:
            self.steps.append(("html_entities", html.unescape))
        if cfg.nfkc:
            self.steps.append(("nfkc", lambda t: unicodedata.normalize("NFKC", t)))
        if cfg.urls != "keep":
            url_token = cfg.url_token if cfg.urls == "replace" else " "
            self.steps.append(("urls", lambda t: _URL.sub(url_token, t)))
        if cfg.user_handles != "keep":
            handle_token = cfg.handle_token if cfg.user_handles == "replace" else " "
            self.steps.append(("user_handles", lambda t: _HANDLE.sub(handle_token, t)))
        if cfg.whitespace:
            self.steps.append(("whitespace", lambda t: _SPACE.sub(" ", t).strip()))

    def __call__(self, text: str) -> str:
        """Clean one text."""
        for name, fn in self.steps:
            new = fn(text)  # type: ignore[operator]
            if new != text:
                self.changed[name] += 1
                shown = self.examples.setdefault(name, [])
                if len(shown) < self.max_examples:
                    shown.append({"before": text[:200], "after": new[:200]})
                text = new
        return text

    def report(self) -> dict[str, object]:
        """What each step did: counts of changed texts and examples."""
        return {
            "steps": [name for name, _ in self.steps],
            "changed": dict(self.changed),
            "examples": self.examples,
        }
