"""NoiseStability quantities of the claim registry, each against a hand-computed value on a tiny
hand-made run folder; the notebooks' verdict cells; and ``judge_run`` end to end on a tiny run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch

from alstudy import data, evidence, loop, results
from alstudy.evidence import claims, quantities
from alstudy.results import COLUMNS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["ns_classification", "ns_regression", "ns_text_pairs", "ns_ablation_zeta", "ns_ablation_k",
             "ns_ablation_selection", "ns_ablation_variants", "ns_single_sample", "ns_paper_vs_official",
             "theory_noise_stability"]


def q(claim_id: str, run_dir: Path, params: dict | None = None, key: str | None = None):
    """The registered quantity of ``claim_id`` (or its gate) on ``run_dir``."""
    return quantities.QUANTITIES[key or claim_id](run_dir, params or {}, claims.claim(claim_id))


# --------------------------------------------------------------------------- coverage


def test_every_runnable_ns_quantity_claim_has_a_function():
    need = set()
    for c in claims.load_claims():
        if c.paper != "noise_stability" or c.not_run is not None or c.notebook is None:
            continue
        if c.kind in ("theorem_check", "correlation", "cost_ratio") or (
                c.kind == "trend" and c.compare.quantity is not None):
            need.add(c.id)
        if c.gate is not None:
            need.add(f"{c.id}:gate")
    missing = sorted(need - set(quantities.QUANTITIES))
    assert not missing, missing


# --------------------------------------------------------------------------- theory notebook files


def test_eq6_slope_per_repeat(tmp_path):
    rows = []
    for K in (1, 4, 16):
        for sample, sign in ((0, 1.0), (1, -1.0)):  # RMS over the two samples = |value|
            rows.append({"repeat": 0, "K": K, "sample": sample, "rel_error": sign * K ** -0.5})
            rows.append({"repeat": 1, "K": K, "sample": sample, "rel_error": sign * 2.0 / K})
    pd.DataFrame(rows).to_csv(tmp_path / "eq6_vs_K.csv", index=False)
    got = q("ns.eq6.expected_norm_equals_jacobian", tmp_path, {"difference": "finite64"})
    np.testing.assert_allclose(got, [-0.5, -1.0], atol=1e-12)
    # the claim is about the float64 difference: a float32 run does not compute it
    assert q("ns.eq6.expected_norm_equals_jacobian", tmp_path, {"difference": "finite"}) is None
    assert q("ns.eq6.expected_norm_equals_jacobian", tmp_path / "missing") is None


def _concentration(tmp_path: Path) -> None:
    rows = []
    Ks = (4, 16, 64)
    # eq12_norm fractions per (eps, repeat) over K, and the JL bound of that eps
    fractions = {0.1: ([0.5, 1.0, 1.0], [0.5, 0.9, 1.0], 128),  # K_all = 64 -> 64/128 = 0.5
                 0.2: ([1.0, 0.9, 1.0], [1.0, 1.0, 1.0], 32),   # 16 fails -> K_all = 64 -> 2.0
                 0.3: ([0.2, 0.5, 0.9], [0.2, 0.5, 0.9], 50),   # never: K_all > 64 >= 50 -> just above 1.28
                 0.05: ([0.1, 0.2, 0.3], [0.1, 0.2, 0.3], 1000)}  # never, 64 < 1000: undecided
    for eps, (r0, r1, jl) in fractions.items():
        for repeat, fr in ((0, r0), (1, r1)):
            for K, f in zip(Ks, fr):
                rows.append({"repeat": repeat, "K": K, "metric": "eq12_norm", "eps": eps, "value": f, "jl_K": jl})
    for repeat, c in ((0, 3.0), (1, 5.0)):
        for K in Ks:
            rows.append({"repeat": repeat, "K": K, "metric": "eq7_sqdist_rms", "eps": np.nan,
                         "value": c * K ** -0.5, "jl_K": np.nan})
            rows.append({"repeat": repeat, "K": K, "metric": "eq8_inner_rms", "eps": np.nan,
                         "value": c * K ** -0.4, "jl_K": np.nan})
    pd.DataFrame(rows).to_csv(tmp_path / "concentration.csv", index=False)


def test_concentration_ratios_per_eps(tmp_path):
    _concentration(tmp_path)
    got = q("ns.eq12.concentration_norm", tmp_path)
    assert set(got) == {"eps=0.1", "eps=0.2", "eps=0.3", "eps=0.05"}
    assert got["eps=0.1"].tolist() == [0.5]
    assert got["eps=0.2"].tolist() == [2.0]
    assert got["eps=0.3"][0] > 64 / 50 and got["eps=0.3"][0] == pytest.approx(64 / 50, rel=1e-12)
    assert math.isnan(got["eps=0.05"][0])
    # the file holds no eq16 / eq17 rows: not computed
    assert q("ns.eq16.concentration_distance", tmp_path) is None
    assert q("ns.eq17.concentration_inner_product", tmp_path) is None


def test_concentration_family_verdict_through_the_engine(tmp_path):
    _concentration(tmp_path)
    claim = claims.claim("ns.eq12.concentration_norm")
    values = q(claim.id, tmp_path)
    out = evidence.verdicts.judge(claim, quantities={claim.id: values})
    assert out["verdict"] == "contradicted"  # eps = 0.2 and 0.3 need more than the JL K
    ok = {"eps=0.1": values["eps=0.1"]}
    assert evidence.verdicts.judge(claim, quantities={claim.id: ok})["verdict"] == "reproduced"


def test_eq7_eq8_slopes_per_repeat(tmp_path):
    _concentration(tmp_path)
    np.testing.assert_allclose(q("ns.eq7.distance_expectation", tmp_path), [-0.5, -0.5], atol=1e-12)
    np.testing.assert_allclose(q("ns.eq8.inner_product_expectation", tmp_path), [-0.4, -0.4], atol=1e-12)


def _zeta_file(tmp_path: Path) -> None:
    rows = []
    lin = {1e-6: [9.0, 9.0, 9.0], 1e-5: [0.3, 0.1, 0.2], 1e-3: [0.5, 0.4, 0.9], 1e-1: [2.0, 4.0, 3.0]}
    for z, errs in lin.items():
        for sample, e in enumerate(errs):
            rows.append({"difference": "finite64", "zeta": z, "sample": sample, "lin_error": e,
                         "eq6_error": 0.0, "mc_sd": 0.5})
    for sample, (e, mc) in enumerate(zip([0.1, 0.2, 0.6], [0.3, 0.4, 0.5])):
        rows.append({"difference": "finite", "zeta": 1e-3, "sample": sample, "lin_error": e,
                     "eq6_error": 0.0, "mc_sd": mc})
    pd.DataFrame(rows).to_csv(tmp_path / "eq6_vs_zeta.csv", index=False)


def test_eq4_trend_rows_from_1e_5_up(tmp_path):
    _zeta_file(tmp_path)
    got = q("ns.eq4.first_order_small_zeta", tmp_path, {"seed": 3})
    assert got == [{"seed": 3, "x": 1e-5, "value": 0.2}, {"seed": 3, "x": 1e-3, "value": 0.5},
                   {"seed": 3, "x": 1e-1, "value": 3.0}]


def test_default_zeta_ratio(tmp_path):
    _zeta_file(tmp_path)
    got = q("ns.sec4_1.default_zeta_small_noise", tmp_path)
    # each example's float32 linearisation error over the RMS of the predicted MC error (the
    # claim judges their median); the float64 rows at the same zeta are not used
    rms = math.sqrt((0.09 + 0.16 + 0.25) / 3)
    assert got.tolist() == pytest.approx([0.1 / rms, 0.2 / rms, 0.6 / rms])


def test_badge_link_correlations(tmp_path):
    pd.DataFrame({"sample": range(4), "ns_norm": [1.0, 2.0, 3.0, 4.0], "jacobian_norm": [1.0] * 4,
                  "badge_norm": [10.0, 30.0, 20.0, 40.0], "max_prob": [0.9, 0.8, 0.95, 0.5]}
                 ).to_csv(tmp_path / "badge_link.csv", index=False)
    pd.DataFrame({"x": ["ns_norm", "ns_cosine"], "y": ["jacobian_norm", "badge_cosine"],
                  "pearson": [0.9, 0.3], "spearman": [0.95, 0.25], "n": [4, 6]}
                 ).to_csv(tmp_path / "badge_link_correlations.csv", index=False)
    # ranks of 1 - max_prob = [0.1, 0.2, 0.05, 0.5]: [2, 3, 1, 4]; d = [-1, -1, 2, 0]; 1 - 6*6/60
    assert q("ns.sec2_2.hard_examples_sensitive", tmp_path).tolist() == pytest.approx([0.4])
    # ranks of badge_norm: [1, 3, 2, 4]; d = [0, -1, 1, 0]; 1 - 6*2/60
    assert q("ns.ext.eq9.badge_norm_correlation.diagnostic", tmp_path).tolist() == pytest.approx([0.8])
    assert q("ns.ext.eq9.badge_direction_correlation.diagnostic", tmp_path).tolist() == [0.25]


# --------------------------------------------------------------------------- AL run files


def _rows(strategy, seed, cycle, metric, value):
    return dict(experiment="x", run_id="r", dataset="d", model="m", strategy=strategy, seed=seed,
                cycle=cycle, n_labeled=10 * (cycle + 1), metric=metric, value=value)


def test_output_select_cost_per_seed(tmp_path):
    secs = {("paper", 0): [2, 4, 6], ("output features", 0): [1, 2, 2],
            ("paper", 1): [3, 3, 3], ("output features", 1): [6, 6, 1]}
    rows = [_rows(s, seed, c, "select_seconds", v) for (s, seed), vals in secs.items() for c, v in enumerate(vals)]
    rows += [_rows(s, seed, c, "accuracy", 0.5) for (s, seed) in secs for c in range(3)]
    pd.DataFrame(rows, columns=COLUMNS).to_csv(tmp_path / "metrics.csv", index=False)
    # medians: seed 0 4 / 2; seed 1 3 / 6
    assert q("ns.sec3_4.output_is_efficient", tmp_path).tolist() == [2.0, 0.5]


def test_text_gate_uses_the_weakest_claim_arm_and_the_majority_rate(tmp_path):
    final = {0: {"noise_stability": 0.70, "random": 0.62, "coreset": 0.66, "bald": 0.64, "badge": 0.65,
                 "entropy": 0.10},  # not an arm of the claim
             1: {"noise_stability": 0.60, "random": 0.58, "coreset": 0.57, "bald": 0.61, "badge": 0.59,
                 "entropy": 0.10}}
    rows = []
    for seed, arms in final.items():
        for arm, acc in arms.items():
            rows += [_rows(arm, seed, 0, "accuracy", 0.3), _rows(arm, seed, 1, "accuracy", 0.99),
                     _rows(arm, seed, 2, "accuracy", acc)]
    pd.DataFrame(rows, columns=COLUMNS).to_csv(tmp_path / "metrics.csv", index=False)
    key = "ns.ext.text_standin.superiority:gate"
    assert q("ns.ext.text_standin.superiority", tmp_path, key=key) is None  # no class rates stored
    pd.DataFrame({"split": ["train", "train", "test", "test"], "class": [0, 1, 0, 1],
                  "count": [5, 5, 54, 46], "rate": [0.5, 0.5, 0.54, 0.46]}
                 ).to_csv(tmp_path / "class_rates.csv", index=False)
    got = q("ns.ext.text_standin.superiority", tmp_path, key=key)
    np.testing.assert_allclose(got, [0.62 - 0.54, 0.57 - 0.54])


@pytest.mark.parametrize("claim_id, metric", [("ns.ext.segmentation_standin.remarkable_improvement", "miou"),
                                               ("saal.ext.detection_standin.highest_final_map", "map50")])
def test_ceiling_gates_take_the_weakest_arm_of_each_seed(tmp_path, claim_id, metric):
    claim = claims.claim(claim_id)
    arms = [claim.compare.a, *claim.compare.b]
    rng = np.random.default_rng(1)
    final = {(arm, seed): float(v) for arm in arms + ["not_an_arm"] for seed in range(3)
             for v in [rng.uniform(0.2, 0.6)]}
    final[("not_an_arm", 1)] = 0.0  # weaker than every arm, but not compared by the claim
    rows = [_rows(arm, seed, c, metric, v if c == 2 else 0.01) for (arm, seed), v in final.items() for c in range(3)]
    pd.DataFrame(rows, columns=COLUMNS).to_csv(tmp_path / "metrics.csv", index=False)
    pd.DataFrame({"metric": [metric], "value": [0.8]}).to_csv(tmp_path / "ceiling.csv", index=False)
    want = []
    for seed in range(3):  # naive: every arm's last-cycle value, the smallest, over the ceiling
        smallest = 1e9
        for arm in arms:
            smallest = min(smallest, final[(arm, seed)])
        want.append(smallest / 0.8)
    np.testing.assert_allclose(q(claim_id, tmp_path, key=f"{claim_id}:gate"), want)


def test_a_gate_holds_back_the_comparison_until_its_interval_clears_the_bound():
    claim = claims.claim("ns.ext.text_standin.superiority")
    rng = np.random.default_rng(0)
    arms = ["noise_stability", "random", "coreset", "bald", "badge"]
    rows = [_rows(arm, seed, c, "accuracy", 0.6 + 0.02 * c + (0.1 if arm == "noise_stability" else 0.0)
                  + 0.002 * rng.standard_normal())
            for arm in arms for seed in range(5) for c in range(4)]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    key = f"{claim.id}:gate"
    bound = claim.gate.threshold.value
    clear = evidence.judge(claim, frame, quantities={key: bound + np.array([0.08, 0.09, 0.10, 0.11, 0.12])})
    assert clear["verdict"] == "reproduced" and clear["reason"].startswith("gate passed")
    # a mean on the passing side whose interval still reaches below the bound: held back, interval shown
    near = bound + np.array([-0.03, 0.05, -0.02, 0.04, -0.03])
    held = evidence.judge(claim, frame, quantities={key: near})
    assert held["verdict"] == "inconclusive" and near.mean() > bound
    lo, hi = _t_interval(near)
    assert lo < bound < hi
    assert f"interval [{lo:.4g}, {hi:.4g}], n = 5" in held["reason"]
    assert held["reason"].endswith("the comparison alone: reproduced")
    missing = evidence.judge(claim, frame, quantities={})
    assert missing["verdict"] == "inconclusive" and missing["reason"].startswith("gate not computed")


def _t_interval(x):
    """The two-sided 95% t interval of a mean, written out."""
    from scipy import stats as st
    half = st.t.ppf(0.975, len(x) - 1) * np.std(x, ddof=1) / math.sqrt(len(x))
    return x.mean() - half, x.mean() + half


def test_class_rates_counts_each_split():
    ds = data.Dataset(name="t", task="classification", x_train=torch.zeros(5, 1),
                      y_train=torch.tensor([0, 0, 2, 2, 2]), x_test=torch.zeros(4, 1),
                      y_test=torch.tensor([1, 1, 1, 0]), num_classes=3, source="hand-made")
    out = results.class_rates(ds)
    assert out[out["split"] == "train"]["count"].tolist() == [2, 0, 3]
    assert out[out["split"] == "test"]["rate"].tolist() == [0.25, 0.75, 0.0]
    reg = data.Dataset(name="r", task="regression", x_train=torch.zeros(2, 1), y_train=torch.zeros(2),
                       x_test=torch.zeros(2, 1), y_test=torch.zeros(2), num_classes=None, source="hand-made")
    with pytest.raises(ValueError, match="no classes"):
        results.class_rates(reg)


# --------------------------------------------------------------------------- notebooks


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_ends_with_one_engine_call(name):
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    for c in code:
        for line in c.source.splitlines():
            assert not line.lstrip().startswith(("def ", "class ")), line
    last = code[-1].source
    assert f'evidence.judge_run("{name}", ' in last and "evidence.render_markdown(records)" in last
    assert "verdict_" not in "".join(c.source for c in code)


# --------------------------------------------------------------------------- end to end


def test_judge_run_on_a_tiny_real_run_writes_the_registry_claims(tmp_path):
    p = dict(experiment="ns_paper_vs_official", dataset="digits", model="small_cnn",
             model_options={"width": 4},
             strategies={"paper": {"strategy": "noise_stability"},
                         "output features": {"strategy": "noise_stability", "output": "features"}},
             strategy_options={"noise_stability": {"K": 2}}, seeds=[0, 1], initial_size=10, budget=10,
             cycles=1, candidates=50, epochs=1, batch_size=32, max_train=200, max_test=100,
             progress=False, results_dir=str(tmp_path))
    loop.run(p)
    pv = loop.params_mod.validate(p)
    run_dir = loop.run_dir(pv)
    records = evidence.judge_run("ns_paper_vs_official", run_dir, pv)
    payload = json.loads((run_dir / "verdict.json").read_text())
    expected = [c.id for c in claims.claims_for("ns_paper_vs_official")
                if c.not_run is None and c.kind != "summary"]
    assert [r["claim"] for r in payload["records"]] == expected == [r.claim for r in records]
    by_id = {r["claim"]: r for r in payload["records"]}
    for cid in expected:
        c = claims.claim(cid)
        rec = by_id[cid]
        assert rec["quote"] == c.quote and rec["where"] == c.where and rec["kind"] == c.kind
        assert rec["verdict"] in evidence.verdicts.VERDICT_VALUES
        assert rec["applies"] is False  # the tiny run is not the claim's preset
    # the arms of the run are judged; those it lacks are not computed
    assert by_id["ns.sec3_4.classification_output_feasible"]["n"] == 2
    assert by_id["ns.sec3_4.output_is_efficient"]["verdict"] != "not_computed"
    assert by_id["ns.sec3_4.output_is_efficient"]["n"] == 2
    assert by_id["ns.ext.paper_vs_official.official_equivalent"]["verdict"] == "not_computed"
    md = (run_dir / "verdict.md").read_text()
    assert md == evidence.render_markdown(payload["records"])


def test_committed_ns_runs_carry_the_engines_current_verdicts():
    runs = [(name, run) for name in NOTEBOOKS for run in sorted((ROOT / "results" / name).glob("*/"))
            if (run / "params.yaml").exists() or (run / "params.json").exists()]
    assert runs, "no committed NoiseStability runs"
    for name, run in runs:
        path = run / "verdict.json"
        assert path.exists(), f"{run.relative_to(ROOT)} has no verdict.json"
        stored = json.loads(path.read_text())["records"]
        fresh = evidence.judge_run(name, run, write=False)
        assert [r["claim"] for r in stored] == [r.claim for r in fresh], run.relative_to(ROOT)
        for old, new in zip(stored, fresh):
            assert old["verdict"] == new.verdict, (run.relative_to(ROOT), new.claim)
            assert old["diff"] == pytest.approx(new.diff, nan_ok=True), (run.relative_to(ROOT), new.claim)
        assert (run / "verdict.md").read_text() == evidence.render_markdown(stored)


def test_concentration_ratios_per_N_and_eq7_slopes_at_the_largest_N(tmp_path):
    rows = []
    # N = 8: K_all = 16 of a JL K of 32 -> 0.5; N = 64: K_all = 64 of 48 -> 4/3
    for N, fr, jl in ((8, [0.9, 1.0, 1.0], 32), (64, [0.5, 0.9, 1.0], 48)):
        for repeat in (0, 1):
            for K, f in zip((4, 16, 64), fr):
                rows.append({"N": N, "repeat": repeat, "K": K, "metric": "eq12_norm", "eps": 0.1,
                             "value": f, "jl_K": jl})
                slope = -0.5 if N == 64 else -0.9  # only the largest N is the Eq 7 claim's
                rows.append({"N": N, "repeat": repeat, "K": K, "metric": "eq7_sqdist_rms",
                             "eps": np.nan, "value": 2.0 * K ** slope, "jl_K": np.nan})
    pd.DataFrame(rows).to_csv(tmp_path / "concentration.csv", index=False)
    got = q("ns.eq12.concentration_norm", tmp_path)
    assert set(got) == {"N=8, eps=0.1", "N=64, eps=0.1"}
    assert got["N=8, eps=0.1"].tolist() == [0.5]
    assert got["N=64, eps=0.1"].tolist() == [pytest.approx(64 / 48)]
    np.testing.assert_allclose(q("ns.eq7.distance_expectation", tmp_path), [-0.5, -0.5], atol=1e-12)


def test_log_n_dependence_per_check_from_the_worst_rows(tmp_path):
    from alstudy import theory

    rng = np.random.default_rng(0)
    rows = []
    for N in (8, 24, 72):
        for check, n in (("eq12_norm", N), ("eq16_distance", N * (N - 1) // 2)):
            for repeat in (0, 1, 2):
                for K in (16, 64, 256):  # K = 16 is below the estimator's K >= 64 and is ignored
                    law = np.sqrt(n) if check == "eq12_norm" else theory.expected_max_sq_normal(n)
                    rows.append({"N": N, "repeat": repeat, "K": K, "metric": f"{check}_worst", "eps": np.nan,
                                 "value": np.sqrt(law / K) * (7.0 if K == 16 and N == 72 else 1.0)
                                 * np.exp(rng.normal(0, 0.01)), "jl_K": np.nan})
    pd.DataFrame(rows).to_csv(tmp_path / "concentration.csv", index=False)
    got = q("ns.appa2.log_n_dependence", tmp_path)
    assert set(got) == {"Eq 12 norms", "Eq 16 distances"}
    np.testing.assert_allclose(got["Eq 12 norms"], [1.0, 1.0, 1.0], atol=0.1)  # K ∝ √N
    np.testing.assert_allclose(got["Eq 16 distances"], [0.0, 0.0, 0.0], atol=0.1)  # K ∝ log N
    verdict = evidence.judge(claims.claim("ns.appa2.log_n_dependence"),
                             quantities={"ns.appa2.log_n_dependence": got})
    assert verdict["verdict"] == "contradicted"  # one check grows like a power of N
    one_N = pd.DataFrame(rows)
    one_N[one_N["N"] == 72].to_csv(tmp_path / "concentration.csv", index=False)
    assert q("ns.appa2.log_n_dependence", tmp_path) is None  # one N: the dependence is not measured


def test_kcenter_quantities_read_one_value_per_noise_seed(tmp_path):
    assert q("ns.sec3_2.selection_equivalent_to_gradients", tmp_path) is None
    pd.DataFrame({"repeat": [1, 0], "overlap": [0.4, 0.7], "magnitude_ratio": [1.3, 1.1]}).to_csv(
        tmp_path / "kcenter_agreement.csv", index=False)
    assert q("ns.sec3_2.selection_equivalent_to_gradients", tmp_path).tolist() == [0.7, 0.4]
    assert q("ns.sec2_2.diverse_subset_prefers_large_magnitude", tmp_path).tolist() == [1.1, 1.3]


def test_log_n_dependence_is_not_computed_without_a_large_enough_k(tmp_path):
    rows = [{"N": N, "repeat": 0, "K": 16, "metric": "eq12_norm_worst", "eps": np.nan, "value": 0.3, "jl_K": np.nan}
            for N in (8, 24)]
    pd.DataFrame(rows).to_csv(tmp_path / "concentration.csv", index=False)
    assert q("ns.appa2.log_n_dependence", tmp_path) is None
