"""Helpers shared by the theory computations (work copies, dtype casts, log-log slopes)."""

from __future__ import annotations

import contextlib
import copy
import warnings
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn


_SAM_EPS = 1e-12  # added to ‖g‖ in the SAM step, as in the SAM/ASAM reference implementations
_MAX_ELEMENTS = 1 << 24  # elements of one per-sample [chunk, d, n] Jacobian block


@contextlib.contextmanager
def _jvp_quiet() -> Iterator[None]:
    """Hide torch's deprecation warning from forward-mode AD decompositions."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script", category=DeprecationWarning)
        yield


def _work_copy(model: nn.Module, dtype: torch.dtype | None) -> nn.Module:
    """An eval-mode deep copy of ``model`` in ``dtype`` (the caller's model is never touched)."""
    work = copy.deepcopy(model)
    if dtype is not None:
        work = work.to(dtype=dtype)
    return work.eval()


def _cast(x: torch.Tensor, dtype: torch.dtype | None, device: torch.device) -> torch.Tensor:
    x = x.to(device)
    return x.to(dtype) if dtype is not None and x.is_floating_point() else x


def fit_loglog_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of ``log y`` against ``log x`` (points with y <= 0 are dropped).

    Args:
        x: Positive abscissae.
        y: Ordinates.

    Returns:
        The slope (``nan`` with fewer than two usable points).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = (x > 0) & (y > 0) & np.isfinite(y)
    if keep.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)[0])


def _corr_row(a: np.ndarray, b: np.ndarray, x: str, y: str) -> dict[str, Any]:
    """Pearson and Spearman correlation of ``a`` and ``b`` as one row ``x, y, pearson, spearman, n``."""
    from scipy.stats import pearsonr, spearmanr

    return {"x": x, "y": y, "pearson": float(pearsonr(a, b)[0]),
            "spearman": float(spearmanr(a, b)[0]), "n": int(len(a))}
