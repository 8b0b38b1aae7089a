"""Sweeps: grid expansion, local vs Dask backends, failures, kills and resumption."""

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

from alstudy import batch
from alstudy.params import ParamError

BASE = dict(dataset="digits", model_options={"width": 4}, initial_size=10, budget=10, cycles=1,
            epochs=2, max_train=300, max_test=100)


def _spec(tmp_path: Path, name="grid", grid=None, **base) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "experiment": "sweep", "params": {**BASE, **base},
        "grid": grid or {"strategies": [["random"], ["entropy"]], "seeds": [[0], [1], [2]]}}))
    return path


def _accuracy_rows(frame: pd.DataFrame) -> pd.DataFrame:
    keep = frame[~frame.metric.str.endswith("seconds")]
    return keep.sort_values(["run_id", "strategy", "seed", "cycle", "metric"]).reset_index(drop=True)


def test_expand_names_units_and_validates_before_running(tmp_path):
    units = batch.expand(batch.load_spec(_spec(tmp_path), str(tmp_path / "res")))
    assert len(units) == 6 and len({u.run_dir for u in units}) == 6
    assert units[0].name == "grid-seeds=0-strategies=random"  # grid keys in file order
    with pytest.raises(ParamError, match="epochs"):
        batch.expand(batch.load_spec(_spec(tmp_path, grid={"epochs": [1, -2]}), str(tmp_path)))
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: x\ngird: {}\n")
    with pytest.raises(ParamError, match="gird"):
        batch.load_spec(bad)


def test_a_batch_name_replaces_the_file_name_in_unit_folders(tmp_path):
    spec = _spec(tmp_path)
    named = yaml.safe_load(spec.read_text()) | {"name": "grid-5seeds"}
    spec.write_text(yaml.safe_dump(named))
    units = batch.expand(batch.load_spec(spec, str(tmp_path / "res")))
    assert units[0].name == "grid-5seeds-seeds=0-strategies=random"
    assert units[0].run_dir == tmp_path / "res" / "sweep" / "grid-5seeds-seeds=0-strategies=random"
    spec.write_text(yaml.safe_dump(named | {"name": "a/b"}))
    with pytest.raises(ParamError, match="batch name 'a/b'"):
        batch.load_spec(spec)


def test_dask_backend_equals_local_backend(tmp_path):
    spec = _spec(tmp_path)
    local, out_local = batch.run_batch(spec, jobs=2, backend="local", results_dir=str(tmp_path / "a"),
                                       progress=False)
    dask, out_dask = batch.run_batch(spec, jobs=2, backend="dask", results_dir=str(tmp_path / "b"),
                                     progress=False)
    assert all(o["ok"] for o in out_local + out_dask) and len(out_dask) == 6
    pd.testing.assert_frame_equal(_accuracy_rows(local), _accuracy_rows(dask))
    # rerunning finds everything done and recomputes nothing
    again, outcomes = batch.run_batch(spec, jobs=2, backend="dask", results_dir=str(tmp_path / "b"),
                                      progress=False)
    assert outcomes == [] and len(again) == len(dask)


def test_failing_unit_is_reported_while_others_finish(tmp_path, monkeypatch):
    monkeypatch.setenv("ALSTUDY_DATA", str(tmp_path / "no-data-here"))
    spec = _spec(tmp_path, grid={"dataset": ["digits", "svhn"], "seeds": [[0]]})
    frame, outcomes = batch.run_batch(spec, jobs=2, backend="local", results_dir=str(tmp_path / "r"),
                                      progress=False)
    failed = [o for o in outcomes if not o["ok"]]
    assert len(outcomes) == 2 and len(failed) == 1
    report = batch.failure_report(outcomes)
    assert "dataset=svhn" in report and '"dataset": "svhn"' in report and "train_32x32.mat" in report
    assert set(frame.dataset) == {"digits"}


def test_killed_worker_then_rerun_completes_without_duplicates(tmp_path):
    spec = _spec(tmp_path, epochs=20)
    results = tmp_path / "killed"
    script = textwrap.dedent(f"""
        from alstudy import batch
        batch.run_batch({str(spec)!r}, jobs=2, backend="dask", results_dir={str(results)!r}, progress=False)
    """)
    driver = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    killed = False
    deadline = time.time() + 180
    while time.time() < deadline and driver.poll() is None and not killed:
        started = [d for d in (results / "sweep").glob("grid-*") if (d / "units").exists()]
        workers = [p for p in psutil.Process(driver.pid).children(recursive=True)
                   if "multiprocessing" in " ".join(p.cmdline())]
        if started and workers:
            workers[0].kill()  # a worker dies mid-unit
            killed = True
        time.sleep(0.2)
    time.sleep(1.0)
    os.killpg(driver.pid, signal.SIGKILL)  # and then the driver too
    driver.wait()
    assert killed
    frame, _ = batch.run_batch(spec, jobs=2, backend="local", results_dir=str(results), progress=False)
    units = batch.expand(batch.load_spec(spec, str(results)))
    assert all(u.done for u in units)
    key = ["run_id", "strategy", "seed", "cycle", "metric"]
    assert not frame.duplicated(key).any()
    assert len(frame[frame.metric == "accuracy"]) == 6 * 2


def test_workers_die_with_a_killed_driver(tmp_path):
    """SIGKILL only the driver of a local pool: its workers must not keep running units."""
    spec = _spec(tmp_path, epochs=200)
    results = tmp_path / "orphans"
    script = textwrap.dedent(f"""
        from alstudy import batch
        batch.run_batch({str(spec)!r}, jobs=2, backend="local", results_dir={str(results)!r}, progress=False)
    """)
    driver = subprocess.Popen([sys.executable, "-c", script])
    workers = []
    try:
        deadline = time.time() + 180
        while time.time() < deadline and driver.poll() is None:
            workers = psutil.Process(driver.pid).children(recursive=True)
            if len(workers) >= 2 and list((results / "sweep").glob("grid-*/attempts/*.json")):
                break  # two workers, and a unit in progress
            time.sleep(0.2)
        assert driver.poll() is None and len(workers) >= 2
        driver.kill()
        driver.wait()
        gone, alive = psutil.wait_procs(workers, timeout=30)
        assert not alive, f"workers outlived their driver: {alive}"
    finally:
        if driver.poll() is None:
            driver.kill()
        for proc in workers:
            with contextlib.suppress(psutil.Error):
                proc.kill()
