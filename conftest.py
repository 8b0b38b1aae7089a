"""Pytest setup for the whole repository (unit tests and notebooks run by nbval).

Before anything is imported: the default results folder comes from ``ALSTUDY_RESULTS``, so
neither the tests nor the notebooks executed by nbval write into the repository's results/
(the nbval kernels inherit this environment). Plots render off-screen.
"""

import os
import tempfile

os.environ.setdefault("ALSTUDY_RESULTS", tempfile.mkdtemp(prefix="alstudy-test-results-"))
os.environ.setdefault("MPLBACKEND", "Agg")
