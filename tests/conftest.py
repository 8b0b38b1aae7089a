"""Shared fixtures (the environment is set up by the repository's root conftest.py)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _torch_threads():
    """Deterministic, modest threading for every test."""
    torch.set_num_threads(2)
    yield
