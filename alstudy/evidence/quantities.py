"""Named numbers of the registry's quantity claims, computed from a run folder's stored files.

A claim about a named number (a theorem check, a correlation, a cost ratio, a gate) states the
number in words (``compare.quantity``) and the threshold it must meet; the function registered
here under the claim's id computes that number from what the notebook stored (``metrics.csv``,
the theory notebooks' CSVs) — never from anything typed by hand. It returns independent values
(one per seed, round or repeat: a 1-D array), ``{member: array}`` for a family, or rows
``{seed, x, value}`` for a trend; ``None`` when the folder lacks what it needs. Gates are
registered under ``"<claim id>:gate"``.

:func:`compute` calls every registered function of a notebook's claims;
:func:`alstudy.evidence.verdicts.judge_run` passes the values to the decision rules. A claim
whose number has no function here is recorded as ``not_computed``, never guessed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from .. import results
from .claims import Claim

__all__ = ["QUANTITIES", "quantity", "compute", "per_seed_ratio"]

Quantity = Callable[[Path, Mapping[str, Any], Claim], Any]
#: claim id (or ``"<claim id>:gate"``) -> function(run_dir, params, claim) -> values or None.
QUANTITIES: dict[str, Quantity] = {}


def quantity(*claim_ids: str) -> Callable[[Quantity], Quantity]:
    """Decorator: register a function computing the named number of these claims."""
    def wrap(fn: Quantity) -> Quantity:
        for cid in claim_ids:
            if cid in QUANTITIES:
                raise ValueError(f"quantity for claim {cid!r} registered twice")
            QUANTITIES[cid] = fn
        return fn
    return wrap


def compute(notebook: str, run_dir: str | Path, params: Mapping[str, Any],
            claims: Sequence[Claim]) -> dict[str, Any]:
    """Values of every registered quantity (and gate) of ``claims`` for one run folder.

    Args:
        notebook: The notebook (unused by most functions; kept for the record).
        run_dir: The run folder.
        params: The run's parameters.
        claims: The claims to compute for.

    Returns:
        ``{claim id: values}`` and ``{"<claim id>:gate": values}`` for those computable here.
    """
    run_dir = Path(run_dir)
    out: dict[str, Any] = {}
    for claim in claims:
        for key in (claim.id, f"{claim.id}:gate"):
            fn = QUANTITIES.get(key)
            if fn is not None:
                value = fn(run_dir, params, claim)
                if value is not None:
                    out[key] = value
    return out


def _metrics(run_dir: Path) -> pd.DataFrame | None:
    path = run_dir / "metrics.csv"
    return results.read_metrics(path) if path.exists() else None


def per_seed_ratio(frame: pd.DataFrame, a, b, metrics: Sequence[str], *, column: str = "strategy",
                   skip_first: bool = False) -> np.ndarray:
    """Per seed: median over cycles of the summed ``metrics`` of arm ``a`` over the same of ``b``.

    Args:
        frame: Tidy results holding both arms.
        a, b: Arms (values of ``column``).
        metrics: Timing metrics summed per cycle (e.g. ``select_seconds``, ``train_seconds``).
        column: Column naming the arms.
        skip_first: Drop each arm's first timed cycle (warm-up: imports, allocator, caches).

    Returns:
        One ratio per seed both arms have ``[n_seeds]``.
    """
    sub = frame[frame["metric"].isin(list(metrics)) & frame[column].isin([a, b])]
    per = sub.groupby([column, "seed", "cycle"])["value"].sum().reset_index()
    if skip_first:
        first = per.groupby([column, "seed"])["cycle"].transform("min")
        per = per[per["cycle"] > first]
    med = per.groupby([column, "seed"])["value"].median().unstack(column)
    if a not in med or b not in med:
        return np.array([])
    med = med[[a, b]].dropna()
    return (med[a] / med[b]).to_numpy(float)


@quantity("ns.abstract.efficient_pipeline")
def _ns_cycle_cost(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """Per baseline: per-seed median over cycles of NoiseStability's (select + train) seconds over its."""
    frame = _metrics(run_dir)
    if frame is None:
        return None
    cmp = claim.compare
    out = {}
    for b in (cmp.b if isinstance(cmp.b, (list, tuple)) else [cmp.b]):
        ratio = per_seed_ratio(frame, cmp.a, b, ["select_seconds", "train_seconds"])
        if ratio.size:
            out[b] = ratio
    return out or None
