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

import json
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


def _timed_here(run_dir: Path) -> pd.DataFrame | None:
    """The run's metrics without the units copied from another run folder
    (:mod:`alstudy.unit_reuse`): their timings were taken there, under another load, so cost
    claims pair only units timed in this run."""
    frame = _metrics(run_dir)
    if frame is None:
        return None
    copied = set()
    for side in (run_dir / "units").glob("*.json"):
        try:
            rec = json.loads(side.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and rec.get("copied_from"):
            copied.add((str(rec.get("strategy")), int(rec.get("seed", -1))))
    if not copied:
        return frame
    keys = list(zip(frame["strategy"].astype(str), frame["seed"].astype(int)))
    return frame[[k not in copied for k in keys]]


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
    """Per baseline: per-seed median over cycles of NoiseStability's (select + train) seconds over
    its, for the seeds both were timed in this run."""
    frame = _timed_here(run_dir)
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
    from ..theory import largest_N  # lazy: theory imports torch

    frame = _csv(run_dir, "concentration.csv")
    if frame is None:
        return None
    sub = largest_N(frame)
    sub = sub[sub["metric"] == metric]
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
    """Per ε (and N, when the run measured several): ``K_all / K_JL`` of one concentration
    check (Eq 12, 16, 17), as a family.

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
    several_N = summary["N"].nunique() > 1
    for row in summary[summary["metric"] == metric].itertuples():
        if np.isfinite(row.K_all):
            ratio = row.K_all / row.jl_K
        elif max_K >= row.jl_K:
            ratio = float(np.nextafter(max_K / row.jl_K, np.inf))  # K_all > max K >= K_JL
        else:
            ratio = np.nan
        out[f"N={row.N:g}, eps={row.eps:g}" if several_N else f"eps={row.eps:g}"] = np.array([ratio])
    return out or None


def _kcenter_column(run_dir: Path, column: str) -> Any:
    """Per repeat: one column of ``kcenter_agreement.csv`` (:func:`alstudy.theory.kcenter_agreement`)."""
    frame = _csv(run_dir, "kcenter_agreement.csv")
    if frame is None:
        return None
    return frame.sort_values("repeat")[column].to_numpy(float)  # [repeats]


@quantity("ns.sec3_2.selection_equivalent_to_gradients")
def _ns_kcenter_overlap(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """Per noise seed: share of the k-center picks on Δẑ that k-center on ∇θ f also picks."""
    return _kcenter_column(run_dir, "overlap")


@quantity("ns.sec2_2.diverse_subset_prefers_large_magnitude")
def _ns_kcenter_magnitude(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """Per noise seed: mean ‖Δẑ‖ of the k-center picks after the first over the mean of all."""
    return _kcenter_column(run_dir, "magnitude_ratio")


@quantity("ns.appa2.log_n_dependence")
def _ns_log_n(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """Per check (Eq 12 norms, Eq 16 distances): per repeat, q of
    :func:`alstudy.theory.log_n_power`: 0 when the K needed grows like log N, 1 like √n."""
    from ..theory import log_n_power  # lazy: theory imports torch

    frame = _csv(run_dir, "concentration.csv")
    if frame is None or not frame["metric"].str.endswith("_worst").any():
        return None
    try:
        power = log_n_power(frame)
    except ValueError:  # one N, or no K large enough: the dependence is not measured
        return None
    names = {"eq12_norm": "Eq 12 norms", "eq16_distance": "Eq 16 distances"}
    return {names[m]: g.sort_values("repeat")["q"].to_numpy(float) for m, g in power.groupby("metric")}


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
    """At ζ = 1e-3, float32 difference: each example's linearisation error over the RMS predicted
    MC error (the claim judges their median)."""
    from ..theory import summarize_eq6_zeta  # lazy: theory imports torch

    frame = _csv(run_dir, "eq6_vs_zeta.csv")
    if frame is None:
        return None
    summary = summarize_eq6_zeta(frame)
    at = lambda f: f[(f["difference"] == "finite") & np.isclose(f["zeta"], 1e-3, rtol=1e-9, atol=0)]
    row, rows = at(summary), at(frame)
    if row.empty:
        return None
    return rows["lin_error"].to_numpy(float) / float(row["mc_rms"].iloc[0])  # [examples]


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
    """Per seed both were timed in this run: median over cycles of a's select_seconds over b's
    (one array per baseline)."""
    frame = _timed_here(run_dir)
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
    weakest = _weakest_arm_final(frame, "accuracy", claim)
    return None if weakest is None else weakest - float(test["rate"].max())  # [seeds]


def _weakest_arm_final(frame: pd.DataFrame, metric: str, claim: Claim) -> np.ndarray | None:
    """Per seed: the smallest last-cycle ``metric`` over the claim's arms, ``[seeds]``.

    A gate on "every arm" is met iff the weakest arm meets it; one value per seed keeps the
    values independent (the arms of a seed share its initial labels and weights).
    """
    cmp = claim.compare
    arms = [cmp.a, *(cmp.b if isinstance(cmp.b, (list, tuple)) else [cmp.b])]
    sub = frame[(frame["metric"] == metric) & frame["strategy"].isin(arms)]
    if sub.empty:
        return None
    last = sub[sub["cycle"] == sub.groupby(["strategy", "seed"])["cycle"].transform("max")]
    return last.groupby("seed")["value"].min().to_numpy(float)


# ---- Segmentation and detection: the learnability gates


def _ceiling_fractions(run_dir: Path, metric: str, claim: Claim) -> Any:
    """Per seed: the weakest arm's last-cycle ``metric`` over the full-data model's (``ceiling.csv``)."""
    frame, path = _metrics(run_dir), run_dir / "ceiling.csv"
    if frame is None or not path.exists():
        return None
    ceiling = pd.read_csv(path)
    top = ceiling.loc[ceiling["metric"] == metric, "value"]
    if top.empty or not float(top.iloc[0]) > 0:
        return None
    weakest = _weakest_arm_final(frame, metric, claim)
    return None if weakest is None else weakest / float(top.iloc[0])  # [seeds]


@quantity("saal.ext.detection_standin.highest_final_map:gate")
def _detection_gate(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """Per seed: the weakest compared arm's final mAP@0.5 over the full-data detector's mAP@0.5."""
    return _ceiling_fractions(run_dir, "map50", claim)


@quantity("ns.ext.segmentation_standin.remarkable_improvement:gate")
def _segmentation_gate(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
    """Per seed: the weakest compared arm's final mIoU over the full-data ceiling's mIoU."""
    return _ceiling_fractions(run_dir, "miou", claim)


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


def _saal_per_seed(metric: str):
    def fn(run_dir: Path, params: Mapping[str, Any], claim: Claim) -> Any:
        frame = _metrics(run_dir)
        if frame is None:
            return None
        sub = frame[(frame["strategy"] == claim.compare.a) & (frame["metric"] == metric)]
        return None if sub.empty else sub.groupby("seed")["value"].mean().to_numpy(float)  # [seeds]
    fn.__doc__ = (f"``{metric}`` of arm a, its mean over the rounds of each seed (``[seeds]``): the "
                  "rounds of one seed share a trajectory, so the seeds are the independent values.")
    return fn


quantity("saal.fig1a.score_corr_loss")(_saal_per_seed("bound_corr_loss"))
quantity("saal.fig1a.score_corr_grad")(_saal_per_seed("bound_corr_grad"))
quantity("saal.fig1a.score_corr_eig")(_saal_per_seed("bound_corr_eig"))
quantity("saal.fig4a.psi_high_at_005")(_saal_per_seed("psi"))
quantity("saal.fig4b.margin_ratio_small_at_005")(_saal_per_seed("margin_ratio"))


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
