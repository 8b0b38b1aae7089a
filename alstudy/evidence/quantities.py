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


# ---- SAAL (Kim et al., ICML 2023) --------------------------------------------------------------
#
# Theory notebook (theory_saal_bound): margins.csv and bound_terms.csv, one row per (ρ, example).
# AL notebooks: the per-cycle rows of metrics.csv (cycle metrics pseudo_label_margin, bound_terms).
# saal_timing: timing.csv of alstudy.timing.round_timing (interleaved repeats, warm-up flagged) and
# scoring_speed.csv; saal_paper_vs_official: score_correlations.csv.
#
# A claim that a statement holds for *every* example (a share that must be 1, a margin that must be
# 0) is one number over all the examples the run sampled: one violation anywhere refutes it, so it
# is returned as a single value (a point check), not as per-round shares a t-test would average.

_SAAL_RHO = 0.05  # the paper's radius, named in the claims' quantities
_SAAL_MIN_GROUP = 5  # examples per group for correlations over disjoint groups
_SAAL_GROUPS = 10
_SAAL_ADAM, _SAAL_SAM = "adam", "sam"


def _saal_csv(run_dir: Path, name: str) -> pd.DataFrame | None:
    path = Path(run_dir) / name
    return pd.read_csv(path) if path.exists() else None


def _saal_at_rho(frame: pd.DataFrame | None, rho: float = _SAAL_RHO) -> pd.DataFrame | None:
    if frame is None:
        return None
    sub = frame[np.isclose(frame["rho"].astype(float), rho)]
    return None if sub.empty else sub


def _saal_labels(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _saal_cycle_values(run_dir: Path, arm: Any, metric: str) -> np.ndarray | None:
    """Values of a per-cycle metric of one strategy label, one per (seed, cycle) ``[n]``."""
    frame = _metrics(run_dir)
    if frame is None:
        return None
    sub = frame[(frame["strategy"] == arm) & (frame["metric"] == metric)]
    return None if sub.empty else sub.sort_values(["seed", "cycle"])["value"].to_numpy(float)


@quantity("saal.thm3_1.pseudo_label_lower_bound")
def _saal_eq7_share(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """Per ρ: share of the examples of ``margins.csv`` satisfying Eq 7 (column ``thm31``).

    ``thm31``: the pseudo-label maximum (SAM step) ≤ the larger of two lower estimates of the
    true-label maximum + δ_x (:func:`alstudy.theory.saal_margins`). One share per ρ (a point check:
    the theorem holds for every example).
    """
    margins = _saal_csv(run_dir, "margins.csv")
    if margins is None:
        return None
    return {f"rho={rho:g}": np.array([g["thm31"].astype(bool).mean()]) for rho, g in margins.groupby("rho")}


@quantity("saal.prop3_2.zero_margin_when_kept")
def _saal_max_delta_kept(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """Per ρ: the largest δ_x among the examples of ``margins.csv`` whose perturbed prediction keeps ŷ."""
    margins = _saal_csv(run_dir, "margins.csv")
    if margins is None:
        return None
    out = {}
    for rho, g in margins.groupby("rho"):
        kept = g[g["kept"].astype(bool)]
        if len(kept):
            out[f"rho={rho:g}"] = np.array([kept["delta"].max()])
    return out or None


def _saal_group_spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's ρ of (x, y) within each of up to 10 disjoint groups of consecutive examples."""
    from scipy import stats as sps

    k = max(1, min(_SAAL_GROUPS, len(x) // _SAAL_MIN_GROUP))
    parts = zip(np.array_split(np.asarray(x, float), k), np.array_split(np.asarray(y, float), k))
    with np.errstate(invalid="ignore"):
        return np.array([sps.spearmanr(a, b).statistic for a, b in parts], dtype=float)


@quantity("saal.sec3_2.pseudo_scores_track_true")
def _saal_pseudo_true_spearman(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """Spearman correlation of ``score_pseudo`` with ``score_true`` at ρ = 0.05 (``margins.csv``).

    The examples are a random sample of the pool, so disjoint groups of them are independent:
    one correlation per group (10 groups of at least 5 examples, fewer groups for fewer examples),
    on which the engine puts its interval.
    """
    margins = _saal_at_rho(_saal_csv(run_dir, "margins.csv"))
    if margins is None:
        return None
    margins = margins.sort_values("sample")
    return _saal_group_spearman(margins["score_pseudo"].to_numpy(), margins["score_true"].to_numpy())


@quantity("saal.thm3_3.bound_with_remainder")
def _saal_remainder_order(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """Median over examples of the order in ρ of the Taylor remainder R₃ (``bound_terms.csv``).

    Each example's order is ``log(R₃(ρ₂)/R₃(ρ₁)) / log(ρ₂/ρ₁)`` between the two smallest radii
    (:func:`alstudy.theory.remainder_orders`; undefined where R₃ changes sign or is 0, and those
    examples are left out). One number (a point check).
    """
    from ..theory.saal_bound import remainder_orders

    terms = _saal_csv(run_dir, "bound_terms.csv")
    if terms is None or terms["rho"].nunique() < 2:
        return None
    orders = remainder_orders(terms)["order"].to_numpy(float)
    orders = orders[np.isfinite(orders)]
    return np.array([np.median(orders)]) if orders.size else None


@quantity("saal.ext.thm3_3.dropped_remainder.diagnostic")
def _saal_dropped_remainder_share(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """Share of the examples of ``bound_terms.csv`` at ρ = 0.05 with score ≤ ℓ + ρ‖∇ℓ‖ + ½ρ²λ₁."""
    terms = _saal_at_rho(_saal_csv(run_dir, "bound_terms.csv"))
    return None if terms is None else np.array([terms["holds"].astype(bool).mean()])


@quantity("saal.ext.thm3_3.dropped_remainder_over_rounds.diagnostic")
def _saal_dropped_remainder_rounds(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """``bound_holds`` of arm a pooled over rounds and seeds: the share of all sampled examples.

    Every round samples the same number of examples, so the pooled share is the mean of the
    per-round shares. One number (a point check: one violation refutes "bounds the score").
    """
    values = _saal_cycle_values(run_dir, claim.compare.a, "bound_holds")
    return None if values is None else np.array([values.mean()])


def _saal_per_round(metric: str):
    def fn(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
        return _saal_cycle_values(run_dir, claim.compare.a, metric)
    fn.__doc__ = f"``{metric}`` of arm a, one value per (seed, round) of ``metrics.csv``."
    return fn


quantity("saal.fig1a.score_corr_loss")(_saal_per_round("bound_corr_loss"))
quantity("saal.fig1a.score_corr_grad")(_saal_per_round("bound_corr_grad"))
quantity("saal.fig1a.score_corr_eig")(_saal_per_round("bound_corr_eig"))
quantity("saal.fig4a.psi_high_at_005")(_saal_per_round("psi"))
quantity("saal.fig4b.margin_ratio_small_at_005")(_saal_per_round("margin_ratio"))


@quantity("saal.eq3.first_order_step")
def _saal_one_step_vs_ascent(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """Spearman correlation of the one-step scores with the 5-step projected-ascent scores.

    From ``score_correlations.csv`` (:func:`alstudy.reports.saal.score_rank_correlations`): the
    row of the label run with ``ascent_steps: 5``, when its reference is a one-step SAM label.
    One number (a point check).
    """
    from ..params import strategy_specs

    corr = _saal_csv(run_dir, "score_correlations.csv")
    if corr is None or not params.get("strategies"):
        return None
    specs = strategy_specs(dict(params))
    one_step = lambda o: int(o.get("ascent_steps", 1)) == 1 and o.get("perturbation", "sam") == "sam" \
        and o.get("variant", "paper") == "paper"
    for row in corr.itertuples(index=False):
        mine, ref = specs.get(row.variant), specs.get(row.reference)
        if mine and ref and int(mine[1].get("ascent_steps", 1)) == 5 and one_step(ref[1]):
            return np.array([row.spearman])
    return None


def _saal_round_seconds(run_dir: Path) -> pd.DataFrame | None:
    timing = _saal_csv(run_dir, "timing.csv")
    return None if timing is None else results.round_seconds(timing)


def _saal_ratio(per: pd.DataFrame, a: tuple, b: tuple) -> np.ndarray:
    """Per (seed, repeat): ``column`` of unit a over ``column`` of unit b; a, b = (strategy, optimizer, column)."""
    idx = ["seed", "repeat"]
    side = lambda s, o, col: per[(per["strategy"] == s) & (per["optimizer"] == o)].set_index(idx)[col]
    both = pd.concat([side(*a).rename("a"), side(*b).rename("b")], axis=1, join="inner").dropna()
    return (both["a"] / both["b"]).to_numpy(float)


def _saal_family(values: dict) -> Any:
    values = {k: v for k, v in values.items() if v.size}
    return values or None


@quantity("saal.fig2.sam_twice_adam_on_random")
def _saal_sam_over_adam_train(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """Per repeat of ``timing.csv``: train seconds per round with SAM over Adam (filtered strategy)."""
    per = _saal_round_seconds(run_dir)
    if per is None:
        return None
    out = {s: _saal_ratio(per, (s, _SAAL_SAM, "train_seconds"), (s, _SAAL_ADAM, "train_seconds"))
           for s in _saal_labels(claim.compare.filter.get("strategy"))}
    out = _saal_family(out)
    return next(iter(out.values())) if out and len(out) == 1 else out


@quantity("saal.fig2.gap_mere_other_strategies")
def _saal_sam_over_adam_total(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """Per strategy and repeat: (select + train) seconds per round with SAM over the same with Adam."""
    per = _saal_round_seconds(run_dir)
    if per is None:
        return None
    return _saal_family({s: _saal_ratio(per, (s, _SAAL_SAM, "total_seconds"), (s, _SAAL_ADAM, "total_seconds"))
                         for s in _saal_labels(claim.compare.filter.get("strategy"))})


@quantity("saal.fig2.acquisition_is_bottleneck")
def _saal_select_over_train(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """Per strategy and repeat, with the filter's optimizer: select seconds over train seconds per round."""
    per = _saal_round_seconds(run_dir)
    if per is None:
        return None
    opt = claim.compare.filter.get("optimizer", _SAAL_ADAM)
    return _saal_family({s: _saal_ratio(per, (s, opt, "select_seconds"), (s, opt, "train_seconds"))
                         for s in _saal_labels(claim.compare.filter.get("strategy"))})


@quantity("saal.fig2.saal_slower_than_most")
def _saal_select_over_baselines(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """Per baseline and repeat, with the filter's optimizer: select seconds of a over the baseline's."""
    per = _saal_round_seconds(run_dir)
    if per is None:
        return None
    cmp = claim.compare
    opt = cmp.filter.get("optimizer", _SAAL_ADAM)
    return _saal_family({b: _saal_ratio(per, (cmp.a, opt, "select_seconds"), (b, opt, "select_seconds"))
                         for b in _saal_labels(cmp.b)})


@quantity("saal.ext.batched_scorer_speedup")
def _saal_scorer_speedup(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """Seconds per candidate of the deep-copy loop over the batched scorer (``scoring_speed.csv``)."""
    speed = _saal_csv(run_dir, "scoring_speed.csv")
    if speed is None:
        return None
    method = speed["method"].astype(str)
    batched = speed.loc[method.str.startswith("batched"), "seconds_per_candidate"]
    looped = speed.loc[method.str.startswith("deep copy"), "seconds_per_candidate"]
    if batched.empty or looped.empty:
        return None
    return np.array([float(looped.iloc[0]) / float(batched.iloc[0])])
