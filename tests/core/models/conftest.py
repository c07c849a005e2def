"""Fixtures of the model tests."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(autouse=True)
def _quiet_transformers() -> None:
    """transformers warns about tied/untied weights on every load; the tests check those facts themselves."""
    logging.getLogger("transformers").setLevel(logging.ERROR)
