"""The claim registry: schema enforcement, coverage of both papers, consistency with the repo."""

import copy
import tomllib
from pathlib import Path

import pytest
import yaml

from alstudy.evidence import claims as C

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = C.load_claims()
BY_ID = {c.id: c for c in REGISTRY}

BASE = {
    "id": "ns.test.entry",
    "paper": "noise_stability",
    "where": "Section 5.1",
    "quote": "some text",
    "kind": "equivalence",
    "compare": {"a": "K=30", "b": ["K=1", "K=10"], "metric": "aubc",
                "summary_metric": "accuracy"},
    "margin": 0.01,
    "margin_note": "one accuracy point",
    "notebook": "ns_ablation_k",
    "preset": "cpu",
    "not_run": None,
    "extension": False,
    "setting": "MNIST",
}


def _entry(**changes):
    entry = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is _DROP:
            entry.pop(key)
        else:
            entry[key] = value
    return entry


_DROP = object()


def _preset(c):
    return yaml.safe_load((ROOT / c.preset_path).read_text()) or {}


def _labels(preset):
    return set(preset.get("strategies", []))  # list of names, or the keys of a label mapping


def _values(c, column):
    """Values a run parameter takes in the claim's runs (batch grid, else the preset)."""
    if c.batch is not None:
        grid = (yaml.safe_load((ROOT / c.batch_path).read_text()) or {}).get("grid", {})
        if column in grid:
            return {v if not isinstance(v, list) else tuple(v) for v in grid[column]}
    preset = _preset(c)
    return {preset[column]} if column in preset else set()


# ---- the shipped registry ---------------------------------------------------------------------


def test_registry_loads_with_unique_dotted_ids():
    ids = [c.id for c in REGISTRY]
    assert len(ids) == len(set(ids))
    assert all(c.id.split(".")[0] in {"ns", "saal", "quickstart"} for c in REGISTRY)
    assert all(isinstance(c, C.Claim) for c in REGISTRY)
    with pytest.raises(Exception):  # frozen
        REGISTRY[0].kind = "trend"


def test_both_papers_are_covered():
    for paper in C.PAPERS:
        mine = [c for c in REGISTRY if c.paper == paper]
        assert len(mine) >= 30, paper
        assert any(c.runnable for c in mine), paper
        assert {"superiority", "theorem_check", "cost_ratio", "summary"} <= {c.kind for c in mine}


def test_claims_named_by_the_issue_are_registered():
    for cid in ["ns.fig1.mnist.early_cycles_rapid", "ns.sec4_1.imbalanced_robust",
                "ns.fig2_left.ames.random_competitive_after_two",
                "ns.sec3_4.regression_feature_over_output", "ns.appa2.log_n_dependence",
                "saal.fig6.adam.fashion.higher_accuracy_more_quickly",
                "saal.table1.fashion.advantage_larger_with_adam",
                "saal.fig2.gap_mere_other_strategies", "saal.table1.adam.cifar100.outperforms",
                "saal.table1.fashion.ll4al_worse_with_sam",
                "ns.fig2_middle.cityscapes.remarkable_improvement",
                "saal.fig5.voc.highest_final_map"]:
        assert cid in BY_ID, cid


def test_every_experiment_notebook_has_a_runnable_claim():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        if path.stem == "figures":
            continue
        assert any(c.runnable for c in C.claims_for(path.stem)), path.stem


def test_runnable_claims_name_an_existing_notebook_preset_and_batch():
    for c in REGISTRY:
        if not c.runnable:
            continue
        assert (ROOT / "notebooks" / f"{c.notebook}.ipynb").exists(), c.id
        assert (ROOT / c.preset_path).exists(), f"{c.id}: {c.preset_path}"
        if c.batch is not None:
            batch = yaml.safe_load((ROOT / c.batch_path).read_text())
            assert batch["notebook"] == c.notebook, c.id
            assert Path(batch["preset"]) == c.preset_path, c.id


def test_runnable_claims_compare_arms_the_preset_runs():
    for c in REGISTRY:
        if not c.runnable or c.compare is None:
            continue
        cmp, preset = c.compare, _preset(c)
        if "strategies" not in preset:  # theory notebooks: no strategy list to check against
            continue
        labels = _labels(preset)
        arms = ({cmp.a} if cmp.a is not None else set()) | set(cmp.b) | set(cmp.levels)
        if cmp.column == "strategy":
            assert arms <= labels, f"{c.id}: {arms - labels} not in {c.preset_path}"
        else:
            assert arms <= _values(c, cmp.column), f"{c.id}: {cmp.column} = {arms}"
        for column, value in cmp.filter.items():
            want = set(value) if isinstance(value, tuple) else {value}
            have = labels if column == "strategy" else _values(c, column)
            assert want <= have, f"{c.id}: filter {column} = {want}"
        if cmp.between is not None:
            assert {cmp.between.a, cmp.between.b} <= _values(c, cmp.between.column), c.id


def test_margins_and_reasons():
    for c in REGISTRY:
        if c.kind in ("equivalence", "non_inferiority"):
            assert c.margin is not None and c.margin > 0 and c.margin_note, c.id
        else:
            assert c.margin is None, c.id
        assert c.not_run is None or c.not_run.strip(), c.id
        if c.kind != "summary" and not c.runnable:
            assert c.not_run, c.id
        if c.diagnostic:
            assert c.extension, c.id


def test_summaries_reference_registered_claims_of_the_same_paper():
    for c in REGISTRY:
        if c.kind == "summary":
            assert c.covered_by and all(BY_ID[r].paper == c.paper for r in c.covered_by), c.id


def test_dense_task_stand_in_claims_run_behind_a_learnability_gate():
    for notebook in ("ns_segmentation", "saal_detection"):
        mine = C.claims_for(notebook)
        runnable = [c for c in mine if c.not_run is None]
        assert runnable, notebook
        assert all(c.extension and c.gate is not None for c in runnable), notebook  # stand-ins, gated
        assert all(c.not_run for c in mine if not c.extension), notebook  # the real datasets: not here


# ---- the corrected claims -------------------------------------------------------------------------


def test_table1_tests_plain_saal_superiority_over_every_baseline():
    baselines = {"random", "entropy", "coreset", "ll4al", "vaal", "badge"}
    table1 = [c for c in REGISTRY if c.id.startswith("saal.table1.") and c.id.endswith(".outperforms")]
    assert len(table1) == 7  # seven of eight combinations (SAM/SVHN is the exception)
    for c in table1:
        assert c.kind == "superiority" and not c.extension, c.id
        assert c.compare.a == "saal" and set(c.compare.b) == baselines, c.id
    div = [c for c in REGISTRY if c.compare is not None and c.compare.a == "saal_div"]
    assert div and all(c.extension for c in div)


def test_no_claim_that_sam_improves_every_strategy():
    for c in REGISTRY:
        assert "improves_every" not in c.id and "improves every" not in (c.note or ""), c.id
        cmp = c.compare
        if cmp is not None and cmp.column == "optimizer" and cmp.a == "sam":
            assert c.kind == "cost_ratio", c.id  # only the time claim puts SAM first
    advantage = BY_ID["saal.table1.fashion.advantage_larger_with_adam"]
    assert advantage.compare.between == C.Between("optimizer", "adam", "sam")
    assert advantage.compare.a == "saal" and advantage.kind == "superiority"
    ll4al = BY_ID["saal.table1.fashion.ll4al_worse_with_sam"]
    assert (ll4al.compare.a, ll4al.compare.b) == ("adam", ("sam",))
    assert ll4al.compare.filter["strategy"] == "ll4al"


def test_fashion_mnist_noise_stability_is_an_extension():
    fashion = [c for c in REGISTRY if c.notebook == "ns_classification" and c.preset == "cpu_fashion"]
    assert fashion and all(c.extension for c in fashion)
    assert all(c.extension for c in REGISTRY if "fashion" in c.id and c.paper == "noise_stability")


def test_theorem_3_3_keeps_its_remainder_and_the_dropped_version_is_a_diagnostic():
    thm = BY_ID["saal.thm3_3.bound_with_remainder"]
    assert thm.kind == "theorem_check" and not thm.extension and not thm.diagnostic
    assert "remainder" in thm.compare.quantity and thm.compare.threshold.op == "ge"
    dropped = [c for c in REGISTRY if c.id.startswith("saal.ext.thm3_3.dropped_remainder")]
    assert dropped and all(c.extension and c.diagnostic for c in dropped)


# ---- schema enforcement ---------------------------------------------------------------------------


def test_the_base_entry_is_valid():
    c = C.parse_claim(_entry())
    assert c.compare.b == ("K=1", "K=10") and c.compare.family and c.compare.better == "higher"
    assert c.runnable and c.preset_path == Path("params/ns_ablation_k.cpu.yaml")


@pytest.mark.parametrize("changes, key", [
    (dict(kind="superority"), "kind"),
    (dict(paper="noisestability"), "paper"),
    (dict(colour="red"), "colour"),
    (dict(margin=_DROP), "margin"),
    (dict(margin=-0.01), "margin"),
    (dict(margin_note=_DROP), "margin_note"),
    (dict(setting=_DROP), "setting"),
    (dict(not_run=""), "not_run"),
    (dict(extension="no"), "extension"),
    (dict(diagnostic=True), "diagnostic"),
    (dict(notebook=None), "notebook"),
    (dict(kind="superiority"), "margin"),
    (dict(compare={"a": "K=30", "b": "K=1", "metric": "auc", "summary_metric": "accuracy"}),
     "compare.metric"),
    (dict(compare={"a": "K=30", "b": "K=1", "metric": "cycle", "summary_metric": "accuracy"}),
     "compare.cycles"),
    (dict(compare={"a": "K=30", "b": "K=1", "metric": "cycle", "summary_metric": "accuracy",
                   "cycles": {"first_k": 0}}), "compare.cycles.first_k"),
    (dict(compare={"a": "K=30", "b": "K=1", "metric": "aubc", "summary_metric": "psi"}),
     "compare.better"),
    (dict(compare={"a": "K=30", "b": ["K=30"], "metric": "aubc", "summary_metric": "accuracy"}),
     "compare.b"),
    (dict(compare={"a": "K=30", "metric": "aubc", "summary_metric": "accuracy"}), "compare.b"),
    (dict(compare={"a": "K=30", "b": "K=1", "metric": "aubc", "summary_metric": "accuracy",
                   "colour": 1}), "compare.colour"),
    (dict(kind="theorem_check", margin=_DROP, margin_note=_DROP,
          compare={"quantity": "q", "threshold": {"op": "=>", "value": 1}}),
     "compare.threshold.op"),
    (dict(kind="theorem_check", margin=_DROP, margin_note=_DROP,
          compare={"quantity": "q"}), "compare.threshold"),
    (dict(kind="cost_ratio", margin=_DROP, margin_note=_DROP,
          compare={"quantity": "q", "threshold": {"op": "between", "value": [2, 1]}}),
     "compare.threshold.value"),
    (dict(kind="trend", margin=_DROP, margin_note=_DROP,
          compare={"x": "cycle", "direction": "down", "metric": "cycle", "a": "K=30",
                   "summary_metric": "psi"}), "compare.direction"),
    (dict(kind="summary", margin=_DROP, margin_note=_DROP, compare=_DROP, notebook=None,
          preset=None), "covered_by"),
    (dict(id="NS.Bad"), "id"),
])
def test_a_malformed_entry_gives_one_line_naming_id_and_key(changes, key):
    entry = _entry(**changes)
    with pytest.raises(C.ClaimError) as err:
        C.parse_claim(entry)
    msg = str(err.value)
    assert "\n" not in msg
    assert f"claim {entry['id']}" in msg or f"claim {entry['id']!r}" in msg
    assert f"{key} =" in msg and "allowed" in msg


def test_registry_level_errors():
    with pytest.raises(C.ClaimError, match=r"claim ns\.test\.entry: id = .*earlier entry"):
        C.parse_claims([_entry(), _entry()])
    summary = _entry(id="ns.test.summary", kind="summary", compare=_DROP, margin=_DROP,
                     margin_note=_DROP, notebook=None, preset=None, covered_by=["ns.nowhere.x"])
    with pytest.raises(C.ClaimError, match=r"claim ns\.test\.summary: covered_by = 'ns\.nowhere\.x'"):
        C.parse_claims([_entry(), summary])
    with pytest.raises(C.ClaimError, match="non-empty list"):
        C.parse_claims({})


def test_load_claims_reads_a_file(tmp_path):
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump([_entry()]))
    assert [c.id for c in C.load_claims(path)] == ["ns.test.entry"]
    path.write_text(yaml.safe_dump([_entry(kind="guess")]))
    with pytest.raises(C.ClaimError, match=r"claim ns\.test\.entry: kind = 'guess'"):
        C.load_claims(path)


def test_relative_margin_must_name_an_arm():
    entry = _entry(margin=0.02, margin_relative_to="K=1")
    assert C.parse_claim(entry).margin_relative_to == "K=1"
    with pytest.raises(C.ClaimError, match="margin_relative_to = 'random'"):
        C.parse_claim(_entry(margin_relative_to="random"))


# ---- helpers --------------------------------------------------------------------------------------


def test_cycle_indices_skip_the_initial_model():
    def cycles(spec):
        raw = dict(BASE["compare"], metric="cycle", cycles=spec)
        return C.parse_claim(_entry(compare=raw)).compare.cycle_indices([3, 0, 1, 2, 4, 5])

    assert cycles("all") == [1, 2, 3, 4, 5]
    assert cycles({"first_k": 3}) == [1, 2, 3]
    assert cycles({"after_k": 2}) == [3, 4, 5]
    assert cycles([5, 2, 9]) == [2, 5]


def test_threshold_holds():
    t = C.Threshold(op="between", value=(1.5, 2.5))
    assert t.holds(2.0) and not t.holds(2.6)
    assert C.Threshold(op="approx", value=1.0, tol=0.1).holds(1.05)
    assert C.Threshold(op="le", value=0).holds(0) and not C.Threshold(op="lt", value=0).holds(0)


@pytest.mark.parametrize("op, value, statistic", [("between", (0.0, 1.0), "median"),
                                                  ("approx", 1.0, "median"), ("lt", 1.0, "mode")])
def test_a_threshold_built_by_hand_rejects_a_statistic_its_rule_cannot_judge(op, value, statistic):
    with pytest.raises(ValueError, match="Threshold.statistic"):
        C.Threshold(op=op, value=value, tol=0.1 if op == "approx" else None, statistic=statistic)
    assert C.Threshold(op="ge", value=1.0, statistic="median").holds(1.0)


def test_lookup_by_id_and_by_notebook():
    c = C.claim("ns.fig3_right.selectors_similar")
    assert c.kind == "equivalence" and c.notebook == "ns_ablation_selection"
    with pytest.raises(KeyError, match="closest: ns.fig3_right.selectors_similar"):
        C.claim("ns.fig3_right.selector_similar")
    mine = C.claims_for("ns_ablation_k")
    assert {"ns.fig3_middle.k_insensitive", "ns.fig3_middle.k10_competitive"} <= {x.id for x in mine}
    assert all(x.notebook == "ns_ablation_k" for x in mine)


def test_the_registry_ships_as_package_data():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "evidence/*.yaml" in cfg["tool"]["setuptools"]["package-data"]["alstudy"]
    assert (ROOT / "alstudy" / "evidence" / "claims.yaml").exists()
