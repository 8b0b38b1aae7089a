"""NoiseStability ablation notebooks: presets, tables, round-off report, builders."""

from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from alstudy import notebooks, params, reports
from alstudy.reports import ns_ablations as nsa
from alstudy.results import COLUMNS

ROOT = Path(__file__).resolve().parents[1]
NAMES = list(nsa.EXPERIMENTS)


# --------------------------------------------------------------------------- notebooks, presets


@pytest.mark.parametrize("name", NAMES)
def test_notebook_structure(name):
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert all(c.get("id") for c in nb.cells)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    for c in code:
        for line in c.source.splitlines():
            assert not line.lstrip().startswith(("def ", "class ")), line
    assert nb.cells[0].cell_type == "markdown" and f"params/{name}.paper.yaml" in nb.cells[0].source
    assert nb.cells[1].source.rstrip().endswith("_before = set(globals())")
    assert f'evidence.judge_run("{name}", run_dir, p)' in code[-1].source


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["smoke", "cpu", "paper"])
def test_presets_validate_for_their_notebook(name, kind):
    defaults = notebooks.parameters(ROOT / "notebooks" / f"{name}.ipynb")
    assert set(defaults) <= set(params.SCHEMA), set(defaults) - set(params.SCHEMA)
    assert defaults["experiment"] == name
    preset = yaml.safe_load((ROOT / "params" / f"{name}.{kind}.yaml").read_text())
    assert set(preset) <= set(params.SCHEMA), set(preset) - set(params.SCHEMA)
    p = params.validate({**defaults, **preset})
    assert p["experiment"] == name
    if kind == "cpu":
        assert p["threads"] == 1 and p["dataset"] == "mnist"


def test_defaults_validate_and_run_fast_settings():
    for name in NAMES:
        p = params.validate(notebooks.parameters(ROOT / "notebooks" / f"{name}.ipynb"))
        assert p["dataset"] == "digits" and p["cycles"] <= 2 and len(p["seeds"]) == 1


# --------------------------------------------------------------------------- synthetic results


def _frame(curves, budget=20, initial=20):
    """Tidy accuracy rows from {label: [[accuracy per cycle] per seed]}."""
    rows = []
    for label, per_seed in curves.items():
        for seed, accs in enumerate(per_seed):
            for cycle, a in enumerate(accs):
                rows.append(dict(experiment="x", run_id="r", dataset="mnist", model="small_cnn",
                                 strategy=label, seed=seed, cycle=cycle,
                                 n_labeled=initial + budget * cycle, metric="accuracy", value=a))
    return pd.DataFrame(rows, columns=COLUMNS)


def _naive_aubc(xs, ys):
    area = 0.0
    for i in range(len(xs) - 1):
        area += (ys[i] + ys[i + 1]) / 2 * (xs[i + 1] - xs[i])
    return area / (xs[-1] - xs[0])


def _params(strategies, **kw):
    return params.validate(dict(strategies=strategies, **kw))


def test_option_table_matches_naive_aubc():
    curves = {"K=1": [[0.5, 0.6, 0.7], [0.4, 0.6, 0.8]],
              "K=10": [[0.6, 0.7, 0.9], [0.5, 0.8, 0.9]]}
    p = _params({"K=1": {"strategy": "noise_stability", "K": 1},
                 "K=10": {"strategy": "noise_stability", "K": 10}})
    table = nsa.option_table(_frame(curves), p, "K").set_index("strategy")
    xs = [20, 40, 60]
    for label, per_seed in curves.items():
        vals = [_naive_aubc(xs, ys) for ys in per_seed]
        assert table.loc[label, "aubc_mean"] == pytest.approx(np.mean(vals))
        assert table.loc[label, "aubc_std"] == pytest.approx(np.std(vals, ddof=1))
        assert table.loc[label, "final_mean"] == pytest.approx(np.mean([ys[-1] for ys in per_seed]))
    assert list(table["K"]) == [1, 10]


def test_pick_overlap_against_sets():
    sel = pd.DataFrame({"strategy": ["ref"] * 4 + ["x"] * 4 + ["ref"] * 2 + ["x"] * 2,
                        "seed": [0] * 8 + [1] * 4,
                        "cycle": [0] * 12,
                        "index": [1, 2, 3, 4, 1, 2, 9, 8, 5, 6, 5, 7]})
    ov = nsa.pick_overlap(sel, "ref", cycle=0)
    assert ov["ref"] == 1.0
    assert ov["x"] == pytest.approx((2 / 4 + 1 / 2) / 2)


def _ns_variants():
    return {"NS": {"strategy": "noise_stability"}, "NS-M": {"strategy": "noise_stability_m"},
            "NS-D": {"strategy": "noise_stability_d"}}


def _zeta_spec(zetas=(1e-6, 1e-3, 10)):
    s = {f"z={z:g} {d}": {"strategy": "noise_stability", "zeta": z, "difference": d}
         for z in zetas for d in ("finite", "finite64")}
    s["jvp"] = {"strategy": "noise_stability", "difference": "jvp"}
    return s


# --------------------------------------------------------------------------- round-off report


def test_zeta_roundoff_float32_loses_digits_at_small_zeta(tmp_path):
    torch.manual_seed(0)
    p = _params({**_zeta_spec((1e-6, 10))}, dataset="digits", initial_size=10, budget=5,
                epochs=1, seeds=[0], strategy_options={"noise_stability": {"K": 2}})
    out = nsa.zeta_roundoff(p, tmp_path, n=40).set_index("zeta")
    assert list(out.index) == [1e-6, 10.0]
    assert (tmp_path / "zeta_roundoff.csv").exists()
    # float32 has ~7 digits: at ζ = 1e-6 a large share of Eq 1's difference is round-off,
    # at ζ = 10 almost none; float64 at ζ = 1e-6 is within O(ζ) of the ζ → 0 limit.
    assert out.loc[1e-6, "rel_diff_32_64"] > 1e-3
    assert out.loc[10.0, "rel_diff_32_64"] < 1e-4
    assert out.loc[1e-6, "rel_diff_64_jvp"] < 1e-3
    assert 0.0 <= out.loc[10.0, "kcenter_agree_32_64"] <= 1.0
    with pytest.raises(ValueError, match="needs at least one noise_stability strategy"):
        nsa.zeta_roundoff(_params(["random"]), None)


# --------------------------------------------------------------------------- report builders


def _write_run(run_dir, p, frame, selected=None):
    run_dir.mkdir(parents=True)
    frame.to_csv(run_dir / "metrics.csv", index=False)
    (run_dir / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    if selected is not None:
        (run_dir / "units").mkdir()
        selected.to_csv(run_dir / "units" / "all.selected.csv", index=False)


def test_report_builders_make_their_figures(tmp_path):
    import matplotlib.pyplot as plt

    spec = _zeta_spec((1e-6, 10))
    p = _params(spec)
    curves = {k: [[0.5, 0.6, 0.7], [0.55, 0.6, 0.75]] for k in spec}
    sel = pd.DataFrame([dict(strategy=k, seed=s, cycle=0, index=i)
                        for k in spec for s in (0, 1) for i in range(3)])
    run = tmp_path / "ns_ablation_zeta" / "r"
    _write_run(run, p, _frame(curves), sel)
    pd.DataFrame({"zeta": [1e-6, 10.0], "rel_diff_32_64": [0.3, 1e-7], "rel_diff_64_jvp": [1e-7, 2.0],
                  "rel_diff_32_jvp": [0.3, 2.0], "kcenter_agree_32_64": [0.5, 1.0]}
                 ).to_csv(run / "zeta_roundoff.csv", index=False)
    figs = reports.figures("ns_ablation_zeta", run)
    assert set(figs) == {"ablation_zeta", "roundoff_zeta"}
    table = nsa.zeta_table(_frame(curves), p, run)
    assert (table["overlap_jvp_cycle0"] == 1.0).all()
    kspec = {f"K={k}": {"strategy": "noise_stability", "K": k} for k in (1, 10)}
    run = tmp_path / "ns_ablation_k" / "r"
    _write_run(run, _params(kspec), _frame({k: [[0.5, 0.6]] * 2 for k in kspec}))
    assert set(reports.figures("ns_ablation_k", run)) == {"ablation_k", "learning_curve"}
    for name in ("ns_ablation_selection", "ns_ablation_variants", "ns_single_sample",
                 "ns_paper_vs_official"):
        run = tmp_path / name / "r"
        _write_run(run, _params(_ns_variants()), _frame({k: [[0.5, 0.6]] * 2 for k in _ns_variants()}))
        figs = reports.figures(name, run)
        assert set(figs) == {"learning_curve", "aubc"}
    plt.close("all")
