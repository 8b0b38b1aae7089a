"""SAAL quantities of the evidence engine: each against a hand-computed value on a hand-made run
folder, the timing protocol's rows, and one end-to-end verdict on a tiny real run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from alstudy import evidence, params, results, timing
from alstudy.evidence import claims
from alstudy.evidence.quantities import QUANTITIES

COLS = results.COLUMNS


def _q(claim_id, run_dir, prm=None):
    return QUANTITIES[claim_id](run_dir, prm or {}, claims.claim(claim_id))


def _tidy(rows):
    """Tidy metrics rows from (strategy, seed, cycle, metric, value)."""
    return pd.DataFrame([dict(experiment="e", run_id="r", dataset="d", model="m", strategy=s, seed=seed,
                              cycle=c, n_labeled=20 + 10 * c, metric=m, value=v)
                         for s, seed, c, m, v in rows], columns=COLS)


def test_every_runnable_saal_quantity_claim_has_a_function():
    for c in claims.load_claims():
        if c.paper == "saal" and c.runnable and c.kind in ("theorem_check", "correlation", "cost_ratio"):
            if c.id == "saal.fig1c.lambda1_decreases_fixed_pool":
                continue
            assert c.id in QUANTITIES, c.id


# ----------------------------------------------------------------------------- theory_saal_bound


def _margins(tmp_path):
    rows = []
    # rho 0.01: 4 examples, Eq 7 fails once; kept examples have delta 0, one flipped has 0.3
    for i, (thm, kept, delta) in enumerate([(True, True, 0.0), (True, True, 0.0), (False, False, 0.3),
                                            (True, False, 0.1)]):
        rows.append(dict(rho=0.01, sample=i, thm31=thm, kept=kept, delta=delta, score_pseudo=i, score_true=i))
    # rho 0.05: 10 examples; two groups of 5: perfectly concordant, and one adjacent swap (rho = 0.9)
    ys = [10, 20, 30, 40, 50, 1, 2, 3, 5, 4]
    for i, y in enumerate(ys):
        rows.append(dict(rho=0.05, sample=i, thm31=True, kept=i != 3, delta=0.0 if i != 3 else 0.7,
                         score_pseudo=float(i % 5 + 1), score_true=float(y)))
    pd.DataFrame(rows).to_csv(tmp_path / "margins.csv", index=False)


def test_eq7_share_and_largest_margin_when_kept_per_rho(tmp_path):
    _margins(tmp_path)
    share = _q("saal.thm3_1.pseudo_label_lower_bound", tmp_path)
    assert set(share) == {"rho=0.01", "rho=0.05"}
    assert share["rho=0.01"].tolist() == [0.75] and share["rho=0.05"].tolist() == [1.0]
    kept = _q("saal.prop3_2.zero_margin_when_kept", tmp_path)
    assert kept["rho=0.01"].tolist() == [0.0] and kept["rho=0.05"].tolist() == [0.0]  # flipped rows ignored


def test_pseudo_true_spearman_per_disjoint_group(tmp_path):
    _margins(tmp_path)
    rho = _q("saal.sec3_2.pseudo_scores_track_true", tmp_path)
    # 10 examples -> 2 groups of 5; group 2 has one adjacent swap: 1 - 6 * 2 / (5 * 24) = 0.9
    assert rho == pytest.approx([1.0, 0.9])


def test_remainder_order_median_and_dropped_remainder_share(tmp_path):
    rows = []
    coef = {0: (2.0, 3), 1: (5.0, 3), 2: (1.0, 2)}  # R3 = c * rho^k
    for rho in (0.05, 0.001, 0.002):
        for i, (c, k) in coef.items():
            rows.append(dict(rho=rho, sample=i, remainder=c * rho**k, holds=(i == 0) or rho != 0.05))
        # a fourth example whose remainder changes sign between the two smallest radii: left out
        rows.append(dict(rho=rho, sample=3, remainder=1e-6 if rho == 0.001 else -1e-6, holds=False))
    pd.DataFrame(rows).to_csv(tmp_path / "bound_terms.csv", index=False)
    order = _q("saal.thm3_3.bound_with_remainder", tmp_path)
    assert order == pytest.approx([3.0])  # median of 3, 3, 2
    share = _q("saal.ext.thm3_3.dropped_remainder.diagnostic", tmp_path)
    assert share.tolist() == [0.25]  # at rho = 0.05 only example 0 of 4 holds


def test_theory_quantities_absent_files_give_none(tmp_path):
    for cid in ("saal.thm3_1.pseudo_label_lower_bound", "saal.prop3_2.zero_margin_when_kept",
                "saal.sec3_2.pseudo_scores_track_true", "saal.thm3_3.bound_with_remainder",
                "saal.ext.thm3_3.dropped_remainder.diagnostic"):
        assert _q(cid, tmp_path) is None, cid


# ----------------------------------------------------------------------------- AL notebooks (metrics.csv)


def test_per_seed_means_of_the_claims_arm(tmp_path):
    rows = []
    for seed in (0, 1):
        for cycle in (0, 1, 2):
            v = 0.1 * (seed + 1) + 0.01 * cycle
            rows += [("saal", seed, cycle, "bound_corr_loss", v), ("saal", seed, cycle, "bound_corr_grad", -v),
                     ("saal", seed, cycle, "bound_corr_eig", 2 * v), ("saal", seed, cycle, "bound_holds", 1.0 - v),
                     ("rho=0.05", seed, cycle, "psi", 0.9 + v / 10), ("rho=0.1", seed, cycle, "psi", 0.0),
                     ("rho=0.05", seed, cycle, "margin_ratio", v), ("rho=0.1", seed, cycle, "margin_ratio", 9.0)]
    _tidy(rows).to_csv(tmp_path / "metrics.csv", index=False)
    want = np.array([0.11, 0.21])  # per seed: the mean over its rounds 0, 1, 2
    assert _q("saal.fig1a.score_corr_loss", tmp_path) == pytest.approx(want)
    assert _q("saal.fig1a.score_corr_grad", tmp_path) == pytest.approx(-want)
    assert _q("saal.fig1a.score_corr_eig", tmp_path) == pytest.approx(2 * want)
    assert _q("saal.fig4a.psi_high_at_005", tmp_path) == pytest.approx(0.9 + want / 10)  # rho=0.1 rows left out
    assert _q("saal.fig4b.margin_ratio_small_at_005", tmp_path) == pytest.approx(want)
    pooled = _q("saal.ext.thm3_3.dropped_remainder_over_rounds.diagnostic", tmp_path)
    assert pooled == pytest.approx([1.0 - want.mean()])  # one pooled share: a point check


def test_one_step_vs_five_step_spearman_row(tmp_path):
    pd.DataFrame([dict(variant="paper", reference="paper", spearman=1.0, overlap=1.0, candidates=50),
                  dict(variant="asam", reference="paper", spearman=0.4, overlap=0.2, candidates=50),
                  dict(variant="many", reference="paper", spearman=0.97, overlap=0.9, candidates=50)]
                 ).to_csv(tmp_path / "score_correlations.csv", index=False)
    prm = params.validate(strategies={"paper": {"strategy": "saal"},
                                      "asam": {"strategy": "saal", "perturbation": "asam"},
                                      "many": {"strategy": "saal", "ascent_steps": 5}})
    assert _q("saal.eq3.first_order_step", tmp_path, prm).tolist() == [0.97]
    no_ascent = params.validate(strategies={"paper": {"strategy": "saal"}, "many": {"strategy": "saal"}})
    assert _q("saal.eq3.first_order_step", tmp_path, no_ascent) is None


# ----------------------------------------------------------------------------- saal_timing


def _timing_rows(tmp_path):
    """Two repeats + a warm-up; each unit has two cycles (cycle 0 trains + selects, cycle 1 trains)."""
    train = {  # (strategy, optimizer, repeat) -> (train cycle 0, train cycle 1), select cycle 0
        ("random", "adam", 0): ((1.0, 3.0), 0.01), ("random", "sam", 0): ((4.0, 4.0), 0.01),
        ("random", "adam", 1): ((2.0, 2.0), 0.02), ("random", "sam", 1): ((3.0, 5.0), 0.02),
        ("saal", "adam", 0): ((1.0, 1.0), 4.0), ("saal", "sam", 0): ((2.0, 2.0), 4.0),
        ("saal", "adam", 1): ((1.0, 3.0), 2.0), ("saal", "sam", 1): ((2.0, 6.0), 6.0),
        ("entropy", "adam", 0): ((1.0, 1.0), 0.5), ("entropy", "sam", 0): ((2.0, 2.0), 0.5),
        ("entropy", "adam", 1): ((1.0, 1.0), 1.0), ("entropy", "sam", 1): ((2.0, 2.0), 1.0),
    }
    rows = []
    for (s, o, r), ((t0, t1), sel) in train.items():
        base = dict(strategy=s, optimizer=o, seed=0, repeat=r, warmup=False, order=0)
        rows += [{**base, "cycle": 0, "n_labeled": 20, "metric": "train_seconds", "value": t0},
                 {**base, "cycle": 0, "n_labeled": 20, "metric": "select_seconds", "value": sel},
                 {**base, "cycle": 1, "n_labeled": 30, "metric": "train_seconds", "value": t1}]
        if r == 0:  # a slow warm-up repeat, which must be ignored
            rows += [{**base, "repeat": -1, "warmup": True, "cycle": 0, "n_labeled": 20,
                      "metric": m, "value": 100.0} for m in ("train_seconds", "select_seconds")]
    pd.DataFrame(rows, columns=timing.TIMING_COLUMNS).to_csv(tmp_path / "timing.csv", index=False)


def test_round_seconds_drops_warmup_and_takes_medians_over_cycles(tmp_path):
    _timing_rows(tmp_path)
    per = results.round_seconds(pd.read_csv(tmp_path / "timing.csv")).set_index(["strategy", "optimizer", "repeat"])
    assert len(per) == 12 and (per.index.get_level_values("repeat") >= 0).all()
    row = per.loc[("random", "adam", 0)]
    assert row["train_seconds"] == 2.0 and row["select_seconds"] == 0.01 and row["total_seconds"] == 2.01
    assert per.loc[("saal", "sam", 1), "total_seconds"] == 4.0 + 6.0


def test_fig2_cost_ratios_per_repeat(tmp_path):
    _timing_rows(tmp_path)
    # Random, train SAM / Adam: repeat 0: 4 / 2; repeat 1: 4 / 2
    assert _q("saal.fig2.sam_twice_adam_on_random", tmp_path) == pytest.approx([2.0, 2.0])
    # (select + train) SAM / Adam per strategy; coreset, ll4al, vaal, badge are absent from this folder
    gap = _q("saal.fig2.gap_mere_other_strategies", tmp_path)
    assert set(gap) == {"entropy", "saal"}
    assert gap["entropy"] == pytest.approx([2.5 / 1.5, 3.0 / 2.0])
    assert gap["saal"] == pytest.approx([6.0 / 5.0, 10.0 / 4.0])
    # Adam: select / train per round
    bottleneck = _q("saal.fig2.acquisition_is_bottleneck", tmp_path)
    assert bottleneck["saal"] == pytest.approx([4.0 / 1.0, 2.0 / 2.0])
    assert bottleneck["entropy"] == pytest.approx([0.5, 1.0])
    # Adam: SAAL's select over each baseline's
    slower = _q("saal.fig2.saal_slower_than_most", tmp_path)
    assert set(slower) == {"random", "entropy"}
    assert slower["random"] == pytest.approx([400.0, 100.0])
    assert slower["entropy"] == pytest.approx([8.0, 2.0])


def test_scorer_speedup_from_scoring_speed_csv(tmp_path):
    pd.DataFrame([{"method": "batched (alstudy.persample)", "candidates": 100, "seconds": 0.5,
                   "seconds_per_candidate": 0.005},
                  {"method": "deep copy per candidate (official pattern)", "candidates": 10, "seconds": 0.2,
                   "seconds_per_candidate": 0.02}]).to_csv(tmp_path / "scoring_speed.csv", index=False)
    assert _q("saal.ext.batched_scorer_speedup", tmp_path) == pytest.approx([4.0])
    assert _q("saal.fig2.sam_twice_adam_on_random", tmp_path / "missing") is None


def test_timing_summary_medians_and_ratios(tmp_path):
    _timing_rows(tmp_path)
    s = timing.summary(pd.read_csv(tmp_path / "timing.csv")).set_index(["strategy", "optimizer"])
    assert s.loc[("random", "adam"), "repeats"] == 2
    assert s.loc[("random", "adam"), "train_median"] == 2.0
    assert s.loc[("random", "sam"), "train_ratio_median"] == pytest.approx(2.0)
    assert s.loc[("saal", "sam"), "total_ratio_median"] == pytest.approx(np.median([6 / 5, 10 / 4]))
    assert s.loc[("saal", "adam"), "select_iqr"] == pytest.approx(np.subtract(*np.percentile([4.0, 2.0], [75, 25])))


# ----------------------------------------------------------------------------- the protocol, end to end


def _tiny(tmp_path, **extra):
    return params.validate({"experiment": "saal_timing", "dataset": "digits", "max_train": 80, "max_test": 40,
                            "strategies": ["random", "saal"], "seeds": [0], "initial_size": 10, "budget": 5,
                            "cycles": 1, "candidates": 20, "epochs": 1, "batch_size": 32, "progress": False,
                            "threads": 1, "results_dir": str(tmp_path), **extra})


def test_round_timing_rows_interleave_and_flag_the_warmup(tmp_path):
    p = _tiny(tmp_path)
    frame = timing.round_timing(p, tmp_path / "run", repeats=3, warmup=1)
    saved = pd.read_csv(tmp_path / "run" / "timing.csv")
    assert len(saved) == len(frame) and set(saved.columns) == set(timing.TIMING_COLUMNS)
    assert sorted(saved["repeat"].unique()) == [-1, 0, 1, 2]
    assert (saved["warmup"] == (saved["repeat"] < 0)).all()
    # per unit: 2 trainings (cycles 0, 1) and 1 selection; 4 repeats x 2 strategies x 2 optimizers
    assert len(saved) == 4 * 2 * 2 * 3
    first = saved.drop_duplicates(["repeat", "strategy", "optimizer"]).set_index(["repeat", "strategy", "optimizer"])
    for r in (-1, 0, 1, 2):  # Adam first in even pass numbers (the warm-up is pass 0), SAM first in odd
        want_first = "adam" if (r + 1) % 2 == 0 else "sam"
        assert first.loc[(r, "saal", want_first), "order"] == 0
    # the same labeled-set sizes for both optimizers, from the same seeding
    sizes = saved.groupby(["optimizer"])["n_labeled"].apply(sorted)
    assert sizes["adam"] == sizes["sam"]
    env = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert {"torch", "threads", "loadavg_before", "loadavg_after"} <= set(env)
    assert (tmp_path / "run" / "params.yaml").exists()


def test_round_timing_rejects_bad_protocols(tmp_path):
    p = _tiny(tmp_path)
    with pytest.raises(ValueError, match="repeats"):
        timing.round_timing(p, tmp_path, repeats=0)
    with pytest.raises(ValueError, match="warmup"):
        timing.round_timing(p, tmp_path, warmup=-1)
    with pytest.raises(ValueError, match="optimizers"):
        timing.round_timing(p, tmp_path, optimizers=["adam"])


def test_judge_run_on_a_tiny_real_timing_run(tmp_path):
    p = _tiny(tmp_path)
    run_dir = tmp_path / "run"
    timing.round_timing(p, run_dir)  # the default protocol: 1 warm-up + 10 repeats
    records = evidence.judge_run("saal_timing", run_dir, p)
    by_id = {r.claim: r for r in records}
    assert set(by_id) == {c.id for c in claims.claims_for("saal_timing") if c.runnable}
    assert all(not r.applies for r in records)  # not the cpu preset: shown, not counted
    twice = by_id["saal.fig2.sam_twice_adam_on_random"]
    assert twice.verdict in ("reproduced", "contradicted", "inconclusive") and twice.n == 10
    # the headline is the mean of the per-repeat ratios, recomputed here by a plain loop
    t = pd.read_csv(run_dir / "timing.csv")
    t = t[~t["warmup"] & (t["strategy"] == "random") & (t["metric"] == "train_seconds")]
    ratios = []
    for r in range(10):
        med = {o: t[(t["repeat"] == r) & (t["optimizer"] == o)]["value"].median() for o in ("adam", "sam")}
        ratios.append(med["sam"] / med["adam"])
    assert twice.diff == pytest.approx(np.mean(ratios))
    assert twice.ci_low < twice.diff < twice.ci_high
    assert by_id["saal.ext.batched_scorer_speedup"].verdict == "not_computed"  # no scoring_speed.csv
    saved = json.loads((run_dir / "verdict.json").read_text())["records"]
    assert [r["claim"] for r in saved] == [r.claim for r in records]
    assert (run_dir / "verdict.md").read_text() == evidence.render_markdown(records)


def test_every_saal_quantity_belongs_to_a_quantity_claim_of_a_notebook():
    for cid in QUANTITIES:
        if cid.startswith("saal."):
            c = claims.claim(cid.split(":")[0])
            if cid.endswith(":gate"):  # a learnability gate of a comparison claim
                assert c.notebook is not None and c.gate is not None, cid
                continue
            assert c.notebook is not None and c.kind in ("theorem_check", "correlation", "cost_ratio"), cid


# ----------------------------------------------------------------------------- engine details met while wiring


def test_interaction_claim_with_one_optimizer_run_is_not_computed():
    from alstudy.evidence import verdicts

    rows = []
    for s, acc in (("saal", 0.8), ("random", 0.7), ("entropy", 0.6), ("coreset", 0.6), ("ll4al", 0.6),
                   ("vaal", 0.6), ("badge", 0.6)):
        for seed in (0, 1):
            rows += [(s, seed, c, "accuracy", acc + 0.01 * c + 0.001 * seed) for c in (0, 1)]
    frame = _tidy(rows).assign(optimizer="adam")  # no SAM run next to it
    out = verdicts.judge(claims.claim("saal.table1.fashion.advantage_larger_with_adam"), frame)
    assert out["verdict"] == "not_computed" and "both optimizer groups" in out["reason"]


def test_threshold_headline_names_the_claims_comparison():
    from alstudy.evidence import verdicts

    ge = claims.Threshold(op="ge", value=1.0)
    le = claims.Threshold(op="le", value=0.0)
    assert "(needs ≥ 1)" in verdicts.check_threshold([1.0], ge)["headline"]
    assert verdicts.check_threshold([1.0], ge)["verdict"] == "reproduced"
    assert "(needs ≤ 0)" in verdicts.check_threshold([0.0], le)["headline"]
    assert "(needs > 0)" in verdicts.check_threshold([0.2, 0.3], claims.Threshold(op="gt", value=0.0))["headline"]
