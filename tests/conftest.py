"""Shared fixtures (the environment is set up by the repository's root conftest.py)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _torch_threads():
    """One torch thread per test: the models here are tiny, run fastest single-threaded, and
    results do not depend on how many cores the machine has."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def mnist():
    """300 pool / 50 test real MNIST digits (read-only in the tests)."""
    from alstudy import data

    return data.load("mnist", max_train=300, max_test=50)
