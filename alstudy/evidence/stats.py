"""How a verdict is decided: paired statistics on the tidy results frame.

Every verdict of the study is a function of the numbers in ``metrics.csv`` and of nothing else.
This module is the one place that says how.

**Pairing.** Within a run every strategy of a seed shares the initial labeled set, the initial
weights and the test set, so two strategies (or two settings of an option, ``column=``) are
compared through their *paired differences*, one per seed. Rows are joined on the ``seed`` value
(an inner join, never on row order); seeds present for only one side are reported in
``dropped_seeds``, pairs with a non-finite value are dropped and counted in ``n_nonfinite``.
A frame holding two rows for the same (level, seed, cycle) is refused: filter it to one run.

**Orientation.** ``diff`` is the mean over seeds of *a − b* for larger-is-better metrics and of
*b − a* for smaller-is-better ones (``results.METRIC_GOAL``, e.g. ``mae``), so a positive ``diff``
always means "a is better than b". ``mean_a`` and ``mean_b`` keep the raw means. Margins are in
the metric's units and in the same orientation.

**Quantities.** ``aubc``, ``final``, ``best`` come from :func:`alstudy.results.summarize` on the
per-cycle metric (``summary_metric``, default accuracy or mae); ``cycle`` compares one cycle's
values (:func:`per_cycle` gives one record per cycle).

**Tests and rules** (``d`` = paired differences, n seeds, t-statistics with n − 1 degrees of
freedom, α = ``alpha``; "CI" is the t-interval of the mean of ``d``):

* ``superiority`` (claim: a beats b, optionally by ``margin`` ≥ 0, default 0): *reproduced* iff
  the (1 − α) CI lies above ``margin``; *contradicted* iff it lies below ``margin``; otherwise
  *inconclusive*. Each direction is a one-sided paired t-test at α/2 (``p`` and ``p_contra`` are
  the one-sided p-values doubled), so with no true difference the two wrong verdicts together
  occur with probability α, not 2α.
* ``non_inferiority`` (claim: a is at most ``margin`` worse than b): the same rule against
  −``margin``: reproduced iff the (1 − α) CI lies above −margin, contradicted iff below.
* ``equivalence`` (claim: a ≈ b within ±``margin``): two one-sided tests (TOST) at α:
  *reproduced* iff both reject, i.e. the (1 − 2α) CI (``tost_low``, ``tost_high``) lies inside
  (−margin, margin), ``p`` = the larger TOST p-value; *contradicted* iff the (1 − α) CI lies
  entirely outside [−margin, margin] (one-sided tests at α/2 against each bound, ``p_contra`` =
  twice the smaller p-value), so that a false "contradicted" has probability at most α whatever
  the margin; otherwise inconclusive.

* a threshold on a *median* of independent values (:func:`median_test`): the superiority rule
  with the sign test in place of the t-test (one-sided at α/2 each direction) and the
  order-statistic interval of the median.

So each wrong verdict has probability at most α, a (1 − α) CI shown next to a superiority or
non-inferiority verdict always agrees with it, and for every kind ``reproduced`` ⇔ ``p ≤ α``,
``contradicted`` ⇔ ``p_contra ≤ α``.

**Degenerate cases.** With fewer than 2 paired seeds no test is run: ``p`` is None and the verdict
inconclusive. When all paired differences are equal (zero variance, e.g. identical trajectories,
where every difference is exactly 0) the verdict is decided deterministically from the constant
against the null value (p = 0 on the side it lies, 1 otherwise; a constant exactly at the null
is inconclusive) and ``reason`` says so.

**Families and Holm.** :func:`compare_many` (one claim against several baselines),
:func:`per_cycle` (one claim at several cycles) and :func:`grid` (pairwise equivalence of many
levels) adjust ``p`` and ``p_contra`` separately with Holm's step-down method within the family
(:func:`holm`); ``p_adj``/``p_contra_adj`` are stored and the verdicts recomputed from them. A
family's overall verdict: *reproduced* iff every member is reproduced, *contradicted* iff any
member is contradicted, otherwise inconclusive.

**Grids and the omnibus test.** :func:`grid` first collapses levels whose trajectories are
identical in every seed and cycle (:func:`distinct_levels`; they count once), then reports
Friedman's test over seeds (``scipy.stats.friedmanchisquare``, ≥ 3 distinct levels) and decides
from the Holm-adjusted pairwise TOSTs. The omnibus result is reported but does not decide: it
tests "all levels equal", and rejecting it shows that the levels differ, not that they differ by
more than the margin.

**Trends.** :func:`trend`: per seed, Spearman's (or Kendall's) rank correlation between ``x``
and the metric; their mean is tested against "no trend" by a permutation test that shuffles the
values within each seed (exact level for any number of points, ties or seeds, where a t-test over
a few bounded correlations is not), with the superiority rule above (each direction at α/2).

**MDE.** ``mde`` is the smallest true difference (distance from the null value: 0, ±margin) that
the rule detects with power 0.8 at this n and α, taking the observed paired sd as the truth:
the λ solving ``nct.sf(t_crit, n−1, λ) = 0.8`` (noncentral t) times sd/√n. For equivalence it is
the smallest margin that TOST establishes with power ≥ 0.8 when the true difference is 0
(Bonferroni bound on the power, so slightly conservative). An inconclusive verdict with an
``mde`` larger than the difference the paper reports means "this experiment is too small to tell".

**Supported margin.** An equivalence claim also reports :func:`supported_margin`: the smallest
margin at which these data, with the same tests and Holm correction, would establish
equivalence. The MDE says what margin this n would usually establish; the supported margin says
what margin these seeds do establish. It is reported; the verdict uses the claim's own margin.

**Bootstrap.** With n ≥ 8 the record also carries a BCa bootstrap interval of the mean paired
difference (``scipy.stats.bootstrap``, 9,999 resamples, fixed seed); it is reported, the verdict
uses the t-test.

**Inconclusive** means the data do not decide at level α: neither the claim nor its opposite is
established. It is not a negative result; read ``mde`` and the CI to see how large a difference
the run could have shown.

**Penalty matrix.** :func:`penalty_matrix` summarises many strategies at many labeled-set sizes
as in Ash et al. (2020, Sec. 5): cell [i, j] is the weighted number of checkpoints at which
strategy i is significantly better than strategy j (two-sided paired t-test, p ≤ α), each
checkpoint weighing 1 / number of checkpoints. Unlike the paper's scripts it pairs runs by seed
(not by file order) and uses every labeled-set size of the run up to the stopping point (they use
geometrically spaced sizes).

**Checked.** ``tests/test_evidence_stats.py`` simulates thousands of experiments through the same
decision function (:func:`_decide`) at n = 5 and 10: false-verdict rates under no difference (with
and without a large seed effect), power at the reported ``mde``, TOST at and beyond the margin,
Holm's family-wise error, and the trend test's level.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, fields, replace
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import optimize, stats

from .. import results

__all__ = ["KINDS", "VERDICTS", "SUMMARY_METRICS", "Comparison", "Family", "Trend", "compare",
           "compare_many", "per_cycle", "grid", "distinct_levels", "trend", "penalty_matrix",
           "holm", "holm_family", "mde", "median_test", "sign_test_mde", "supported_margin"]

KINDS = ("superiority", "equivalence", "non_inferiority")
VERDICTS = ("reproduced", "contradicted", "inconclusive")
#: Per-(level, seed) summaries from :func:`alstudy.results.summarize`; ``cycle`` = per-cycle values.
SUMMARY_METRICS = ("aubc", "final", "best")
POWER = 0.8
BOOT_MIN_N = 8
N_PERM = 9999
_CODES = {1: "reproduced", -1: "contradicted", 0: "inconclusive"}


def _py(values: Iterable) -> tuple:
    """Sorted tuple of plain Python scalars (seeds print as ``5``, not ``np.int64(5)``)."""
    return tuple(sorted(v.item() if isinstance(v, np.generic) else v for v in values))


def _clean(value: Any) -> Any:
    """JSON-ready: numpy scalars to Python, non-finite floats to None, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class _Record:
    """Shared ``to_dict`` for the frozen records."""

    def to_dict(self) -> dict:
        """All fields as a JSON-serialisable dict (nested records included)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple) and value and isinstance(value[0], _Record):
                value = [v.to_dict() for v in value]
            out[f.name] = value
        return _clean(out)


@dataclass(frozen=True)
class Comparison(_Record):
    """One paired comparison of ``a`` against ``b`` (see the module docstring for the rules).

    Attributes:
        a, b: The two levels of ``column`` compared (claim direction: a better than / ≈ b).
        column: Frame column holding the levels (``strategy`` or an option column).
        metric: ``aubc`` / ``final`` / ``best`` / ``cycle``.
        value_metric: The per-cycle metric underneath (``accuracy``, ``mae``, ...).
        goal: ``max`` or ``min`` (orientation of ``diff``).
        cycle: The cycle compared when ``metric == "cycle"``, else None.
        n_labeled: Labeled-set size of that cycle (None if it differs between seeds or not per-cycle).
        cycles: Cycles the values were restricted to (None = all).
        kind, margin, alpha: The claim's kind, its margin (metric units, None if none) and α.
        n: Number of paired seeds used. seeds: Those seeds.
        dropped_seeds: Seeds present for only one of a, b. n_nonfinite: Pairs dropped for NaN/inf.
        mean_a, mean_b: Raw means over the paired seeds (metric units, not oriented).
        diff: Mean paired difference, positive = a better than b. sd_diff, se_diff: Its sd (ddof 1)
            and standard error.
        ci_low, ci_high, ci_level: (1 − α) two-sided t-interval of ``diff`` (superiority,
            non-inferiority and "contradicted" for equivalence are read from it; each end is a
            one-sided (1 − α/2) bound).
        tost_low, tost_high: (1 − 2α) interval used by TOST (equivalence only).
        boot_low, boot_high: BCa bootstrap (1 − α) interval of ``diff`` when n ≥ 8, else None.
        p: p-value of the claim's test (reproduced iff p ≤ α); None without a test.
        p_contra: p-value of the opposite test (contradicted iff p_contra ≤ α).
        p_adj, p_contra_adj: Holm-adjusted values within a family (None outside a family).
        family_size: Number of tests in the Holm family (None outside a family).
        test: Readable name of the test. null: Value of ``diff`` the claim's test is against.
        mde: Smallest detectable true difference at power 0.8 (equivalence: smallest margin).
        verdict: ``reproduced`` / ``contradicted`` / ``inconclusive``.
        reason: Why a degenerate case was decided as it was, and notes on dropped data.
    """

    a: Any
    b: Any
    column: str
    metric: str
    value_metric: str
    goal: str
    cycle: int | None
    n_labeled: int | None
    cycles: tuple | None
    kind: str
    margin: float | None
    alpha: float
    n: int
    seeds: tuple
    dropped_seeds: tuple
    n_nonfinite: int
    mean_a: float | None
    mean_b: float | None
    diff: float | None
    sd_diff: float | None
    se_diff: float | None
    ci_low: float | None
    ci_high: float | None
    ci_level: float
    tost_low: float | None
    tost_high: float | None
    boot_low: float | None
    boot_high: float | None
    p: float | None
    p_contra: float | None
    p_adj: float | None
    p_contra_adj: float | None
    family_size: int | None
    test: str
    null: float | None
    mde: float | None
    verdict: str
    reason: str


@dataclass(frozen=True)
class Family(_Record):
    """A family of comparisons decided together (Holm within the family).

    Attributes:
        name: ``compare_many``, ``per_cycle`` or ``grid``.
        kind, column, metric, value_metric, margin, alpha: As in :class:`Comparison`.
        levels: Levels involved (for ``compare_many``: a followed by the baselines).
        groups: Levels with identical trajectories, collapsed to their first member (grid only).
        omnibus: Friedman result ``{test, statistic, p, n, k, levels}`` (grid only, None otherwise
            or when it cannot run; see ``reason``).
        comparisons: The member :class:`Comparison` records, Holm-adjusted.
        rule: The overall rule in words.
        verdict: Overall verdict. reason: Notes on degenerate cases.
    """

    name: str
    kind: str
    column: str
    metric: str
    value_metric: str
    margin: float | None
    alpha: float
    levels: tuple
    groups: tuple
    omnibus: dict | None
    comparisons: tuple
    rule: str
    verdict: str
    reason: str


@dataclass(frozen=True)
class Trend(_Record):
    """A monotone-trend claim tested through rank correlations (see :func:`trend`).

    Attributes:
        x: Column against which the metric is claimed to rise/fall.
        metric: Metric (a per-row metric name or ``aubc``/``final``/``best``).
        value_metric: Per-cycle metric underneath a summary metric (else = metric).
        direction: ``decreasing`` or ``increasing`` (the claim).
        method: ``spearman`` or ``kendall``. by_seed: One correlation per seed (True) or one
            pooled over all points (False).
        n: Seeds (by_seed) or points (pooled). seeds: Seeds used. dropped_seeds: Seeds with fewer
            than 3 points or a constant series.
        rhos: Per-seed correlations (pooled: one value).
        mean_rho, sd_rho: Mean and sd (ddof 1) of ``rhos`` (raw sign).
        ci_low, ci_high, ci_level: (1 − α) t-interval of the mean correlation (≥ 2 seeds, clipped
            to [−1, 1]; descriptive).
        p, p_contra: Claimed-direction and opposite p-values of the permutation test (each the
            one-sided p doubled; reproduced iff p ≤ α, contradicted iff p_contra ≤ α).
        test: Readable name. alpha: α. n_perm: Number of permutations.
        verdict, reason: As in :class:`Comparison`.
    """

    x: str
    metric: str
    value_metric: str
    direction: str
    method: str
    by_seed: bool
    n: int
    seeds: tuple
    dropped_seeds: tuple
    rhos: tuple
    mean_rho: float | None
    sd_rho: float | None
    ci_low: float | None
    ci_high: float | None
    ci_level: float
    p: float | None
    p_contra: float | None
    test: str
    alpha: float
    n_perm: int
    verdict: str
    reason: str


# ----------------------------------------------------------------------------- core decision rule

def _check_alpha(alpha: float) -> float:
    if not 0.0 < float(alpha) < 0.5:
        raise ValueError(f"alpha={alpha!r} must lie in (0, 0.5)")
    return float(alpha)


def _check_kind(kind: str, margin: float | None) -> float:
    """Validate kind and margin; returns the margin as a float (0 for plain superiority)."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} not one of {KINDS}")
    if kind == "superiority":
        margin = 0.0 if margin is None else float(margin)
        if not margin >= 0:
            raise ValueError(f"margin={margin!r} for superiority must be >= 0")
        return margin
    if margin is None:
        raise ValueError(f"kind={kind!r} needs margin= (the claim's tolerance, in metric units)")
    margin = float(margin)
    if not (margin > 0 if kind == "equivalence" else margin >= 0) or not math.isfinite(margin):
        raise ValueError(f"margin={margin!r} for {kind} must be finite and "
                         f"{'> 0' if kind == 'equivalence' else '>= 0'}")
    return margin


def _flat(d: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Rows whose differences are all equal (zero variance up to float rounding)."""
    scale = np.maximum(1.0, np.nanmax(np.abs(d), axis=-1))
    return sd <= 1e-12 * scale


def _t_p(d: np.ndarray, null: float, alternative: str, mean: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """One-sided one-sample t p-value along the last axis; zero-variance rows decided by sign."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        p = np.asarray(stats.ttest_1samp(d, null, axis=-1, alternative=alternative).pvalue, float)
    hit = mean > null if alternative == "greater" else mean < null
    return np.where(flat, np.where(hit, 0.0, 1.0), p)


def _crit_lambda(df: int, crit: float, power: float) -> float:
    """Noncentrality λ with ``P(T'(df, λ) > crit) = power``."""
    f = lambda lam: stats.nct.sf(crit, df, lam) - power  # noqa: E731
    return float(optimize.brentq(f, 0.0, 100.0 + 10 * crit, xtol=1e-10))


def mde(sd: float | np.ndarray, n: int, alpha: float = 0.05, kind: str = "superiority",
        power: float = POWER) -> float | np.ndarray:
    """Smallest true difference the verdict rule detects with probability ``power``.

    Superiority / non-inferiority (rule: one-sided t at α/2): λ·sd/√n with λ solving
    ``nct.sf(t_{1−α/2, n−1}, n−1, λ) = power``. Equivalence: the smallest margin for which TOST at
    α reproduces with probability ≥ ``power`` at true difference 0, from the Bonferroni bound
    ``power ≥ 1 − 2·nct.cdf(t_{1−α, n−1}, n−1, λ)``.

    Args:
        sd: Standard deviation of the paired differences (scalar or array).
        n: Number of paired seeds (≥ 2).
        alpha: Significance level.
        kind: One of :data:`KINDS`.
        power: Target power.

    Returns:
        The MDE in the units of ``sd`` (same shape as ``sd``).
    """
    if n < 2:
        raise ValueError(f"n={n} paired seeds: the MDE needs n >= 2")
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} not one of {KINDS}")
    df = n - 1
    if kind == "equivalence":
        lam = _crit_lambda(df, stats.t.ppf(1 - alpha, df), 1 - (1 - power) / 2)
    else:
        lam = _crit_lambda(df, stats.t.ppf(1 - alpha / 2, df), power)
    out = lam * np.asarray(sd, float) / math.sqrt(n)
    return float(out) if out.ndim == 0 else out


def _decide(d: np.ndarray, kind: str, margin: float, alpha: float) -> dict[str, np.ndarray]:
    """The verdict rule, vectorised over leading axes of ``d`` ([..., n] finite paired differences).

    :func:`compare` calls this on one row; the calibration tests call it on thousands at once.

    Returns:
        Arrays over the leading axes: ``mean, sd, se, ci_low, ci_high, tost_low, tost_high, p,
        p_contra, flat, code`` (code: 1 reproduced, −1 contradicted, 0 inconclusive), plus the
        scalar ``null`` and ``test`` name.
    """
    d = np.asarray(d, float)
    n = d.shape[-1]
    if n < 2:
        raise ValueError(f"n={n} paired differences: a paired test needs at least 2")
    df = n - 1
    mean = d.mean(axis=-1)
    sd = d.std(axis=-1, ddof=1)
    se = sd / math.sqrt(n)
    flat = _flat(d, sd)
    se = np.where(flat, 0.0, se)
    half = stats.t.ppf(1 - alpha / 2, df) * se
    half2 = stats.t.ppf(1 - alpha, df) * se
    out = dict(mean=mean, sd=np.where(flat, 0.0, sd), se=se, ci_low=mean - half, ci_high=mean + half,
               tost_low=mean - half2, tost_high=mean + half2, flat=flat)
    if kind == "equivalence":
        p_lo = _t_p(d, -margin, "greater", mean, flat)   # H1: diff > −margin
        p_hi = _t_p(d, margin, "less", mean, flat)       # H1: diff < +margin
        p_above = _t_p(d, margin, "greater", mean, flat)
        p_below = _t_p(d, -margin, "less", mean, flat)
        out["p"] = np.maximum(p_lo, p_hi)
        out["p_contra"] = np.minimum(1.0, 2 * np.minimum(p_above, p_below))
        out["null"] = margin
        out["test"] = ("paired t TOST at alpha against ±margin; contradicted: one-sided at alpha/2 "
                       "beyond ±margin")
    else:
        null = margin if kind == "superiority" else -margin
        out["p"] = np.minimum(1.0, 2 * _t_p(d, null, "greater", mean, flat))
        out["p_contra"] = np.minimum(1.0, 2 * _t_p(d, null, "less", mean, flat))
        out["null"] = null
        out["test"] = "paired t, one-sided at alpha/2 each direction (p doubled)"
    out["code"] = _code(out["p"], out["p_contra"], alpha)
    return out


def median_test(x: np.ndarray, bound: float, side: str, alpha: float = 0.05) -> dict[str, Any]:
    """The superiority rule for a *median*: is the median of independent values ``x`` above
    (``side="greater"``) or below (``"less"``) ``bound``?

    Sign test (``scipy.stats.quantile_test`` at p = 0.5), one-sided at α/2 each direction like
    the t rule above: *reproduced* iff the median lies on ``side`` of ``bound`` at α/2
    (``p`` = twice that one-sided p-value), *contradicted* iff it lies on the other side at α/2,
    else *inconclusive*. The (1 − α) CI of the median is the distribution-free order-statistic
    interval. No distribution is assumed: a bimodal sample gets the wide interval its median has.

    Returns:
        ``{median, ci_low, ci_high, p, p_contra, code, n, mde, test}``; ``mde`` is
        :func:`sign_test_mde`.
    """
    if side not in ("greater", "less"):
        raise ValueError(f"side={side!r}: 'greater' or 'less'")
    x = np.asarray(x, float).ravel()
    n = x.size
    if n < 2:
        raise ValueError(f"n={n} values: a sign test needs at least 2")
    other = "less" if side == "greater" else "greater"
    p = min(1.0, 2 * float(stats.quantile_test(x, q=bound, p=0.5, alternative=side).pvalue))
    p_contra = min(1.0, 2 * float(stats.quantile_test(x, q=bound, p=0.5, alternative=other).pvalue))
    ci = stats.quantile_test(x, q=bound, p=0.5).confidence_interval(1 - alpha)
    return {"median": float(np.median(x)), "ci_low": float(ci.low), "ci_high": float(ci.high),
            "p": p, "p_contra": p_contra, "code": int(_code(np.array(p), np.array(p_contra), alpha)),
            "n": n, "mde": sign_test_mde(n, alpha),
            "test": "sign test of the median (scipy quantile_test), one-sided at alpha/2 each "
                    "direction (p doubled); order-statistic CI"}


def sign_test_mde(n: int, alpha: float = 0.05, power: float = POWER) -> float | None:
    """Smallest departure of the share of values above the bound from 1/2 that
    :func:`median_test` detects with probability ``power`` (``None`` when no share can be)."""
    k = np.arange(n + 1)
    sig = stats.binom.sf(k - 1, n, 0.5) <= alpha / 2  # P(K >= k) under the null
    if not sig.any():
        return None
    k_crit = int(k[sig][0])
    if stats.binom.sf(k_crit - 1, n, 1.0) < power:
        return None
    share = optimize.brentq(lambda q: stats.binom.sf(k_crit - 1, n, q) - power, 0.5, 1.0)
    return float(share - 0.5)


def _code(p: np.ndarray, p_contra: np.ndarray, alpha: float) -> np.ndarray:
    """1 reproduced (p ≤ α), −1 contradicted (p_contra ≤ α), 0 otherwise."""
    return np.where(p <= alpha, 1, np.where(p_contra <= alpha, -1, 0))


def holm(pvalues: Sequence[float | None] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values along the last axis; None/NaN entries stay NaN.

    With the m finite p-values sorted ascending, ``p_adj_(i) = max_{j ≤ i} min(1, (m − j + 1) p_(j))``
    (1-based); rejecting ``p_adj ≤ α`` controls the family-wise error rate at α.

    Args:
        pvalues: p-values ([..., m]); missing tests as None or NaN (not counted in m).

    Returns:
        Adjusted p-values, same shape, float.
    """
    p = np.array([np.nan if v is None else v for v in pvalues] if isinstance(pvalues, (list, tuple))
                 else pvalues, dtype=float)
    if p.size == 0:
        return p
    order = np.argsort(p, axis=-1, kind="stable")          # NaN sorted last
    ps = np.take_along_axis(p, order, axis=-1)
    m = np.sum(np.isfinite(p), axis=-1, keepdims=True)
    mult = m - np.arange(p.shape[-1])
    adj = np.minimum(1.0, np.maximum.accumulate(np.where(np.isfinite(ps), mult * ps, -np.inf), axis=-1))
    adj = np.where(np.isfinite(ps), adj, np.nan)
    out = np.empty_like(adj)
    np.put_along_axis(out, order, adj, axis=-1)
    return out


def supported_margin(comps: Sequence[Comparison], alpha: float = 0.05) -> float | None:
    """The smallest equivalence margin these data establish: the least m at which every TOST of
    ``comps`` (Holm-corrected when there are several, as :func:`holm_family` decides them)
    would reject both one-sided nulls, i.e. the claim would read *reproduced* at ±m.

    A member with mean paired difference d̄ and standard error se has TOST p-value
    ``t.sf((m − |d̄|)/se, n − 1)``, so it meets level β from ``m = |d̄| + t.isf(β, n − 1)·se`` on
    (one comparison: the larger end of its (1 − 2α) interval). Holm rejects all k nulls iff the
    i-th smallest p-value is ≤ α/(k − i + 1) for every i; the answer is the least candidate
    ``|d̄_j| + t.isf(α/(k − i + 1), n_j − 1)·se_j`` at which that holds. A zero-variance member
    contributes ``|d̄|`` (the margin must exceed it). None when a member has no test (n < 2).
    """
    alpha = _check_alpha(alpha)
    if not comps or any(c.n < 2 or c.diff is None or c.se_diff is None for c in comps):
        return None
    k = len(comps)
    levels = [alpha / (k - i) for i in range(k)]          # Holm's α/k, ..., α (k = 1: α)
    absd = np.array([abs(c.diff) for c in comps])
    se = np.array([c.se_diff for c in comps])
    df = np.array([c.n - 1 for c in comps])

    def pvals(m: float) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            p = stats.t.sf((m - absd) / np.where(se > 0, se, 1.0), df)
        return np.where(se > 0, p, np.where(m >= absd, 0.0, 1.0))

    def all_reject(m: float) -> bool:
        return bool(np.all(holm(pvals(m)) <= alpha * (1 + 1e-9)))

    candidates = sorted({float(d + stats.t.isf(b, f) * e) for d, e, f in zip(absd, se, df)
                         for b in levels})
    return next((m for m in candidates if all_reject(m)), candidates[-1])


# ----------------------------------------------------------------------------- data extraction

def _value_metric(frame: pd.DataFrame, summary_metric: str | None) -> str:
    present = set(frame["metric"])
    if summary_metric is not None:
        if summary_metric not in present:
            raise ValueError(f"summary_metric={summary_metric!r} not in the frame's metrics {sorted(present)}")
        return summary_metric
    found = next((m for m in results.METRIC_GOAL if m in present), None)
    if found is None:
        raise ValueError(f"no accuracy/mae in the frame's metrics {sorted(present)}: pass summary_metric=")
    return found


def _check_levels(frame: pd.DataFrame, column: str, levels: Iterable) -> None:
    if column not in frame.columns:
        raise ValueError(f"column={column!r} not in the frame's columns {list(frame.columns)}")
    known = list(pd.unique(frame[column].dropna()))
    missing = [lv for lv in levels if not (frame[column] == lv).any()]
    if missing:
        raise ValueError(f"{column}={missing[0]!r} not in the frame; levels: {known}")


def _values(frame: pd.DataFrame, levels: Sequence, *, column: str, metric: str, value_metric: str,
            cycles: Iterable[int] | None) -> pd.DataFrame:
    """One value per (level, seed) [summary metrics] or per (level, seed, cycle) [``cycle``].

    Returns:
        Columns ``level, seed, value`` (+ ``cycle, n_labeled`` for ``metric == "cycle"``).
    """
    sub = frame[(frame["metric"] == value_metric) & frame[column].isin(list(levels))]
    if cycles is not None:
        sub = sub[sub["cycle"].isin(list(cycles))]
    dup = sub.duplicated([column, "seed", "cycle"], keep=False)
    if dup.any():
        row = sub[dup].iloc[0]
        raise ValueError(f"{column}={row[column]!r} has {int(dup.sum())} duplicated rows for seed "
                         f"{row['seed']!r} cycle {row['cycle']!r}: filter the frame to one run")
    sub = sub[[column, "seed", "cycle", "n_labeled", "metric", "value"]].rename(columns={column: "level"})
    if metric == "cycle":
        return sub[["level", "seed", "cycle", "n_labeled", "value"]].reset_index(drop=True)
    if metric not in SUMMARY_METRICS:
        raise ValueError(f"metric={metric!r} not one of {SUMMARY_METRICS + ('cycle',)}")
    if sub.empty:
        return pd.DataFrame(columns=["level", "seed", "value"])
    summ = results.summarize(sub.rename(columns={"level": "strategy"}), value_metric)
    return summ.rename(columns={"strategy": "level", metric: "value"})[["level", "seed", "value"]]


def _pair(vals: pd.DataFrame, a, b) -> tuple[pd.DataFrame, tuple, int]:
    """Inner join of a's and b's per-seed values on ``seed``; non-finite pairs dropped.

    Returns:
        (paired frame with ``seed, va, vb`` sorted by seed, seeds present on one side only,
        number of dropped non-finite pairs)
    """
    va = vals[vals["level"] == a][["seed", "value"]].rename(columns={"value": "va"})
    vb = vals[vals["level"] == b][["seed", "value"]].rename(columns={"value": "vb"})
    both = va.merge(vb, on="seed", how="inner").sort_values("seed").reset_index(drop=True)
    one_side = _py(set(va["seed"]) ^ set(vb["seed"]))
    ok = np.isfinite(both["va"].to_numpy(float)) & np.isfinite(both["vb"].to_numpy(float))
    return both[ok].reset_index(drop=True), one_side, int((~ok).sum())


def _bootstrap(d: np.ndarray, alpha: float) -> tuple[float | None, float | None]:
    """BCa bootstrap (1 − α) interval of the mean of ``d`` (n ≥ 8, fixed seed), else (None, None)."""
    if len(d) < BOOT_MIN_N or np.ptp(d) == 0:
        return None, None
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        ci = stats.bootstrap((d,), np.mean, confidence_level=1 - alpha, method="BCa",
                             random_state=np.random.default_rng(0)).confidence_interval
    lo, hi = float(ci.low), float(ci.high)
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else (None, None)


def _comparison(pairs: pd.DataFrame, one_side: tuple, n_nonfinite: int, *, a, b, column: str,
                metric: str, value_metric: str, kind: str, margin: float, alpha: float,
                cycle: int | None, n_labeled: int | None, cycles: tuple | None,
                user_margin: float | None) -> Comparison:
    """Apply :func:`_decide` to one paired table and build the record."""
    goal = results.METRIC_GOAL.get(value_metric, "max")
    va, vb = pairs["va"].to_numpy(float), pairs["vb"].to_numpy(float)
    d = va - vb if goal == "max" else vb - va                          # [n], positive = a better
    n = len(d)
    notes = []
    if one_side:
        notes.append(f"{len(one_side)} seed(s) present for only one side dropped: {list(one_side)}")
    if n_nonfinite:
        notes.append(f"{n_nonfinite} seed(s) with non-finite values dropped")
    base = dict(a=a, b=b, column=column, metric=metric, value_metric=value_metric, goal=goal,
                cycle=cycle, n_labeled=n_labeled, cycles=cycles, kind=kind, margin=user_margin,
                alpha=alpha, n=n, seeds=tuple(pairs["seed"].tolist()), dropped_seeds=one_side,
                n_nonfinite=n_nonfinite, ci_level=1 - alpha, p_adj=None, p_contra_adj=None,
                family_size=None)
    if n < 2:
        notes.insert(0, f"{n} paired seed(s): a paired test needs at least 2, no test run")
        return Comparison(**base, mean_a=float(va.mean()) if n else None,
                          mean_b=float(vb.mean()) if n else None, diff=float(d.mean()) if n else None,
                          sd_diff=None, se_diff=None, ci_low=None, ci_high=None, tost_low=None,
                          tost_high=None, boot_low=None, boot_high=None, p=None, p_contra=None,
                          test="none", null=None, mde=None, verdict="inconclusive", reason="; ".join(notes))
    r = _decide(d, kind, margin, alpha)
    if bool(r["flat"]):
        notes.insert(0, f"all {n} paired differences equal {float(r['mean']):.6g} (zero variance): "
                        "verdict decided from that constant against the null value, no test")
        boot = (None, None)
    else:
        boot = _bootstrap(d, alpha)
    eq = kind == "equivalence"
    return Comparison(**base, mean_a=float(va.mean()), mean_b=float(vb.mean()), diff=float(r["mean"]),
                      sd_diff=float(r["sd"]), se_diff=float(r["se"]), ci_low=float(r["ci_low"]),
                      ci_high=float(r["ci_high"]), tost_low=float(r["tost_low"]) if eq else None,
                      tost_high=float(r["tost_high"]) if eq else None, boot_low=boot[0], boot_high=boot[1],
                      p=float(r["p"]), p_contra=float(r["p_contra"]), test=r["test"],
                      null=float(r["null"]) if not eq else None,
                      mde=float(mde(float(r["sd"]), n, alpha, kind)), verdict=_CODES[int(r["code"])],
                      reason="; ".join(notes))


def _as_cycles(cycles) -> tuple | None:
    if cycles is None:
        return None
    return (int(cycles),) if np.isscalar(cycles) else tuple(int(c) for c in cycles)


# ----------------------------------------------------------------------------- public comparisons

def compare(frame: pd.DataFrame, a, b, *, metric: str = "aubc", kind: str, margin: float | None = None,
            alpha: float = 0.05, cycles: int | Iterable[int] | None = None, column: str = "strategy",
            summary_metric: str | None = None) -> Comparison:
    """Paired comparison of level ``a`` against level ``b`` of ``column`` (rules: module docstring).

    Args:
        frame: Tidy results of one run (one row per level, seed, cycle and metric).
        a, b: Levels of ``column`` (the claim reads "a beats b" / "a ≈ b" / "a not worse than b").
        metric: ``aubc``, ``final``, ``best`` (per seed, from :func:`results.summarize`) or
            ``cycle`` (the values of one cycle; pass ``cycles=<int>``, or use :func:`per_cycle`).
        kind: ``superiority``, ``equivalence`` or ``non_inferiority``.
        margin: The claim's margin in metric units (required for equivalence and
            non-inferiority; for superiority the amount a must beat b by, default 0).
        alpha: Significance level in (0, 0.5).
        cycles: Cycles to keep before summarising (None = all); one cycle for ``metric="cycle"``.
        column: Column holding the levels (``strategy``, or an option column such as ``zeta``
            added by :func:`results.add_option_column`).
        summary_metric: Per-cycle metric underneath (default: accuracy or mae, whichever exists).

    Returns:
        A :class:`Comparison`.
    """
    alpha = _check_alpha(alpha)
    m = _check_kind(kind, margin)
    _check_levels(frame, column, (a, b))
    cyc = _as_cycles(cycles)
    if metric == "cycle" and (cyc is None or len(cyc) != 1):
        raise ValueError(f"metric='cycle' compares one cycle: pass cycles=<int> (got {cycles!r}) "
                         "or call per_cycle()")
    vm = _value_metric(frame, summary_metric)
    vals = _values(frame, (a, b), column=column, metric=metric, value_metric=vm, cycles=cyc)
    pairs, one_side, bad = _pair(vals, a, b)
    cycle, n_lab = None, None
    if metric == "cycle":
        cycle = cyc[0]
        labs = vals.loc[vals["seed"].isin(pairs["seed"]), "n_labeled"].unique()
        n_lab = int(labs[0]) if len(labs) == 1 else None
    return _comparison(pairs, one_side, bad, a=a, b=b, column=column, metric=metric, value_metric=vm,
                       kind=kind, margin=m, alpha=alpha, cycle=cycle, n_labeled=n_lab,
                       cycles=cyc, user_margin=None if margin is None else float(margin))


def holm_family(comps: Sequence[Comparison], alpha: float) -> list[Comparison]:
    """Holm-adjust ``p`` and ``p_contra`` within a family of comparisons and recompute each verdict.

    Args:
        comps: The family's comparisons (any kinds; each keeps its own rule).
        alpha: Family-wise significance level.

    Returns:
        The comparisons with ``p_adj``, ``p_contra_adj``, ``family_size`` and the verdicts from them.
    """
    p_adj = holm([c.p for c in comps])
    pc_adj = holm([c.p_contra for c in comps])
    size = int(sum(c.p is not None for c in comps))
    out = []
    for c, pa, pca in zip(comps, p_adj, pc_adj):
        if c.p is None:
            out.append(replace(c, family_size=size))
            continue
        note = f"Holm-adjusted over {size} tests"
        out.append(replace(c, p_adj=float(pa), p_contra_adj=float(pca), family_size=size,
                           verdict=_CODES[int(_code(pa, pca, alpha))],
                           reason="; ".join(s for s in (c.reason, note) if s)))
    return out


_ALL_RULE = "reproduced iff every comparison is reproduced (Holm), contradicted iff any is contradicted"


def _overall(comps: Sequence[Comparison]) -> str:
    verdicts = [c.verdict for c in comps]
    if verdicts and all(v == "reproduced" for v in verdicts):
        return "reproduced"
    return "contradicted" if "contradicted" in verdicts else "inconclusive"


def compare_many(frame: pd.DataFrame, a, bs: Sequence, *, kind: str, metric: str = "aubc",
                 margin: float | None = None, alpha: float = 0.05,
                 cycles: int | Iterable[int] | None = None, column: str = "strategy",
                 summary_metric: str | None = None) -> Family:
    """One claim of ``a`` against several baselines ``bs``, Holm-corrected within the family.

    Args:
        frame, a, kind, metric, margin, alpha, cycles, column, summary_metric: As in :func:`compare`.
        bs: The baselines (levels of ``column``).

    Returns:
        A :class:`Family` (``name="compare_many"``) whose ``comparisons`` follow ``bs``; overall
        verdict reproduced iff a is reproduced against every baseline, contradicted iff against any.
    """
    if not len(bs):
        raise ValueError("bs is empty: give at least one baseline")
    alpha = _check_alpha(alpha)
    comps = holm_family([compare(frame, a, b, metric=metric, kind=kind, margin=margin, alpha=alpha,
                                  cycles=cycles, column=column, summary_metric=summary_metric)
                          for b in bs], alpha)
    return Family(name="compare_many", kind=kind, column=column, metric=metric,
                  value_metric=comps[0].value_metric, margin=None if margin is None else float(margin),
                  alpha=alpha, levels=(a, *bs), groups=(), omnibus=None, comparisons=tuple(comps),
                  rule=_ALL_RULE, verdict=_overall(comps), reason="")


def per_cycle(frame: pd.DataFrame, a, b, *, kind: str, margin: float | None = None,
              cycles: Iterable[int] | None = None, alpha: float = 0.05, column: str = "strategy",
              summary_metric: str | None = None, holm_correct: bool = True) -> list[Comparison]:
    """One paired comparison per cycle ("at all cycles", "in the first cycles" claims).

    Holm's correction across the cycles is applied by default (each cycle's verdict then holds
    with family-wise error α). For a claim that needs *every* cycle to hold (an intersection of
    hypotheses) testing each cycle at α without correction is also valid (intersection-union
    principle): pass ``holm_correct=False`` for that reading.

    Args:
        frame, a, b, kind, margin, alpha, column, summary_metric: As in :func:`compare`.
        cycles: Cycles to compare (None = every cycle where both a and b have values).
        holm_correct: Holm-adjust across the cycles.

    Returns:
        :class:`Comparison` records (``metric="cycle"``), ordered by cycle.
    """
    _check_levels(frame, column, (a, b))
    if cycles is None:
        vm = _value_metric(frame, summary_metric)
        sub = frame[frame["metric"] == vm]
        ca = set(sub.loc[sub[column] == a, "cycle"])
        cycles = sorted(ca & set(sub.loc[sub[column] == b, "cycle"]))
    comps = [compare(frame, a, b, metric="cycle", kind=kind, margin=margin, alpha=alpha, cycles=int(c),
                     column=column, summary_metric=summary_metric) for c in sorted(cycles)]
    return holm_family(comps, _check_alpha(alpha)) if holm_correct and comps else comps


def distinct_levels(frame: pd.DataFrame, column: str = "strategy", levels: Sequence | None = None, *,
                    summary_metric: str | None = None, cycles: Iterable[int] | None = None) -> list[tuple]:
    """Group levels whose per-cycle values are exactly equal in every seed and cycle.

    Identical trajectories (e.g. settings that select exactly the same examples) are one
    configuration, not independent confirmations; :func:`grid` keeps the first of each group.

    Args:
        frame: Tidy results of one run.
        column: Column holding the levels.
        levels: Levels to consider (default: every level, in order of appearance).
        summary_metric: Per-cycle metric compared (default: accuracy or mae).
        cycles: Cycles compared (None = all).

    Returns:
        Groups of levels (tuples, in the order of ``levels``; the first member represents the group).
    """
    vm = _value_metric(frame, summary_metric)
    if levels is None:
        levels = list(pd.unique(frame.loc[frame["metric"] == vm, column].dropna()))
    _check_levels(frame, column, levels)
    vals = _values(frame, levels, column=column, metric="cycle", value_metric=vm, cycles=_as_cycles(cycles))
    keys = {}
    for lv in levels:
        t = vals[vals["level"] == lv].sort_values(["seed", "cycle"])
        keys[lv] = (tuple(t["seed"].tolist()), tuple(t["cycle"].tolist()), t["value"].to_numpy(float))
    groups: list[list] = []
    for lv in levels:
        for g in groups:
            ref = keys[g[0]]
            if ref[:2] == keys[lv][:2] and np.array_equal(ref[2], keys[lv][2], equal_nan=True):
                g.append(lv)
                break
        else:
            groups.append([lv])
    return [tuple(g) for g in groups]


def _friedman(frame: pd.DataFrame, reps: Sequence, *, column: str, metric: str, value_metric: str,
              cycles: tuple | None) -> tuple[dict | None, str]:
    """Friedman omnibus over the seeds common to every level (blocks = seeds)."""
    if len(reps) < 3:
        return None, f"omnibus not run: {len(reps)} distinct level(s), Friedman needs >= 3"
    vals = _values(frame, reps, column=column, metric=metric, value_metric=value_metric, cycles=cycles)
    wide = vals.pivot(index="seed", columns="level", values="value")[list(reps)]
    wide = wide[np.isfinite(wide.to_numpy(float)).all(axis=1)]
    if len(wide) < 2:
        return None, f"omnibus not run: {len(wide)} seed(s) common to all levels"
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.friedmanchisquare(*[wide[c].to_numpy(float) for c in wide.columns])
    if not math.isfinite(res.pvalue):
        return None, "omnibus not run: every seed ranks the levels as ties"
    return dict(test="Friedman chi-square over seeds", statistic=float(res.statistic),
                p=float(res.pvalue), n=int(len(wide)), k=len(reps), levels=list(reps)), ""


def grid(frame: pd.DataFrame, levels: Sequence | None = None, *, column: str = "strategy",
         metric: str = "aubc", margin: float, alpha: float = 0.05, cycles: Iterable[int] | None = None,
         summary_metric: str | None = None, collapse: bool = True) -> Family:
    """Grid claim "the levels are equivalent" ("K does not matter", "selectors on par").

    Levels with identical trajectories are collapsed to one (``collapse=True``), Friedman's
    omnibus test is reported, and every pair of the remaining levels gets a TOST at ±``margin``,
    Holm-corrected over the pairs. Overall: reproduced iff every Holm-corrected pairwise TOST
    reproduces (or all levels are identical), contradicted iff any pair is contradicted,
    otherwise inconclusive. The omnibus does not decide (see the module docstring).

    Args:
        frame: Tidy results of one run.
        levels: Levels of ``column`` (default: all, in order of appearance).
        column, metric, margin, alpha, cycles, summary_metric: As in :func:`compare`
            (``metric`` must be a summary metric: aubc, final or best).
        collapse: Count identical trajectories once.

    Returns:
        A :class:`Family` (``name="grid"``, ``kind="equivalence"``).
    """
    alpha = _check_alpha(alpha)
    _check_kind("equivalence", margin)
    if metric not in SUMMARY_METRICS:
        raise ValueError(f"grid metric={metric!r} not one of {SUMMARY_METRICS}")
    vm = _value_metric(frame, summary_metric)
    if levels is None:
        levels = list(pd.unique(frame.loc[frame["metric"] == vm, column].dropna()))
    if len(levels) < 2:
        raise ValueError(f"grid needs >= 2 levels of {column!r}, got {list(levels)}")
    _check_levels(frame, column, levels)
    cyc = _as_cycles(cycles)
    groups = distinct_levels(frame, column, levels, summary_metric=vm, cycles=cyc) if collapse \
        else [(lv,) for lv in levels]
    reps = [g[0] for g in groups]
    omnibus, note = _friedman(frame, reps, column=column, metric=metric, value_metric=vm, cycles=cyc)
    notes = [note] if note else []
    if collapse and len(reps) < len(levels):
        notes.append(f"{len(levels)} levels, {len(reps)} distinct trajectories")
    comps = holm_family([compare(frame, x, y, metric=metric, kind="equivalence", margin=margin,
                                  alpha=alpha, cycles=cyc, column=column, summary_metric=vm)
                          for x, y in itertools.combinations(reps, 2)], alpha)
    if len(reps) == 1:
        verdict = "reproduced"
        notes.append("all levels have identical trajectories: equivalent by construction, no test")
    else:
        verdict = _overall(comps)
    return Family(name="grid", kind="equivalence", column=column, metric=metric, value_metric=vm,
                  margin=float(margin), alpha=alpha, levels=tuple(levels), groups=tuple(groups),
                  omnibus=omnibus, comparisons=tuple(comps),
                  rule="reproduced iff every Holm-corrected pairwise TOST reproduces, contradicted iff "
                       "any pair is contradicted; the Friedman omnibus is reported, not deciding",
                  verdict=verdict, reason="; ".join(notes))


# ----------------------------------------------------------------------------- trends

def _rank_corr_batch(x: np.ndarray, ys: np.ndarray, method: str, ranked: bool = False) -> np.ndarray:
    """Rank correlation of ``x`` [m] with every series ``ys`` [..., m] (Spearman rho or Kendall
    tau-b, ties handled as in scipy.stats.spearmanr / kendalltau); NaN for a constant series.
    ``ranked``: ``ys`` already holds average ranks (a permutation of ranks is again ranks).

    Returns:
        Correlations of shape ``ys.shape[:-1]``.
    """
    ys = np.asarray(ys, float)
    lead, m = ys.shape[:-1], ys.shape[-1]
    flat = ys.reshape(-1, m)                                    # [R, m]
    with np.errstate(all="ignore"):
        if method == "spearman":                                # Pearson correlation of average ranks
            rx = stats.rankdata(x)
            ry = flat if ranked else stats.rankdata(flat, axis=-1)   # [R, m]
            rx, ry = rx - rx.mean(), ry - ry.mean(axis=-1, keepdims=True)
            out = (ry @ rx) / np.sqrt((ry ** 2).sum(axis=-1) * (rx ** 2).sum())
        else:
            iu = np.triu_indices(m, 1)
            sx = np.sign(x[:, None] - x[None, :])[iu]           # [P] pair signs
            out = np.empty(len(flat))
            step = max(1, 2_000_000 // max(1, m * m))           # chunks keep [chunk, m, m] small
            for start in range(0, len(flat), step):
                y = flat[start:start + step]
                sy = np.sign(y[:, :, None] - y[:, None, :])[:, iu[0], iu[1]]   # [chunk, P]
                out[start:start + step] = (sy @ sx) / np.sqrt((sx != 0).sum() * (sy != 0).sum(axis=-1))
    return out.reshape(lead)


def _trend_test(groups: Sequence[tuple[np.ndarray, np.ndarray]], method: str, sign: float,
                n_perm: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified permutation test of the mean rank correlation over ``groups`` [(x, y), ...].

    Under "no trend" the values of each group are exchangeable, so y is permuted within each
    group independently; the p-values are ``(1 + #{permuted ≥ observed}) / (1 + n_perm)`` in the
    claimed direction (``sign``: −1 decreasing, +1 increasing) and in the opposite one. ``y`` may
    carry leading batch axes ([..., m], many experiments at once), which the results follow.

    Returns:
        (observed mean correlation, claimed-direction p, opposite-direction p), each [...].
    """
    rng = np.random.default_rng(seed)
    obs, null = 0.0, 0.0
    for x, y in groups:
        y = np.asarray(y, float)
        if method == "spearman":
            y = stats.rankdata(y, axis=-1)       # rank once; permuting ranks = ranking permuted values
        obs = obs + _rank_corr_batch(x, y, method, ranked=True)                    # [...]
        tiled = np.repeat(y[..., None, :], n_perm, axis=-2)                        # [..., n_perm, m]
        null = null + _rank_corr_batch(x, rng.permuted(tiled, axis=-1), method, ranked=True)
    obs, null = obs / len(groups), null / len(groups)
    eps = 1e-12
    ref = np.asarray(obs)[..., None]
    p_claim = (1 + np.sum(sign * null >= sign * ref - eps, axis=-1)) / (1 + n_perm)
    p_other = (1 + np.sum(sign * null <= sign * ref + eps, axis=-1)) / (1 + n_perm)
    return obs, p_claim, p_other


def trend(frame: pd.DataFrame, x: str, metric: str, *, direction: str = "decreasing", by_seed: bool = True,
          alpha: float = 0.05, method: str = "spearman", cycles: Iterable[int] | None = None,
          summary_metric: str | None = None, n_perm: int = N_PERM) -> Trend:
    """Monotone claim "``metric`` falls/grows with ``x``", tested through rank correlations.

    With ``by_seed`` (the default), one rank correlation per seed between ``x`` and the metric
    (seeds with fewer than 3 points or a constant series are dropped) and their mean; without it,
    one correlation over all points pooled. The test is a permutation test (values permuted within
    each seed, fixed random seed), exact in level whatever the number of points, ties or seeds:
    ``p`` = twice the one-sided p-value in the claimed direction, ``p_contra`` in the opposite one;
    reproduced iff p ≤ α, contradicted iff p_contra ≤ α (as for superiority). The CI is the
    (1 − α) t-interval of the mean per-seed correlation (≥ 2 seeds, clipped to [−1, 1]); it is
    reported and does not decide.

    Args:
        frame: Tidy results, filtered to what the claim is about (one value per (seed, x)).
        x: Column the metric is claimed to vary with (``cycle``, ``n_labeled``, an option column).
        metric: A metric name of the frame (per-row values), or ``aubc``/``final``/``best`` to
            summarise per (x, seed) from ``summary_metric``.
        direction: ``decreasing`` or ``increasing``.
        by_seed: Per-seed correlations (True) or one pooled correlation (False).
        alpha: Significance level.
        method: ``spearman`` or ``kendall``.
        cycles: Cycles kept (None = all).
        summary_metric: Per-cycle metric underneath a summary metric (default accuracy/mae).
        n_perm: Number of random permutations.

    Returns:
        A :class:`Trend`.
    """
    alpha = _check_alpha(alpha)
    if direction not in ("decreasing", "increasing"):
        raise ValueError(f"direction={direction!r} not one of ('decreasing', 'increasing')")
    if method not in ("spearman", "kendall"):
        raise ValueError(f"method={method!r} not one of ('spearman', 'kendall')")
    if x not in frame.columns:
        raise ValueError(f"x={x!r} not in the frame's columns {list(frame.columns)}")
    cyc = _as_cycles(cycles)
    if metric in SUMMARY_METRICS:
        vm = _value_metric(frame, summary_metric)
        levels = list(pd.unique(frame.loc[frame["metric"] == vm, x].dropna()))
        pts = _values(frame, levels, column=x, metric=metric, value_metric=vm, cycles=cyc)
        pts = pts.rename(columns={"level": "x", "value": "y"})[["seed", "x", "y"]]
    else:
        if metric not in set(frame["metric"]):
            raise ValueError(f"metric={metric!r} not in the frame's metrics {sorted(set(frame['metric']))} "
                             f"nor one of {SUMMARY_METRICS}")
        vm = metric
        sub = frame[frame["metric"] == metric]
        if cyc is not None:
            sub = sub[sub["cycle"].isin(cyc)]
        dup = sub.duplicated(["seed", x], keep=False)
        if dup.any():
            row = sub[dup].iloc[0]
            raise ValueError(f"trend needs one {metric!r} value per (seed, {x}): {int(dup.sum())} rows share "
                             f"seed {row['seed']!r}, {x}={row[x]!r}; filter the frame to one strategy/run")
        pts = sub[["seed", x, "value"]].rename(columns={x: "x", "value": "y"})
    pts = pts[np.isfinite(pts["x"].to_numpy(float)) & np.isfinite(pts["y"].to_numpy(float))]
    sign = -1.0 if direction == "decreasing" else 1.0
    name = "Spearman rho" if method == "spearman" else "Kendall tau"
    strata = list(pts.groupby("seed", sort=True)) if by_seed else [(None, pts)]
    groups, seeds, dropped, rhos = [], [], [], []
    for seed, g in strata:
        xv, yv = g["x"].to_numpy(float), g["y"].to_numpy(float)
        rho = float(_rank_corr_batch(xv, yv, method)) if len(g) >= 3 else np.nan
        if math.isfinite(rho):
            groups.append((xv, yv))
            rhos.append(rho)
            seeds.extend(_py(set(g["seed"])) if seed is None else _py([seed]))
        else:
            dropped.extend(_py(set(g["seed"])) if seed is None else _py([seed]))
    notes = [f"seeds with < 3 points or a constant series dropped: {dropped}"] if dropped else []
    base = dict(x=x, metric=metric, value_metric=vm, direction=direction, method=method, by_seed=by_seed,
                alpha=alpha, ci_level=1 - alpha, n_perm=n_perm, seeds=tuple(seeds),
                dropped_seeds=tuple(dropped), rhos=tuple(rhos),
                n=len(rhos) if by_seed else int(sum(len(g[0]) for g in groups)))
    if not groups:
        notes.insert(0, "no seed with >= 3 points and a non-constant series: no test")
        return Trend(**base, mean_rho=None, sd_rho=None, ci_low=None, ci_high=None, p=None, p_contra=None,
                     test="none", verdict="inconclusive", reason="; ".join(notes))
    mean_rho, p1, p2 = (float(v) for v in _trend_test(groups, method, sign, n_perm))
    p, pc = min(1.0, 2 * p1), min(1.0, 2 * p2)
    sd = lo = hi = None
    if len(rhos) >= 2:
        k = len(rhos)
        sd = float(np.std(rhos, ddof=1))
        half = stats.t.ppf(1 - alpha / 2, k - 1) * sd / math.sqrt(k)
        lo, hi = float(max(-1.0, mean_rho - half)), float(min(1.0, mean_rho + half))
    if not by_seed and len(seeds) > 1:
        notes.append("pooled over seeds: seed offsets enter the correlation")
    shuffled = "values shuffled within each seed" if by_seed else "all points shuffled together"
    test = (f"{'mean per-seed' if by_seed else 'pooled'} {name}, permutation test ({shuffled}, "
            f"{n_perm} permutations), one-sided at alpha/2 each direction")
    return Trend(**base, mean_rho=mean_rho, sd_rho=sd, ci_low=lo, ci_high=hi, p=p, p_contra=pc, test=test,
                 verdict=_CODES[int(_code(p, pc, alpha))], reason="; ".join(notes))


# ----------------------------------------------------------------------------- penalty matrix

def _checkpoints(sub: pd.DataFrame, column: str, random: str | None, goal: str,
                 stop_fraction: float | None) -> list:
    """Labeled-set sizes used: all, stopping (exclusive) where random reaches ``stop_fraction`` of
    its final mean (larger-is-better metrics only; the first size always counts)."""
    sizes = sorted(sub["n_labeled"].unique())
    rnd = sub[sub[column] == random] if random is not None else sub.iloc[:0]
    if stop_fraction is None or rnd.empty or goal != "max":
        return sizes
    curve = rnd.groupby("n_labeled")["value"].mean()
    end = curve.loc[curve.index.max()]
    kept = [sizes[0]]
    for s in sizes[1:]:
        if s in curve.index and curve.loc[s] / end > stop_fraction:
            break
        kept.append(s)
    return kept


def penalty_matrix(frame: pd.DataFrame, strategies: Sequence | None = None, metric: str = "accuracy",
                   alpha: float = 0.05, *, column: str = "strategy", random: str | None = "random",
                   stop_fraction: float | None = 0.99, by: Sequence[str] | None = None) -> pd.DataFrame:
    """Pairwise penalty matrix of Ash et al. (2020, Sec. 5), paired by seed.

    At every checkpoint (labeled-set size) and for every pair of strategies, a two-sided paired
    t-test (``scipy.stats.ttest_rel``) over the seeds both have; when p ≤ α the winner (better mean,
    oriented by ``results.METRIC_GOAL``) earns 1 / number-of-checkpoints in its row. Checkpoints
    stop (exclusive) once ``random`` reaches ``stop_fraction`` of its final mean, as in the
    paper's scripts (larger-is-better metrics only). With ``by``, one matrix per setting (e.g.
    ``["dataset"]``) and their sum, as the paper aggregates over settings.

    Orientation: ``matrix.loc[i, j]`` = weighted number of checkpoints at which strategy i is
    significantly better than strategy j. Row sums = wins, column sums = losses (the paper's
    column average: lower is better).

    Args:
        frame: Tidy results.
        strategies: Levels of ``column`` (default: all, in order of appearance).
        metric: Per-cycle metric (``accuracy``, ``mae``, ...).
        alpha: Significance level of each two-sided test.
        column: Column holding the strategies.
        random: Level used for the stopping rule (None or absent: no stopping).
        stop_fraction: Fraction of random's final value that stops the checkpoints (None: never).
        by: Setting columns to sum over (None: the frame is one setting).

    Returns:
        A square DataFrame (index name ``winner``, columns name ``loser``); ``attrs`` holds the
        checkpoints per setting and the orientation in words.
    """
    alpha = _check_alpha(alpha)
    sub = frame[frame["metric"] == metric]
    if sub.empty:
        raise ValueError(f"metric={metric!r} not in the frame's metrics {sorted(set(frame['metric']))}")
    if strategies is None:
        strategies = list(pd.unique(sub[column].dropna()))
    _check_levels(sub, column, strategies)
    sub = sub[sub[column].isin(list(strategies))]
    goal = results.METRIC_GOAL.get(metric, "max")
    by = list(by or [])
    k = len(strategies)
    total = np.zeros((k, k))
    used = {}
    for key, setting in (sub.groupby(by, sort=True) if by else [((), sub)]):
        dup = setting.duplicated([column, "seed", "n_labeled"], keep=False)
        if dup.any():
            row = setting[dup].iloc[0]
            raise ValueError(f"{column}={row[column]!r} has duplicated rows for seed {row['seed']!r} at "
                             f"n_labeled={row['n_labeled']!r}: pass by= or filter the frame to one run")
        checks = _checkpoints(setting, column, random, goal, stop_fraction)
        used[str(key)] = [int(c) for c in checks]
        for c in checks:
            wide = setting[setting["n_labeled"] == c].pivot(index="seed", columns=column, values="value")
            for i, j in itertools.combinations(range(k), 2):
                si, sj = strategies[i], strategies[j]
                if si not in wide or sj not in wide:
                    continue
                pair = wide[[si, sj]].to_numpy(float)
                pair = pair[np.isfinite(pair).all(axis=1)]                  # [n_paired, 2]
                if len(pair) < 2:
                    continue
                d = pair[:, 0] - pair[:, 1] if goal == "max" else pair[:, 1] - pair[:, 0]
                if np.ptp(d) == 0:                                           # constant difference
                    p = 0.0 if d[0] != 0 else 1.0
                else:
                    p = float(stats.ttest_rel(pair[:, 0], pair[:, 1]).pvalue)
                if p <= alpha:
                    w, lo = (i, j) if d.mean() > 0 else (j, i)
                    total[w, lo] += 1.0 / len(checks)
    out = pd.DataFrame(total, index=pd.Index(strategies, name="winner"),
                       columns=pd.Index(strategies, name="loser"))
    out.attrs["checkpoints"] = used
    out.attrs["orientation"] = ("cell [i, j] = weighted number of checkpoints at which row strategy i is "
                                f"significantly better than column strategy j (paired t, p <= {alpha})")
    return out
