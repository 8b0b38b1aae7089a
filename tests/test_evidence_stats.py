"""Evidence statistics: hand-computed cases and calibration of the verdict rules by simulation."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

from alstudy import evidence
from alstudy.evidence import stats as ev

ALPHA = 0.05


def _frame(curves: dict, metric: str = "accuracy", step: int = 20) -> pd.DataFrame:
    """Tidy frame from {level: {seed: [value per cycle]}}; n_labeled = step * (cycle + 1)."""
    rows = []
    for level, by_seed in curves.items():
        for seed, values in by_seed.items():
            for cycle, v in enumerate(values):
                rows.append(dict(experiment="toy", run_id="r", dataset="d", model="m", strategy=level,
                                 seed=seed, cycle=cycle, n_labeled=step * (cycle + 1), metric=metric, value=v))
    return pd.DataFrame(rows)


# Student t with 3 degrees of freedom has a closed-form CDF (n = 4 seeds): an independent reference.
def _t3_cdf(t):
    u = t / math.sqrt(3.0)
    return 0.5 + (u / (1 + u * u) + math.atan(u)) / math.pi


def _t3_ppf(q):
    lo, hi = -100.0, 100.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t3_cdf(mid) < q else (lo, mid)
    return (lo + hi) / 2


A4 = {0: [0.50, 0.70, 0.80], 1: [0.55, 0.72, 0.83], 2: [0.48, 0.69, 0.79], 3: [0.52, 0.75, 0.85]}
B4 = {0: [0.50, 0.66, 0.78], 1: [0.55, 0.70, 0.79], 2: [0.48, 0.68, 0.78], 3: [0.52, 0.71, 0.80]}


def _hand_aubc(v):  # trapezoid over n_labeled 20, 40, 60, normalised by the range 40
    return (v[0] / 2 + v[1] + v[2] / 2) * 20 / 40


def test_compare_superiority_matches_a_hand_computed_paired_t():
    c = evidence.compare(_frame({"a": A4, "b": B4}), "a", "b", kind="superiority")
    d = np.array([_hand_aubc(A4[s]) - _hand_aubc(B4[s]) for s in range(4)])
    mean = d.sum() / 4
    sd = math.sqrt(((d - mean) ** 2).sum() / 3)
    se = sd / 2
    t = mean / se
    half = _t3_ppf(0.975) * se
    assert c.n == 4 and c.seeds == (0, 1, 2, 3) and c.dropped_seeds == ()
    assert c.diff == pytest.approx(mean, abs=1e-12)
    assert c.sd_diff == pytest.approx(sd, rel=1e-9)
    assert (c.ci_low, c.ci_high) == pytest.approx((mean - half, mean + half), rel=1e-6)
    assert c.p == pytest.approx(2 * (1 - _t3_cdf(t)), rel=1e-6)      # one-sided p doubled
    assert c.p_contra == 1.0
    assert c.mean_a == pytest.approx(np.mean([_hand_aubc(A4[s]) for s in range(4)]))
    assert c.verdict == ("reproduced" if mean - half > 0 else "inconclusive") == "reproduced"
    assert c.boot_low is None                                         # n < 8
    # the claim the other way round is contradicted with the same p
    r = evidence.compare(_frame({"a": A4, "b": B4}), "b", "a", kind="superiority")
    assert r.verdict == "contradicted" and r.p_contra == pytest.approx(c.p) and r.diff == pytest.approx(-mean)


def test_lower_is_better_metrics_are_oriented_and_raw_means_kept():
    up = evidence.compare(_frame({"a": A4, "b": B4}), "a", "b", metric="final", kind="superiority")
    mae = evidence.compare(_frame({"a": A4, "b": B4}, metric="mae"), "a", "b", metric="final",
                           kind="superiority")
    assert mae.goal == "min" and mae.diff == pytest.approx(-up.diff)   # larger MAE = worse
    assert mae.mean_a == pytest.approx(np.mean([A4[s][-1] for s in range(4)]))
    assert mae.verdict == "contradicted" and up.verdict == "reproduced"


def test_tost_matches_a_hand_computation():
    d = np.array([0.004, -0.002, 0.001, -0.003])
    base = {s: [0.8] for s in range(4)}
    frame = _frame({"a": {s: [0.8 + d[s]] for s in range(4)}, "b": base})
    m = 0.01
    c = evidence.compare(frame, "a", "b", metric="final", kind="equivalence", margin=m)
    mean, sd = d.mean(), math.sqrt(((d - d.mean()) ** 2).sum() / 3)
    se = sd / 2
    p_lo = 1 - _t3_cdf((mean + m) / se)          # H1: diff > -m
    p_hi = _t3_cdf((mean - m) / se)              # H1: diff < +m
    assert c.p == pytest.approx(max(p_lo, p_hi), rel=1e-5)
    q = _t3_ppf(0.95) * se
    assert (c.tost_low, c.tost_high) == pytest.approx((mean - q, mean + q), rel=1e-5)
    assert c.verdict == ("reproduced" if -m < mean - q and mean + q < m else "?") == "reproduced"
    # far outside the margin: the (1 - alpha) CI lies above +m, contradicted with p_contra by hand
    far = _frame({"a": {s: [0.85 + d[s]] for s in range(4)}, "b": base})
    f = evidence.compare(far, "a", "b", metric="final", kind="equivalence", margin=m)
    p_above = 1 - _t3_cdf((0.05 + mean - m) / se)
    assert f.p_contra == pytest.approx(2 * p_above, rel=1e-5) and f.verdict == "contradicted"
    assert f.ci_low > m
    with pytest.raises(ValueError, match="margin"):
        evidence.compare(frame, "a", "b", metric="final", kind="equivalence")


def test_supported_margin_of_one_comparison_is_the_larger_end_of_the_tost_interval():
    d = np.array([0.004, -0.002, 0.001, -0.007])
    frame = _frame({"a": {s: [0.8 + d[s]] for s in range(4)}, "b": {s: [0.8] for s in range(4)}})
    c = evidence.compare(frame, "a", "b", metric="final", kind="equivalence", margin=0.01)
    se = math.sqrt(((d - d.mean()) ** 2).sum() / 3) / 2
    assert ev.supported_margin([c]) == pytest.approx(abs(d.mean()) + _t3_ppf(0.95) * se, rel=1e-6)
    flat = _frame({"a": {s: [0.803] for s in range(4)}, "b": {s: [0.8] for s in range(4)}})
    assert ev.supported_margin([evidence.compare(flat, "a", "b", metric="final", kind="equivalence",
                                                 margin=0.01)]) == pytest.approx(0.003)


def _smallest_margin_by_bisection(frame, bs):
    """The engine itself, asked at many margins: the least one whose verdict is reproduced."""
    ok = lambda m: evidence.compare_many(frame, "a", bs, metric="final", kind="equivalence",
                                         margin=m).verdict == "reproduced"
    lo, hi = 1e-9, 1.0
    assert not ok(lo) and ok(hi)
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


@pytest.mark.parametrize("seed", range(4))
def test_supported_margin_of_a_holm_family_is_where_the_engine_starts_to_reproduce(seed):
    rng = np.random.default_rng(seed)
    a = {s: [0.8 + 0.01 * rng.normal()] for s in range(6)}
    shifts = rng.normal(0, 0.004, 3)
    bs = {f"b{j}": {s: [a[s][0] - shifts[j] - rng.normal(0, 0.003 * (j + 1))] for s in range(6)}
          for j in range(3)}
    frame = _frame({"a": a, **bs})
    fam = evidence.compare_many(frame, "a", list(bs), metric="final", kind="equivalence", margin=0.01)
    got = ev.supported_margin(list(fam.comparisons))
    assert got == pytest.approx(_smallest_margin_by_bisection(frame, list(bs)), rel=1e-6)
    # Holm makes it wider than the widest single TOST interval end
    assert got >= max(max(abs(c.tost_low), abs(c.tost_high)) for c in fam.comparisons)


def test_an_equivalence_verdict_reports_the_margin_its_data_establish():
    claim = evidence.claims.claim("ns.fig3_right.selectors_similar")
    rng = np.random.default_rng(0)
    base = {s: list(0.6 + 0.1 * np.arange(3) + 0.01 * rng.normal()) for s in range(5)}
    frame = _frame({lab: {s: [v + 0.006 * rng.normal() for v in base[s]] for s in range(5)}
                    for lab in ("k-center", "k-means++", "k-DPP")})
    out = evidence.verdicts.judge(claim, frame)
    fam = evidence.compare_many(frame, "k-center", ["k-means++", "k-DPP"], kind="equivalence",
                                margin=claim.margin)
    assert out["supported_margin"] == pytest.approx(ev.supported_margin(list(fam.comparisons)))
    assert out["verdict"] == ("reproduced" if out["supported_margin"] < claim.margin else "inconclusive")
    record = {**out, "claim": claim.id, "extension": False, "applies": True, "quote": claim.quote,
              "where": claim.where, "run": "r", "run_setting": "s", "setting": claim.setting}
    assert f"±{out['supported_margin']:.4g}" in evidence.verdicts.render_markdown([record])
    superiority = evidence.claims.claim("ns.fig4_left.variants_worse")
    assert evidence.verdicts.judge(superiority, frame.replace(
        {"k-center": "NS", "k-means++": "NS-M", "k-DPP": "NS-D"}))["supported_margin"] is None


def test_non_inferiority_rule():
    base = {s: [0.8] for s in range(4)}
    d = np.array([0.004, -0.002, 0.001, -0.006])
    close = _frame({"a": {s: [0.8 + d[s]] for s in range(4)}, "b": base})
    c = evidence.compare(close, "a", "b", metric="final", kind="non_inferiority", margin=0.02)
    se = math.sqrt(((d - d.mean()) ** 2).sum() / 3) / 2
    assert c.null == -0.02 and c.p == pytest.approx(2 * (1 - _t3_cdf((d.mean() + 0.02) / se)), rel=1e-5)
    assert c.verdict == "reproduced"
    worse = _frame({"a": {s: [0.75 + d[s]] for s in range(4)}, "b": base})
    assert evidence.compare(worse, "a", "b", metric="final", kind="non_inferiority",
                            margin=0.02).verdict == "contradicted"
    with pytest.raises(ValueError, match="margin"):
        evidence.compare(close, "a", "b", metric="final", kind="non_inferiority")


def test_pairing_is_by_seed_not_row_order_with_missing_seed_and_nan():
    rng = np.random.default_rng(3)
    offset = {s: 0.1 * s for s in range(6)}                     # large seed effect
    a = {s: [0.5 + offset[s] + 0.01 * s] for s in range(6)}
    b = {s: [0.5 + offset[s]] for s in range(5)}               # b lacks seed 5
    a[4] = [float("nan")]
    frame = _frame({"a": a, "b": b})
    frame = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)   # shuffled rows
    c = evidence.compare(frame, "a", "b", metric="final", kind="superiority")
    assert c.n == 4 and c.seeds == (0, 1, 2, 3) and c.dropped_seeds == (5,) and c.n_nonfinite == 1
    assert c.diff == pytest.approx(np.mean([0.0, 0.01, 0.02, 0.03]))
    assert c.sd_diff == pytest.approx(np.std([0.0, 0.01, 0.02, 0.03], ddof=1))
    assert "dropped" in c.reason
    dup = pd.concat([frame, frame[frame["strategy"] == "b"].head(1)])
    with pytest.raises(ValueError, match="duplicated"):
        evidence.compare(dup, "a", "b", metric="final", kind="superiority")
    del rng


def test_degenerate_cases_are_decided_explicitly():
    same = _frame({"a": A4, "b": A4})
    sup = evidence.compare(same, "a", "b", kind="superiority")
    eq = evidence.compare(same, "a", "b", kind="equivalence", margin=0.01)
    assert sup.diff == 0 and sup.sd_diff == 0 and sup.verdict == "inconclusive" and "zero variance" in sup.reason
    assert eq.verdict == "reproduced" and eq.p == 0 and eq.mde == 0
    shifted = _frame({"a": {s: [v + 0.01 for v in A4[s]] for s in A4}, "b": A4})
    assert evidence.compare(shifted, "a", "b", kind="superiority").verdict == "reproduced"
    one = evidence.compare(_frame({"a": {0: [0.9]}, "b": {0: [0.8]}}), "a", "b", metric="final",
                           kind="superiority")
    assert one.n == 1 and one.p is None and one.verdict == "inconclusive" and "at least 2" in one.reason
    with pytest.raises(ValueError, match="kind"):
        evidence.compare(same, "a", "b", kind="better")
    with pytest.raises(ValueError, match="'c'"):
        evidence.compare(same, "a", "c", kind="superiority")


def test_bootstrap_interval_only_from_eight_seeds_and_records_serialise():
    rng = np.random.default_rng(0)
    frame = _frame({"a": {s: list(0.8 + 0.01 + rng.normal(0, 0.01, 3)) for s in range(8)},
                    "b": {s: list(0.8 + rng.normal(0, 0.01, 3)) for s in range(8)}})
    c = evidence.compare(frame, "a", "b", kind="superiority")
    assert c.boot_low is not None and c.boot_low < c.diff < c.boot_high
    json.dumps(c.to_dict(), allow_nan=False)
    fam = evidence.compare_many(frame, "a", ["b"], kind="superiority")
    json.dumps(fam.to_dict(), allow_nan=False)
    json.dumps(evidence.trend(frame[frame["strategy"] == "a"], "cycle", "accuracy").to_dict(), allow_nan=False)


def test_holm_against_a_hand_worked_list():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06
    assert evidence.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = evidence.holm([0.01, None, 0.04])                   # a missing test is not counted
    assert out[0] == pytest.approx(0.02) and np.isnan(out[1]) and out[2] == pytest.approx(0.04)
    assert evidence.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])
    np.testing.assert_allclose(evidence.holm(np.array([[0.01, 0.02], [0.5, 0.001]])),
                               [[0.02, 0.02], [0.5, 0.002]])          # row-wise families


def test_compare_many_recomputes_verdicts_from_holm_adjusted_p():
    a = {s: [0.80 + 0.01 * s] for s in range(4)}
    gaps = {"b1": [0.010, 0.030, 0.020, 0.035], "b2": [0.012, 0.028, 0.019, 0.036],
            "b3": [0.011, 0.031, 0.021, 0.033]}
    frame = _frame({"a": a, **{k: {s: [a[s][0] - g[s]] for s in range(4)} for k, g in gaps.items()}})
    fam = evidence.compare_many(frame, "a", list(gaps), metric="final", kind="superiority")
    raw = [c.p for c in fam.comparisons]
    assert all(p <= ALPHA for p in raw)                           # each alone is reproduced ...
    assert [c.p_adj for c in fam.comparisons] == pytest.approx(list(evidence.holm(raw)))
    assert all(c.family_size == 3 for c in fam.comparisons)
    for c in fam.comparisons:
        assert c.verdict == ("reproduced" if c.p_adj <= ALPHA else "inconclusive")
    assert any(c.verdict == "inconclusive" for c in fam.comparisons)   # ... not all after Holm
    assert fam.verdict == "inconclusive"


def test_per_cycle_one_record_per_cycle_with_holm():
    frame = _frame({"a": A4, "b": B4})
    recs = evidence.per_cycle(frame, "a", "b", kind="superiority")
    assert [r.cycle for r in recs] == [0, 1, 2] and [r.n_labeled for r in recs] == [20, 40, 60]
    assert recs[0].diff == 0 and recs[0].verdict == "inconclusive"        # shared initial set
    d2 = np.array([A4[s][2] - B4[s][2] for s in range(4)])
    assert recs[2].diff == pytest.approx(d2.mean())
    assert [r.p_adj for r in recs] == pytest.approx(list(evidence.holm([r.p for r in recs])))
    one = evidence.compare(frame, "a", "b", metric="cycle", cycles=2, kind="superiority")
    assert one.p == pytest.approx(recs[2].p)
    with pytest.raises(ValueError, match="one cycle"):
        evidence.compare(frame, "a", "b", metric="cycle", kind="superiority")


def test_option_column_comparison():
    frame = _frame({"s1": A4, "s2": B4})
    frame["zeta"] = frame["strategy"].map({"s1": 0.1, "s2": 1.0})
    c = evidence.compare(frame, 0.1, 1.0, column="zeta", kind="superiority")
    ref = evidence.compare(frame, "s1", "s2", kind="superiority")
    assert c.column == "zeta" and c.diff == pytest.approx(ref.diff) and c.p == pytest.approx(ref.p)


def test_distinct_levels_and_grid_with_friedman_by_hand():
    rng = np.random.default_rng(5)
    base = {s: list(0.8 + rng.normal(0, 0.01, 3)) for s in range(5)}
    other = {s: [v + rng.normal(0, 0.002) for v in base[s]] for s in range(5)}
    third = {s: [v + 0.001 + rng.normal(0, 0.002) for v in base[s]] for s in range(5)}
    frame = _frame({"x1": base, "x2": base, "y": other, "z": third})
    assert evidence.distinct_levels(frame) == [("x1", "x2"), ("y",), ("z",)]
    g = evidence.grid(frame, margin=0.02)
    assert g.groups == (("x1", "x2"), ("y",), ("z",)) and len(g.comparisons) == 3   # pairs of 3 distinct
    # Friedman by hand: ranks within each seed, chi2 = 12/(n k (k+1)) sum R_j^2 - 3 n (k+1); df 2: p = e^{-chi2/2}
    aubc = np.array([[_hand_aubc(c[s]) for c in (base, other, third)] for s in range(5)])
    ranks = aubc.argsort(axis=1).argsort(axis=1) + 1.0
    n, k = aubc.shape
    chi2 = 12 / (n * k * (k + 1)) * (ranks.sum(axis=0) ** 2).sum() - 3 * n * (k + 1)
    assert g.omnibus["statistic"] == pytest.approx(chi2) and g.omnibus["p"] == pytest.approx(math.exp(-chi2 / 2))
    assert all(c.family_size == 3 for c in g.comparisons)
    assert g.verdict == ("reproduced" if all(c.p_adj <= ALPHA for c in g.comparisons) else "inconclusive")
    assert g.verdict == "reproduced"                                    # differences far inside ±0.02
    tight = evidence.grid(frame, margin=1e-4)
    assert tight.verdict in ("inconclusive", "contradicted")
    same = evidence.grid(_frame({"p": base, "q": base}), margin=0.01)
    assert same.verdict == "reproduced" and same.comparisons == () and "identical" in same.reason


def test_trend_on_monotone_toys_and_against_scipy():
    from scipy import stats

    down = _frame({"s": {seed: [0.9 - 0.05 * c + 0.001 * seed for c in range(6)] for seed in range(5)}})
    t = evidence.trend(down, "cycle", "accuracy", direction="decreasing")
    assert t.rhos == (-1.0,) * 5 and t.mean_rho == -1.0 and t.verdict == "reproduced"
    assert t.p == pytest.approx(2 / (1 + t.n_perm))                   # no permutation is as extreme
    assert evidence.trend(down, "cycle", "accuracy", direction="increasing").verdict == "contradicted"
    # 2 seeds x 3 points, both perfectly monotone: exact p = 2 * (1/3!)^2 = 0.056 > alpha
    short = _frame({"s": {seed: [0.9, 0.8, 0.7] for seed in range(2)}})
    s = evidence.trend(short, "cycle", "accuracy")
    assert s.p == pytest.approx(2 / 36, abs=0.01) and s.verdict == "inconclusive"
    rng = np.random.default_rng(2)
    noisy = _frame({"s": {seed: list(rng.normal(size=7).round(1)) for seed in range(4)}})
    for method, fn in (("spearman", stats.spearmanr), ("kendall", stats.kendalltau)):
        r = evidence.trend(noisy, "cycle", "accuracy", method=method)
        ref = [fn(np.arange(7), noisy[noisy["seed"] == sd].sort_values("cycle")["value"]).statistic
               for sd in range(4)]
        assert r.rhos == pytest.approx(ref)
    with pytest.raises(ValueError, match="one 'accuracy' value per"):
        evidence.trend(_frame({"a": A4, "b": B4}), "cycle", "accuracy")


def test_penalty_matrix_orientation_and_stopping_rule():
    rng = np.random.default_rng(4)
    rand = [0.50, 0.60, 0.70, 0.80]                   # reaches 99% of its final value only at the end
    curves = {"random": {}, "good": {}, "bad": {}}
    for seed in range(5):
        noise = rng.normal(0, 0.002, size=(3, 4))
        curves["random"][seed] = list(np.array(rand) + noise[0])
        curves["good"][seed] = list(np.array(rand) + 0.05 + noise[1])
        curves["bad"][seed] = list(np.array(rand) - 0.05 + noise[2])
    frame = _frame(curves)
    m = evidence.penalty_matrix(frame)
    assert m.attrs["checkpoints"]["()"] == [20, 40, 60]   # the last size (ratio 1 > 0.99) is excluded
    expected = pd.DataFrame([[0, 0, 1], [1, 0, 1], [0, 0, 0]], index=["random", "good", "bad"],
                            columns=["random", "good", "bad"], dtype=float)
    pd.testing.assert_frame_equal(m, expected, check_names=False)
    assert m.loc["good"].sum() == 2 and m["bad"].sum() == 2         # rows = wins, columns = losses
    shuffled = evidence.penalty_matrix(frame.sample(frac=1.0, random_state=0))
    pd.testing.assert_frame_equal(shuffled.loc[m.index, m.columns], m)
    # random plateaus at the second size: only the first checkpoint counts, weight 1
    for seed in range(5):
        for s, shift in (("random", 0), ("good", 0.05), ("bad", -0.05)):
            curves[s][seed] = [0.5 + shift + rng.normal(0, 0.002), 0.795 + shift, 0.8 + shift, 0.8 + shift]
    early = evidence.penalty_matrix(_frame(curves))
    assert early.attrs["checkpoints"]["()"] == [20] and early.loc["good", "bad"] == pytest.approx(1.0)


def test_penalty_heatmap_labels_the_cells():
    from alstudy import plots

    m = pd.DataFrame([[0, 1.0], [0.5, 0]], index=pd.Index(["a", "b"], name="winner"),
                     columns=pd.Index(["a", "b"], name="loser"))
    fig = plots.penalty_heatmap(m)
    texts = " ".join(ax.get_ylabel() + ax.get_xlabel() + ax.get_title() for ax in fig.axes)
    assert "row" in texts and "column" in texts


# ----------------------------------------------------------------------------- calibration
# The tests below drive the same decision function compare() uses (ev._decide) on thousands of
# simulated experiments at once; tolerance = 3 binomial standard errors.

N_SIM = 4000


def _tol(rate, n=N_SIM):
    return 3 * math.sqrt(rate * (1 - rate) / n)


@pytest.mark.parametrize("n", [5, 10])
def test_superiority_false_positive_rate_and_power_at_the_mde(n):
    rng = np.random.default_rng(100 + n)
    null = ev._decide(rng.normal(0.0, 1.0, (N_SIM, n)), "superiority", 0.0, ALPHA)
    wrong = np.mean(null["code"] != 0)
    assert wrong <= ALPHA + _tol(ALPHA)
    assert wrong >= ALPHA - _tol(ALPHA)                          # exact t: not vacuously conservative
    delta = evidence.mde(1.0, n, ALPHA)
    hit = np.mean(ev._decide(rng.normal(delta, 1.0, (N_SIM, n)), "superiority", 0.0, ALPHA)["code"] == 1)
    assert abs(hit - 0.8) <= _tol(0.8)


@pytest.mark.parametrize("n", [5, 10])
def test_a_large_seed_effect_does_not_inflate_false_positives(n):
    """Values go through compare's own extraction and pairing (_values, _pair) on shuffled rows."""
    rng = np.random.default_rng(200 + n)
    seed_effect = rng.normal(0, 10.0, (N_SIM, n))                 # every strategy of a seed shifted
    va = 0.8 + seed_effect + rng.normal(0, 0.01, (N_SIM, n))
    vb = 0.8 + seed_effect + rng.normal(0, 0.01, (N_SIM, n))
    seeds = np.arange(N_SIM * n)                                  # (experiment, seed) -> one key
    frame = pd.concat([pd.DataFrame(dict(strategy=s, seed=seeds, cycle=0, n_labeled=20, metric="accuracy",
                                         value=v.ravel())) for s, v in (("a", va), ("b", vb))])
    frame = frame.sample(frac=1.0, random_state=0)
    vals = ev._values(frame, ("a", "b"), column="strategy", metric="cycle", value_metric="accuracy", cycles=(0,))
    pairs, _, _ = ev._pair(vals, "a", "b")
    d = (pairs["va"] - pairs["vb"]).to_numpy().reshape(N_SIM, n)
    assert np.allclose(d, va - vb)
    res = ev._decide(d, "superiority", 0.0, ALPHA)
    assert np.mean(res["code"] != 0) <= ALPHA + _tol(ALPHA)
    # end to end on a few experiments: compare() gives the vectorised verdicts
    for e in range(20):
        sub = _frame({"a": {s: [va[e, s]] for s in range(n)}, "b": {s: [vb[e, s]] for s in range(n)}})
        c = evidence.compare(sub, "a", "b", metric="final", kind="superiority")
        assert c.p == pytest.approx(res["p"][e]) and c.verdict == ev._CODES[int(res["code"][e])]
        assert c.mde == pytest.approx(evidence.mde(c.sd_diff, n, ALPHA))


@pytest.mark.parametrize("n", [5, 10])
def test_equivalence_calibration(n):
    rng = np.random.default_rng(300 + n)
    margin = evidence.mde(1.0, n, ALPHA, kind="equivalence")       # the margin TOST can show at this n
    ok = ev._decide(rng.normal(0.0, 1.0, (N_SIM, n)), "equivalence", margin, ALPHA)
    assert np.mean(ok["code"] == 1) >= 0.8 - _tol(0.8)             # mostly reproduced (bound is conservative)
    assert np.mean(ok["code"] == -1) <= ALPHA + _tol(ALPHA)
    for delta in (margin, 1.5 * margin):                           # at and beyond the margin
        out = ev._decide(rng.normal(delta, 1.0, (N_SIM, n)), "equivalence", margin, ALPHA)
        assert np.mean(out["code"] == 1) <= ALPHA + _tol(ALPHA)
    inside = ev._decide(rng.normal(margin, 1.0, (N_SIM, n)), "equivalence", margin, ALPHA)
    assert np.mean(inside["code"] == -1) <= ALPHA + _tol(ALPHA)    # false "contradicted" at the boundary
    tiny = ev._decide(rng.normal(0.0, 1.0, (N_SIM, n)), "equivalence", 1e-3, ALPHA)
    assert np.mean(tiny["code"] == -1) <= ALPHA + _tol(ALPHA)      # whatever the margin


@pytest.mark.parametrize("n", [5, 10])
def test_non_inferiority_calibration(n):
    rng = np.random.default_rng(400 + n)
    margin = 0.5
    edge = ev._decide(rng.normal(-margin, 1.0, (N_SIM, n)), "non_inferiority", margin, ALPHA)
    assert np.mean(edge["code"] != 0) <= ALPHA + _tol(ALPHA)
    delta = evidence.mde(1.0, n, ALPHA) - margin
    hit = np.mean(ev._decide(rng.normal(delta, 1.0, (N_SIM, n)), "non_inferiority", margin, ALPHA)["code"] == 1)
    assert abs(hit - 0.8) <= _tol(0.8)


@pytest.mark.parametrize("n", [5, 10])
def test_holm_family_wise_error_with_four_null_baselines(n):
    rng = np.random.default_rng(500 + n)
    a = rng.normal(0, 1.0, (N_SIM, 1, n))
    d = a - rng.normal(0, 1.0, (N_SIM, 4, n))                      # [N, 4 baselines, n], correlated via a
    res = ev._decide(d, "superiority", 0.0, ALPHA)
    codes = ev._code(evidence.holm(res["p"]), evidence.holm(res["p_contra"]), ALPHA)   # [N, 4]
    assert np.mean((codes != 0).any(axis=1)) <= ALPHA + _tol(ALPHA)
    assert np.mean((res["code"] != 0).any(axis=1)) > ALPHA + _tol(ALPHA)   # without Holm it is exceeded


def test_trend_permutation_test_calibration_and_power():
    rng = np.random.default_rng(600)
    x = np.arange(4, dtype=float)                                   # few points: where a t-test on rhos errs
    groups = [(x, rng.normal(size=(2000, 4))) for _ in range(5)]    # 5 seeds, 2000 experiments
    _, p1, p2 = ev._trend_test(groups, "spearman", -1.0, n_perm=199)
    wrong = np.mean(ev._code(np.minimum(1, 2 * p1), np.minimum(1, 2 * p2), ALPHA) != 0)
    assert wrong <= ALPHA + _tol(ALPHA, 2000)
    strong = [(x, -x + rng.normal(0, 1.0, size=(2000, 4))) for _ in range(5)]
    _, p1, p2 = ev._trend_test(strong, "spearman", -1.0, n_perm=199)
    assert np.mean(np.minimum(1, 2 * p1) <= ALPHA) > 0.8


# ----------------------------------------------------------------------------- median rule


def test_median_test_against_a_binomial_count_and_order_statistics():
    x = np.array([0.3, 2.1, 0.01, 0.72, 0.75, 0.02, 1.4, 0.03, 0.8, 0.74, 0.05, 0.77])
    n, k_below = x.size, int((x < 1).sum())
    out = evidence.median_test(x, 1.0, "less", ALPHA)
    assert out["p"] == pytest.approx(min(1, 2 * binom.sf(k_below - 1, n, 0.5)))
    assert out["p_contra"] == pytest.approx(min(1, 2 * binom.sf(n - k_below - 1, n, 0.5)))
    # (1 - alpha) order-statistic CI: [x_(j), x_(n+1-j)], j the largest with P(K < j) <= alpha/2
    j = max(j for j in range(1, n // 2 + 1) if binom.cdf(j - 1, n, 0.5) <= ALPHA / 2)
    xs = np.sort(x)
    assert (out["ci_low"], out["ci_high"]) == (xs[j - 1], xs[n - j])
    assert out["median"] == np.median(x)
    assert out["code"] == 1  # 10 of 12 below: 2 P(K >= 10) = 0.039 <= alpha
    assert evidence.median_test(x[:6], 1.0, "less", ALPHA)["code"] == 0  # 5 of 6: 2 P = 0.22


@pytest.mark.parametrize("n", [12, 32])
def test_median_rule_false_positive_rate_and_power_at_its_mde(n):
    """Bimodal values whose population median is exactly the bound: each wrong verdict at most
    alpha/2; a share 1/2 + MDE beyond the bound is reproduced with probability about 0.8."""
    rng = np.random.default_rng(400 + n)
    n_sim = 2000
    side = np.where(rng.random((n_sim, n)) < 0.5, -1.0, 1.0)
    null = 1.0 + side * rng.choice([0.05, 0.7], (n_sim, n)) * rng.exponential(1.0, (n_sim, n))
    codes = np.array([evidence.median_test(row, 1.0, "less", ALPHA)["code"] for row in null])
    for wrong in (1, -1):
        assert np.mean(codes == wrong) <= ALPHA / 2 + _tol(ALPHA / 2, n_sim)
    share = 0.5 + evidence.sign_test_mde(n, ALPHA)
    below = rng.random((n_sim, n)) < share
    alt = np.where(below, 1.0 - rng.exponential(0.3, (n_sim, n)), 1.0 + rng.exponential(0.3, (n_sim, n)))
    hit = np.mean([evidence.median_test(row, 1.0, "less", ALPHA)["code"] == 1 for row in alt])
    assert abs(hit - 0.8) <= _tol(0.8, n_sim) + 0.02  # the binomial power curve is a step function
