"""Copying a finished unit of the same configuration from another run folder gives the numbers
a fresh run of that unit gives, and nothing else is ever copied."""

import json
import shutil

import pandas as pd
import pytest

from alstudy import loop, params as params_mod, records, strategies, unit_reuse
from alstudy.evidence import quantities

BASE = dict(dataset="digits", model="small_cnn", model_options={"width": 4}, seeds=[0, 1],
            initial_size=10, budget=10, epochs=2, batch_size=32, progress=False, max_train=300,
            max_test=100, candidates=60, cycle_metrics=["perturbed_loss"],
            cycle_metric_sizes={"perturbed_loss": 5})
# the donor runs other units before and between the ones the taker copies, in another order
DONOR = dict(BASE, experiment="donor", cycles=3,
             strategies={"random": {}, "NS": {"strategy": "noise_stability", "K": 3}, "ll4al": {}})
TAKER = dict(BASE, experiment="taker", cycles=2,
             strategies={"ll4al": {}, "K=2": {"strategy": "noise_stability", "K": 2},
                         "K=3": {"strategy": "noise_stability", "K": 3}})


def _unit(run_dir, stem):
    metrics = pd.read_csv(run_dir / "units" / f"{stem}.csv")
    metrics = metrics[~metrics.metric.str.endswith("seconds")].drop(columns="run_id")
    selected = pd.read_csv(run_dir / "units" / f"{stem}.selected.csv")
    return metrics.reset_index(drop=True), selected, json.loads(
        (run_dir / "units" / f"{stem}.json").read_text())


def _folder(p, root):
    return loop.run_dir(params_mod.validate(p, results_dir=str(root)))


@pytest.mark.parametrize("warm_start", [False, True])
def test_copied_unit_equals_a_fresh_run_of_it(tmp_path, warm_start):
    shared, fresh = tmp_path / "shared", tmp_path / "fresh"
    loop.run(DONOR, results_dir=str(shared), warm_start=warm_start)
    loop.run(TAKER, results_dir=str(shared), warm_start=warm_start)
    loop.run(TAKER, results_dir=str(fresh), warm_start=warm_start, reuse_units=False)
    taker = _folder(dict(TAKER, warm_start=warm_start), shared)
    alone = _folder(dict(TAKER, warm_start=warm_start), fresh)
    for stem, source in [("K=3__seed0", "NS__seed0"), ("K=3__seed1", "NS__seed1"),
                         ("ll4al__seed1", "ll4al__seed1")]:
        copied_metrics, copied_sel, copied_record = _unit(taker, stem)
        run_metrics, run_sel, run_record = _unit(alone, stem)
        assert copied_record["copied_from"].startswith("shared/donor/")
        assert copied_record["copied_from"].endswith(f"/units/{source}.csv")
        assert "copied_from" not in run_record
        # cycles 0..2 of the 3-cycle source, relabelled: the rows a fresh 2-cycle run writes
        pd.testing.assert_frame_equal(copied_metrics, run_metrics)
        pd.testing.assert_frame_equal(copied_sel, run_sel)
    assert "copied_from" not in _unit(taker, "K=2__seed0")[2]
    copied_metrics = _unit(taker, "K=3__seed0")[0]
    assert sorted(copied_metrics.cycle.unique()) == [0, 1, 2]
    assert {"perturbed_loss_unlabeled", "accuracy"} <= set(copied_metrics.metric)
    assert (copied_metrics.strategy == "K=3").all() and (copied_metrics.experiment == "taker").all()
    timing = pd.read_csv(taker / "units" / "K=3__seed0.csv")
    assert not ((timing.metric == "select_seconds") & (timing.cycle == 2)).any()
    attempt = json.loads(next((taker / "attempts").glob("*.json")).read_text())
    assert sorted(attempt["copied"]) == ["K=3__seed0", "K=3__seed1", "ll4al__seed0", "ll4al__seed1"]
    assert sorted(attempt["ran"]) == ["K=2__seed0", "K=2__seed1"]
    # cost claims compare only units timed in their own folder
    timed = quantities._timed_here(taker)
    assert set(timed.strategy) == {"K=2"}
    # with the original gone, a copy is the source, and the new copy names the original unit
    donor = _folder(dict(DONOR, warm_start=warm_start), shared)
    shutil.rmtree(donor)
    third = dict(TAKER, experiment="third", warm_start=warm_start,
                 strategies={"again": {"strategy": "noise_stability", "K": 3}})
    loop.run(third, results_dir=str(shared))
    record = _unit(_folder(third, shared), "again__seed0")[2]
    assert record["copied_from"] == f"shared/donor/{donor.name}/units/NS__seed0.csv"


def _index(tmp_path, **changes):
    p = params_mod.validate(dict(TAKER, **changes), results_dir=str(tmp_path))
    data = loop.data_mod.load(p["dataset"], max_train=p["max_train"], max_test=p["max_test"])
    built = {label: strategies.build(name, **opts)
             for label, (name, opts) in params_mod.strategy_specs(p).items()}
    return unit_reuse.DonorIndex(p, built, unit_reuse.data_fingerprint(data),
                                 records.environment("cpu", 1), loop.run_dir(p))


def test_only_the_same_configuration_code_data_and_environment_is_copied(tmp_path, monkeypatch):
    loop.run(DONOR, results_dir=str(tmp_path), threads=1, seeds=[0])
    assert _index(tmp_path).find("K=3", 0).stem == "NS__seed0"
    assert _index(tmp_path).find("K=2", 0) is None  # no such strategy in the donor
    assert _index(tmp_path).find("K=3", 1) is None  # the donor has no seed 1
    assert _index(tmp_path, epochs=3).find("K=3", 0) is None  # training differs
    assert _index(tmp_path, cycles=4).find("K=3", 0) is None  # the donor is shorter
    assert _index(tmp_path, eval_batch_size=7).find("K=3", 0) is None
    index = _index(tmp_path)
    index.env = records.environment("cpu", 2)
    assert index.find("K=3", 0) is None  # another thread count
    index = _index(tmp_path)
    index.env = {**index.env, "numpy": "0.0"}
    assert index.find("K=3", 0) is None  # another library version
    index = _index(tmp_path)
    index.prints["K=3"] = unit_reuse.fingerprint(index.params, index.built["K=3"], "other data")
    assert index.find("K=3", 0) is None  # other data tensors
    monkeypatch.setattr(unit_reuse, "code_fingerprint", lambda: "other code")
    assert _index(tmp_path).find("K=3", 0) is None  # other computing code
    monkeypatch.undo()
    donor = _folder(dict(DONOR, seeds=[0]), tmp_path)
    record = donor / "units" / "NS__seed0.json"
    legacy = {k: v for k, v in json.loads(record.read_text()).items() if k != "fingerprint"}
    record.write_text(json.dumps(legacy))
    assert _index(tmp_path).find("K=3", 0) is None  # written before fingerprints: never copied
    record.write_text("{ damaged")
    assert _index(tmp_path).find("K=3", 0) is None  # an unreadable record is skipped


def test_reuse_off_runs_every_unit(tmp_path, monkeypatch):
    loop.run(DONOR, results_dir=str(tmp_path), seeds=[0])
    calls = []
    real = loop.run_unit
    monkeypatch.setattr(loop, "run_unit", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    loop.run(TAKER, results_dir=str(tmp_path), seeds=[0], reuse_units=False)
    assert sorted(calls) == ["K=2", "K=3", "ll4al"]
    record = json.loads((_folder(dict(TAKER, seeds=[0]), tmp_path) / "units" / "K=3__seed0.json")
                        .read_text())
    assert "copied_from" not in record and record["fingerprint"]  # a source for later runs
