"""Fixtures of the integration tests (shared ones are in ``tests/conftest.py``)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _heal(request: pytest.FixtureRequest):
    """A module's partner simulator (its ``sim`` fixture, shared by the module) is healed after each test."""
    yield
    if "sim" in request.fixturenames:
        request.getfixturevalue("sim").reset()
