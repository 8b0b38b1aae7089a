"""The AL loop: tidy output, determinism, resume after a kill, no duplicated rows."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from alstudy import loop
from alstudy.results import COLUMNS

FAST = dict(dataset="digits", model="small_cnn", model_options={"width": 4}, strategies=["random", "entropy"],
            seeds=[0, 1], initial_size=10, budget=10, cycles=2, epochs=2, batch_size=32,
            progress=False, max_train=400, max_test=200)


def _selected(run_dir: Path) -> pd.DataFrame:
    frames = [pd.read_csv(f) for f in sorted((run_dir / "units").glob("*.selected.csv"))]
    return pd.concat(frames, ignore_index=True).sort_values(["strategy", "seed", "cycle", "index"])


def test_tidy_results_and_files(tmp_path):
    frame = loop.run(FAST, results_dir=str(tmp_path))
    assert list(frame.columns) == COLUMNS
    acc = frame[frame.metric == "accuracy"]
    assert len(acc) == 2 * 2 * 3  # strategies x seeds x (cycles + 1)
    assert sorted(acc.n_labeled.unique()) == [10, 20, 30]
    assert {"select_seconds", "train_seconds"} <= set(frame.metric)
    run_dir = loop.run_dir(loop.params_mod.validate(FAST, results_dir=str(tmp_path)))
    for name in ("metrics.csv", "params.yaml", "environment.json"):
        assert (run_dir / name).exists()
    sel = _selected(run_dir)
    # each unit labels initial + cycles*budget distinct examples
    assert (sel.groupby(["strategy", "seed"])["index"].nunique() == 30).all()
    # the same seed starts every strategy from the same initial set
    init = sel[sel.cycle == -1]
    assert set(init[init.strategy == "random"].query("seed == 0")["index"]) == \
        set(init[init.strategy == "entropy"].query("seed == 0")["index"])


def test_same_params_same_numbers(tmp_path):
    a = loop.run(FAST, results_dir=str(tmp_path / "a"))
    b = loop.run(FAST, results_dir=str(tmp_path / "b"))
    keep = lambda f: f[~f.metric.str.endswith("seconds")].reset_index(drop=True)
    pd.testing.assert_frame_equal(keep(a), keep(b))
    pa = loop.run_dir(loop.params_mod.validate(FAST, results_dir=str(tmp_path / "a")))
    pb = loop.run_dir(loop.params_mod.validate(FAST, results_dir=str(tmp_path / "b")))
    pd.testing.assert_frame_equal(_selected(pa).reset_index(drop=True), _selected(pb).reset_index(drop=True))


def test_rerun_skips_finished_units(tmp_path, monkeypatch):
    first = loop.run(FAST, results_dir=str(tmp_path))

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished unit was run again")

    monkeypatch.setattr(loop, "run_unit", must_not_run)
    again = loop.run(FAST, results_dir=str(tmp_path))
    pd.testing.assert_frame_equal(first, again)


def test_run_folder_with_other_params_is_refused(tmp_path):
    loop.run(FAST, results_dir=str(tmp_path), run_id="fixed")
    with pytest.raises(loop.params_mod.ParamError, match="different parameters"):
        loop.run(FAST, results_dir=str(tmp_path), run_id="fixed", epochs=3)


def test_killed_run_resumes_without_duplicates(tmp_path):
    """Kill a run after its first unit is written, rerun, compare with an uninterrupted run."""
    slow = dict(FAST, seeds=[0, 1, 2], epochs=6)
    script = textwrap.dedent(f"""
        from alstudy import loop
        loop.run({slow!r}, results_dir={str(tmp_path / 'killed')!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    units = None
    deadline = time.time() + 240
    while time.time() < deadline:
        units = list((tmp_path / "killed").rglob("units/*__seed*.csv"))
        if any(not u.name.endswith(".selected.csv") for u in units) or proc.poll() is not None:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = [u for u in (tmp_path / "killed").rglob("units/*.csv") if not u.name.endswith("selected.csv")]
    assert 1 <= len(done_before) < 6, "the kill should land mid-run"
    resumed = loop.run(slow, results_dir=str(tmp_path / "killed"))
    clean = loop.run(slow, results_dir=str(tmp_path / "clean"))
    key = ["strategy", "seed", "cycle", "metric"]
    assert not resumed.duplicated(key).any()
    keep = lambda f: f[~f.metric.str.endswith("seconds")].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(keep(resumed), keep(clean))


def test_a_dataset_given_to_run_must_be_loaded_with_the_runs_parameters(tmp_path):
    """A notebook that loads the data itself (to write class rates or a ceiling) must load what
    the parameters name: loader options, subsample sizes and split seed are checked."""
    from alstudy import ceiling, data

    same = data.load("digits", seed=0, max_train=400, max_test=200)
    loop.run(FAST, data=same, results_dir=str(tmp_path / "same"), seeds=[0], cycles=0)
    for key, value in (("max_train", 300), ("data_seed", 1)):
        other = data.load("digits", seed=value if key == "data_seed" else 0,
                          max_train=value if key == "max_train" else 400, max_test=200)
        with pytest.raises(ValueError, match=f"loaded with {key} = {value}, but the parameters say {key} = "):
            loop.run(FAST, data=other, results_dir=str(tmp_path / key))
        with pytest.raises(ValueError, match=f"loaded with {key} = "):
            ceiling.run(dict(FAST, results_dir=str(tmp_path / key)), data=other)
        assert not (tmp_path / key).exists()   # refused before anything is written
    canvases = data.load("mnist_canvas", max_train=50, max_test=20, size=32, n_train=60, n_test=20)
    seg = dict(FAST, dataset="mnist_canvas", max_train=50, max_test=20, data_options={"size": 48})
    with pytest.raises(ValueError, match=r"loaded with data_options = \{'size': 32, 'n_train': 60"):
        loop.run(seg, data=canvases, results_dir=str(tmp_path / "seg"))


def test_settings_that_load_the_same_data_are_accepted(tmp_path):
    """The check compares settings as they act: a loader option given at its default, or a
    subsample at or above the pool size, is the same data as leaving it out."""
    from alstudy import data, params

    defaults = data.loader_options("mnist_canvas")
    explicit = data.load("mnist_canvas", max_train=50, max_test=20, **defaults)
    seg = dict(FAST, dataset="mnist_canvas", max_train=50, max_test=20, data_options={})
    data.check_loaded_as(explicit, params.validate(seg))
    whole = data.load("digits", seed=0, max_train=10**6, max_test=None)
    data.check_loaded_as(whole, params.validate(dict(FAST, max_train=None, max_test=None)))
    assert data.load_for(params.validate(dict(FAST, max_train=None, max_test=None))).n_train == whole.n_train
    with pytest.raises(ValueError, match="loaded with max_train = None, but the parameters say max_train = 300"):
        data.check_loaded_as(whole, params.validate(dict(FAST, max_train=300)))
