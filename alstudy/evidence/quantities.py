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


# ---- NoiseStability --------------------------------------------------------------------------
# Theory notebook (theory_noise_stability): eq6_vs_K.csv, eq6_vs_zeta.csv, concentration.csv,
# badge_link.csv, badge_link_correlations.csv. AL notebooks: metrics.csv (+ class_rates.csv).


def _csv(run_dir: Path, name: str) -> pd.DataFrame | None:
    path = run_dir / name
    return pd.read_csv(path) if path.exists() else None


def _slope(x: pd.Series | np.ndarray, y: pd.Series | np.ndarray) -> float:
    from ..theory import fit_loglog_slope  # lazy: theory imports torch

    return fit_loglog_slope(np.asarray(x, float), np.asarray(y, float))


@quantity("ns.eq6.expected_norm_equals_jacobian")
def _ns_eq6_slope(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """Per repeat: log-log slope against K of the RMS over examples of ‖Δẑ‖²/‖J‖_F² − 1 (Eq 6).

    Only for a float64 difference (``difference: finite64``), as the claim states.
    """
    frame = _csv(run_dir, "eq6_vs_K.csv")
    if frame is None or params.get("difference", "finite64") != "finite64":
        return None
    rms = frame.groupby(["repeat", "K"])["rel_error"].apply(lambda s: float(np.sqrt(np.mean(np.square(s)))))
    slopes = [_slope(g.index.get_level_values("K"), g.to_numpy()) for _, g in rms.groupby(level="repeat")]
    return np.asarray(slopes, float)  # [repeats]


def _pair_slopes(run_dir: Path, metric: str) -> Any:
    """Per repeat: log-log slope against K of one RMS error of ``concentration.csv`` (Eq 7, 8)."""
    frame = _csv(run_dir, "concentration.csv")
    if frame is None:
        return None
    sub = frame[frame["metric"] == metric]
    if sub.empty:
        return None
    return np.asarray([_slope(g["K"], g["value"]) for _, g in sub.groupby("repeat")], float)  # [repeats]


@quantity("ns.eq7.distance_expectation")
def _ns_eq7_slope(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """Per repeat: slope against K of the RMS relative error of pairwise squared distances (Eq 7)."""
    return _pair_slopes(run_dir, "eq7_sqdist_rms")


@quantity("ns.eq8.inner_product_expectation")
def _ns_eq8_slope(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """Per repeat: slope against K of the RMS normalised error of pairwise inner products (Eq 8)."""
    return _pair_slopes(run_dir, "eq8_inner_rms")


def _concentration_ratios(run_dir: Path, metric: str) -> Any:
    """Per ε: ``K_all(ε) / K_JL(ε)`` of one concentration check (Eq 12, 16, 17), as a family.

    ``K_all`` is :func:`alstudy.theory.summarize_concentration`'s smallest K from which every
    vector is within ε in every repeat. When no K tried gets there, the ratio is known only to
    exceed ``max K / K_JL``: it is returned just above that bound when the bound is at least 1
    (the claim fails), and as NaN (undecided, ``not_computed``) when it is below 1.
    """
    from ..theory import summarize_concentration  # lazy: theory imports torch

    frame = _csv(run_dir, "concentration.csv")
    if frame is None or metric not in set(frame["metric"]):
        return None
    summary = summarize_concentration(frame)
    max_K = float(frame["K"].max())
    out = {}
    for row in summary[summary["metric"] == metric].itertuples():
        if np.isfinite(row.K_all):
            ratio = row.K_all / row.jl_K
        elif max_K >= row.jl_K:
            ratio = float(np.nextafter(max_K / row.jl_K, np.inf))  # K_all > max K >= K_JL
        else:
            ratio = np.nan
        out[f"eps={row.eps:g}"] = np.array([ratio])
    return out or None


@quantity("ns.eq12.concentration_norm")
def _ns_eq12(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """Per ε: K_all / K_JL for the norms (Eq 12)."""
    return _concentration_ratios(run_dir, "eq12_norm")


@quantity("ns.eq16.concentration_distance")
def _ns_eq16(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """Per ε: K_all / K_JL for the pairwise distances (Eq 16)."""
    return _concentration_ratios(run_dir, "eq16_distance")


@quantity("ns.eq17.concentration_inner_product")
def _ns_eq17(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """Per ε: K_all / K_JL for the Eq 17 cosine bounds."""
    return _concentration_ratios(run_dir, "eq17_cosine")


@quantity("ns.eq4.first_order_small_zeta")
def _ns_eq4_trend(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """Rows ``{seed, x = ζ, value}``: median over examples of the float64 linearisation error, ζ ≥ 1e-5."""
    frame = _csv(run_dir, "eq6_vs_zeta.csv")
    if frame is None:
        return None
    sub = frame[(frame["difference"] == "finite64") & (frame["zeta"] >= 1e-5 * (1 - 1e-9))]
    if sub.empty:
        return None
    med = sub.groupby("zeta")["lin_error"].median()
    seed = params.get("seed", 0)
    return [{"seed": seed, "x": float(z), "value": float(v)} for z, v in med.items()]


@quantity("ns.sec4_1.default_zeta_small_noise")
def _ns_default_zeta(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """At ζ = 1e-3, float32 difference: median linearisation error over the RMS predicted MC error."""
    from ..theory import summarize_eq6_zeta  # lazy: theory imports torch

    frame = _csv(run_dir, "eq6_vs_zeta.csv")
    if frame is None:
        return None
    summary = summarize_eq6_zeta(frame)
    row = summary[(summary["difference"] == "finite") & np.isclose(summary["zeta"], 1e-3, rtol=1e-9, atol=0)]
    if row.empty:
        return None
    return np.array([float(row["lin_median"].iloc[0] / row["mc_rms"].iloc[0])])


def _spearman_samples(run_dir: Path, x: str, y: str, transform=None) -> Any:
    from scipy.stats import spearmanr

    frame = _csv(run_dir, "badge_link.csv")
    if frame is None or not {x, y} <= set(frame.columns):
        return None
    b = frame[y].to_numpy(float)
    return np.array([float(spearmanr(frame[x].to_numpy(float), transform(b) if transform else b)[0])])


@quantity("ns.sec2_2.hard_examples_sensitive")
def _ns_hard_examples(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """Spearman correlation over the pool examples of ‖Δẑ(x)‖ with 1 − max_c p(c|x) (one value)."""
    return _spearman_samples(run_dir, "ns_norm", "max_prob", lambda p: 1.0 - p)


@quantity("ns.ext.eq9.badge_norm_correlation.diagnostic")
def _ns_badge_norm(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """Spearman correlation over the pool examples of ‖Δẑ(x)‖ with BADGE's embedding norm (one value)."""
    return _spearman_samples(run_dir, "ns_norm", "badge_norm")


@quantity("ns.ext.eq9.badge_direction_correlation.diagnostic")
def _ns_badge_direction(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """Spearman correlation of the pairwise cosines of Δẑ with BADGE's (stored; pairs are not)."""
    frame = _csv(run_dir, "badge_link_correlations.csv")
    if frame is None:
        return None
    row = frame[(frame["x"] == "ns_cosine") & (frame["y"] == "badge_cosine")]
    return None if row.empty else np.array([float(row["spearman"].iloc[0])])


@quantity("ns.sec3_4.output_is_efficient")
def _ns_output_select_cost(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """Per seed: median over cycles of a's select_seconds over b's (one array per baseline)."""
    frame = _metrics(run_dir)
    if frame is None:
        return None
    cmp = claim.compare
    members = list(cmp.b) if isinstance(cmp.b, (list, tuple)) else [cmp.b]
    out = {b: r for b in members if (r := per_seed_ratio(frame, cmp.a, b, ["select_seconds"])).size}
    if len(members) == 1:
        return out.get(members[0])
    return out or None


@quantity("ns.ext.text_standin.superiority:gate")
def _ns_text_gate(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """Per seed: the smallest final accuracy over the claim's arms minus the test majority-class rate.

    The rate comes from ``class_rates.csv`` (:func:`alstudy.results.class_rates`), which the
    notebook writes; "every arm" clears the gate iff the weakest one does.
    """
    frame, rates = _metrics(run_dir), _csv(run_dir, "class_rates.csv")
    if frame is None or rates is None:
        return None
    test = rates[rates["split"] == "test"]
    if test.empty:
        return None
    cmp = claim.compare
    arms = [cmp.a, *(cmp.b if isinstance(cmp.b, (list, tuple)) else [cmp.b])]
    acc = frame[(frame["metric"] == "accuracy") & frame["strategy"].isin(arms)]
    if acc.empty:
        return None
    last = acc[acc["cycle"] == acc.groupby(["strategy", "seed"])["cycle"].transform("max")]
    return (last.groupby("seed")["value"].min() - float(test["rate"].max())).to_numpy(float)  # [seeds]


# ---- Segmentation and detection: the learnability gates


def _ceiling_fractions(run_dir: Path, metric: str, claim: Claim) -> Any:
    """Per (arm, seed): the last cycle's ``metric`` over the full-data model's (``ceiling.csv``)."""
    frame, path = _metrics(run_dir), run_dir / "ceiling.csv"
    if frame is None or not path.exists():
        return None
    ceiling = pd.read_csv(path)
    top = ceiling.loc[ceiling["metric"] == metric, "value"]
    if top.empty or not float(top.iloc[0]) > 0:
        return None
    arms = [claim.compare.a, *(claim.compare.b if isinstance(claim.compare.b, (list, tuple)) else [claim.compare.b])]
    sub = frame[(frame["metric"] == metric) & frame["strategy"].isin(arms)]
    last = sub[sub["cycle"] == sub["cycle"].max()]
    return (last["value"].to_numpy(float) / float(top.iloc[0])) if len(last) else None


@quantity("ns.ext.segmentation_standin.remarkable_improvement:gate")
def _segmentation_gate(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """Final mIoU of every compared arm and seed over the full-data ceiling's mIoU."""
    return _ceiling_fractions(run_dir, "miou", claim)
