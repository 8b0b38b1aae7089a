"""Shared test setup: results go to a temporary folder, plots render off-screen."""

import os
import tempfile

# Before alstudy is imported: the default results_dir comes from this variable, so neither the
# unit tests nor the notebooks executed by nbval write into the repository's results/.
os.environ.setdefault("ALSTUDY_RESULTS", tempfile.mkdtemp(prefix="alstudy-test-results-"))
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _torch_threads():
    """Deterministic, modest threading for every test."""
    torch.set_num_threads(2)
    yield
