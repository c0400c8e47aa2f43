"""Shared fixtures: chat/plain completion helpers for the reward tests."""

import pytest


@pytest.fixture(scope="session")
def verifier_opts():
    """One shared pool for all accuracy-based tests (2 workers, short limit)."""
    return {"timeout": 2.0, "workers": 2}
