"""Copying a finished unit of the same configuration from another run folder gives the numbers
a fresh run of that unit gives, and nothing else is ever copied."""

import json

import pandas as pd

from alstudy import loop, params as params_mod, records, strategies, unit_reuse

BASE = dict(dataset="digits", model="small_cnn", model_options={"width": 4}, seeds=[0],
            initial_size=10, budget=10, epochs=2, batch_size=32, progress=False, max_train=300,
            max_test=100, candidates=60)
DONOR = dict(BASE, experiment="donor", cycles=3,
             strategies={"NS": {"strategy": "noise_stability", "K": 3}, "random": {}})
TAKER = dict(BASE, experiment="taker", cycles=2,
             strategies={"K=3": {"strategy": "noise_stability", "K": 3},
                         "K=2": {"strategy": "noise_stability", "K": 2}})


def _unit(run_dir, stem):
    metrics = pd.read_csv(run_dir / "units" / f"{stem}.csv")
    metrics = metrics[~metrics.metric.str.endswith("seconds")].drop(columns="run_id")
    selected = pd.read_csv(run_dir / "units" / f"{stem}.selected.csv")
    return metrics.reset_index(drop=True), selected, json.loads(
        (run_dir / "units" / f"{stem}.json").read_text())


def test_copied_unit_equals_a_fresh_run_of_it(tmp_path):
    shared, fresh = tmp_path / "shared", tmp_path / "fresh"
    loop.run(DONOR, results_dir=str(shared))
    loop.run(TAKER, results_dir=str(shared))
    loop.run(TAKER, results_dir=str(fresh), reuse_units=False)
    taker = loop.run_dir(params_mod.validate(TAKER, results_dir=str(shared)))
    alone = loop.run_dir(params_mod.validate(TAKER, results_dir=str(fresh)))
    copied_metrics, copied_sel, copied_record = _unit(taker, "K=3__seed0")
    run_metrics, run_sel, run_record = _unit(alone, "K=3__seed0")
    assert copied_record["copied_from"].startswith("shared/donor/")
    assert copied_record["copied_from"].endswith("/units/NS__seed0.csv")
    assert "copied_from" not in run_record and "copied_from" not in _unit(taker, "K=2__seed0")[2]
    # cycles 0..2 of the 3-cycle donor, relabelled: the same rows a fresh 2-cycle run writes
    pd.testing.assert_frame_equal(copied_metrics, run_metrics)
    pd.testing.assert_frame_equal(copied_sel, run_sel)
    assert sorted(copied_metrics.cycle.unique()) == [0, 1, 2]
    assert (copied_metrics.strategy == "K=3").all() and (copied_metrics.experiment == "taker").all()
    timing = pd.read_csv(taker / "units" / "K=3__seed0.csv")
    assert not ((timing.metric == "select_seconds") & (timing.cycle == 2)).any()
    attempt = json.loads(next((taker / "attempts").glob("*.json")).read_text())
    assert list(attempt["copied"]) == ["K=3__seed0"] and attempt["ran"] == ["K=2__seed0"]


def _donor_for(tmp_path, **changes):
    p = params_mod.validate(dict(TAKER, **changes), results_dir=str(tmp_path))
    name, opts = params_mod.strategy_specs(p)["K=3"]
    env = records.environment("cpu", 1)
    return unit_reuse.find_donor(p, strategies.build(name, **opts), 0, env, loop.run_dir(p))


def test_only_the_same_configuration_and_environment_is_copied(tmp_path):
    loop.run(DONOR, results_dir=str(tmp_path), threads=1)
    assert _donor_for(tmp_path).stem == "NS__seed0"
    assert _donor_for(tmp_path, epochs=3) is None  # training differs
    assert _donor_for(tmp_path, cycles=4) is None  # the donor is shorter
    p = params_mod.validate(TAKER, results_dir=str(tmp_path))
    ns3 = strategies.build("noise_stability", K=3)
    assert unit_reuse.find_donor(p, ns3, 1, records.environment("cpu", 1), tmp_path / "x") is None
    assert unit_reuse.find_donor(p, strategies.build("noise_stability", K=3, zeta=0.01), 0,
                                 records.environment("cpu", 1), tmp_path / "x") is None
    assert unit_reuse.find_donor(p, ns3, 0, records.environment("cpu", 2), tmp_path / "x") is None


def test_reuse_off_runs_every_unit(tmp_path, monkeypatch):
    loop.run(DONOR, results_dir=str(tmp_path))
    calls = []
    real = loop.run_unit
    monkeypatch.setattr(loop, "run_unit", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    loop.run(TAKER, results_dir=str(tmp_path), reuse_units=False)
    assert sorted(calls) == ["K=2", "K=3"]
