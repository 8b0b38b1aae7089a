"""Run folders: finished records are never lost, replaced or mixed; concurrent runs share work."""

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from alstudy import loop, notebooks, records, results
from alstudy.params import ParamError, validate

FAST = dict(dataset="digits", model="small_cnn", model_options={"width": 4}, strategies=["random", "entropy"],
            seeds=[0], initial_size=10, budget=10, cycles=1, epochs=1, batch_size=32,
            progress=False, max_train=300, max_test=100, threads=1)


def _dir(tmp_path, **over):
    return loop.run_dir(validate({**FAST, **over}, results_dir=str(tmp_path)))


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every visible file of a run folder outside attempts/, by relative path."""
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*"))
            if f.is_file() and "attempts" not in f.parts and not f.name.startswith(".")}


def _units(frame: pd.DataFrame) -> set[tuple[str, int]]:
    return set(zip(frame.strategy, frame.seed))


def _fail(*args, **kwargs):
    raise RuntimeError("this attempt fails mid-unit")


def test_failed_rerun_leaves_the_finished_record_byte_identical(tmp_path, monkeypatch):
    loop.run(FAST, results_dir=str(tmp_path))
    out = _dir(tmp_path)
    before = _snapshot(out)
    assert {"params.yaml", "environment.json", "metrics.csv"} <= set(before)
    monkeypatch.setattr(loop, "run_unit", _fail)
    with pytest.raises(RuntimeError, match="fails mid-unit"):  # more seeds, other device/threads
        loop.run(FAST, results_dir=str(tmp_path), seeds=[0, 1], device="cpu")
    assert _snapshot(out) == before
    attempts = [json.loads(f.read_text()) for f in (out / "attempts").glob("*.json")]
    failed = [a for a in attempts if a["status"] == "failed"]
    assert len(failed) == 1 and "fails mid-unit" in failed[0]["error"]
    assert failed[0]["params"]["seeds"] == [0, 1] and failed[0]["params"]["device"] == "cpu"


def test_failed_notebook_rerun_keeps_the_executed_notebook(tmp_path, monkeypatch, caplog):
    given = dict(FAST, results_dir=str(tmp_path), run_id="nb")
    executed = notebooks.run_dir(notebooks.path_of("quickstart"), given) / "quickstart.ipynb"
    executed.parent.mkdir(parents=True)
    executed.write_text("the executed notebook of a finished run")
    monkeypatch.setenv("ALSTUDY_DATA", str(tmp_path / "no-data-here"))
    with caplog.at_level(logging.WARNING, logger="papermill"), \
            pytest.raises(Exception, match="svhn|train_32x32"):  # fails inside the kernel
        notebooks.execute("quickstart", {**given, "dataset": "svhn"}, progress=False)
    assert executed.read_text() == "the executed notebook of a finished run"
    assert len(list((executed.parent / "attempts").glob("*.quickstart.ipynb"))) == 1
    # threads, run_id, ... are schema keys outside the notebook's parameters cell: no warning
    assert not [r for r in caplog.records if "unknown parameter" in r.getMessage()]


def test_papermill_keeps_warning_about_keys_outside_the_schema():
    keep = notebooks._SchemaKeysKnown()
    record = lambda key: logging.LogRecord("papermill", logging.WARNING, __file__, 1,
                                           f"Passed unknown parameter: {key}", None, None)
    assert not keep.filter(record("threads")) and not keep.filter(record("run_id"))
    assert keep.filter(record("thread")) and keep.filter(record("epoch"))


def test_metrics_hold_every_finished_unit_across_invocations(tmp_path):
    loop.run(FAST, results_dir=str(tmp_path), seeds=[0, 1])
    frame = loop.run(FAST, results_dir=str(tmp_path), seeds=[0])
    out = _dir(tmp_path)
    want = {(s, seed) for s in ("random", "entropy") for seed in (0, 1)}
    assert _units(frame) == want
    assert _units(pd.read_csv(out / "metrics.csv")) == want
    loop.run(FAST, results_dir=str(tmp_path), seeds=[2])
    assert _units(pd.read_csv(out / "metrics.csv")) == want | {("random", 2), ("entropy", 2)}
    assert yaml.safe_load((out / "params.yaml").read_text())["seeds"] == [0, 1, 2]


def test_concurrent_runs_share_units_and_both_end_with_the_union(tmp_path):
    """Two processes, overlapping seeds: no unit runs twice and metrics.csv holds all six."""
    script = textwrap.dedent("""
        import sys
        from alstudy import loop
        loop.run({fast!r}, results_dir={res!r}, seeds=[int(s) for s in sys.argv[1].split(",")])
    """).format(fast=FAST, res=str(tmp_path))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", script, seeds], env=env, stderr=subprocess.PIPE,
                              text=True) for seeds in ("0,1", "1,2")]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errs
    out = _dir(tmp_path)
    frame = pd.read_csv(out / "metrics.csv")
    assert _units(frame) == {(s, seed) for s in ("random", "entropy") for seed in (0, 1, 2)}
    assert not frame.duplicated(["strategy", "seed", "cycle", "metric"]).any()
    ran = [stem for f in (out / "attempts").glob("*.json") for stem in json.loads(f.read_text())["ran"]]
    assert sorted(ran) == sorted(set(ran)) and len(ran) == 6  # every unit exactly once
    assert not list((out / "units").glob(".*.lock"))


def test_unit_in_flight_elsewhere_is_skipped_then_taken_over(tmp_path, monkeypatch):
    """A live process holds one unit's lock: this run does the others first, waits, and runs the
    held unit itself once its holder exits without finishing it."""
    out = _dir(tmp_path, seeds=[0, 1])
    lock = out / "units" / f".{records.unit_stem('random', 0)}.lock"
    release = tmp_path / "release"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, pathlib, time
        from alstudy import records
        lock = records.UnitLock({str(lock)!r})
        assert lock.try_acquire()
        pathlib.Path({str(tmp_path / 'held')!r}).touch()
        while not os.path.exists({str(release)!r}):
            time.sleep(0.05)
    """)])
    while not (tmp_path / "held").exists():
        assert holder.poll() is None
        time.sleep(0.05)
    calls = []
    real = loop.run_unit

    def recording(p, data, label, strategy, seed, *args):
        calls.append((label, seed))
        if len(calls) == 3:  # every free unit done: let the holder go (it dies unfinished)
            release.touch()
        return real(p, data, label, strategy, seed, *args)

    monkeypatch.setattr(loop, "run_unit", recording)
    frame = loop.run(FAST, results_dir=str(tmp_path), seeds=[0, 1])
    holder.wait(timeout=60)
    assert ("random", 0) not in calls[:3] and calls[3] == ("random", 0) and len(calls) == 4
    assert len(_units(frame)) == 4


def test_dead_holder_lock_file_does_not_block(tmp_path):
    out = _dir(tmp_path)
    lock = out / "units" / f".{records.unit_stem('random', 0)}.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": 999999999, "host": "gone", "since": "earlier"}))
    frame = loop.run(FAST, results_dir=str(tmp_path))
    assert _units(frame) == {("random", 0), ("entropy", 0)} and not lock.exists()


def test_each_unit_records_what_it_ran_with(tmp_path):
    loop.run(FAST, results_dir=str(tmp_path))
    rec = json.loads((_dir(tmp_path) / "units" / "random__seed0.json").read_text())
    assert rec["threads"] == 1 and rec["device"] == "cpu" and rec["torch"]
    assert rec["strategy"] == "random" and rec["seed"] == 0 and rec["seconds"] >= 0


def test_resume_with_other_threads_is_refused(tmp_path, monkeypatch):
    loop.run(FAST, results_dir=str(tmp_path))
    out = _dir(tmp_path)
    before = _snapshot(out)
    monkeypatch.setattr(loop, "run_unit", _fail)
    with pytest.raises(ParamError, match=r"mix units.*threads=1.*threads=2.*set threads: 1"):
        loop.run(FAST, results_dir=str(tmp_path), seeds=[0, 1], threads=2)
    assert _snapshot(out) == before
    # nothing new to run: nothing to mix, the stored results are returned
    again = loop.run(FAST, results_dir=str(tmp_path), threads=2)
    assert _units(again) == {("random", 0), ("entropy", 0)}


def test_null_threads_means_one_unless_omp_says_otherwise(monkeypatch):
    from alstudy import records

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert records.default_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert records.default_threads() == 3


def test_stale_temp_files_are_removed_and_live_ones_kept(tmp_path):
    import fcntl

    out = _dir(tmp_path)
    (out / "units").mkdir(parents=True)
    old = results.PROCESS_START - 60
    stale = [out / ".metrics.csv.a1b2.tmp", out / "units" / ".random__seed0.csv.c3d4.tmp"]
    live, fresh = out / ".params.yaml.e5f6.tmp", out / ".environment.json.g7h8.tmp"
    for f in [*stale, live, fresh]:
        f.write_text("partial")
    for f in [*stale, live]:
        os.utime(f, (old, old))
    with open(live) as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # a writer still at work
        loop.run(FAST, results_dir=str(tmp_path))
        assert not any(f.exists() for f in stale)
        assert live.exists() and fresh.exists()


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_results_files_follow_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        loop.run(FAST, results_dir=str(tmp_path))
    finally:
        os.umask(previous)
    out = _dir(tmp_path)
    files = [out / n for n in ("metrics.csv", "params.yaml", "environment.json")]
    files += list((out / "units").glob("*.*"))
    assert len(files) > 5
    for f in files:
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask, f


def test_cli_says_units_were_skipped_and_rewrites_nothing(tmp_path):
    from alstudy import params

    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump(dict(FAST, experiment="cli", results_dir=str(tmp_path / "res"))))
    loop.run(params.load(preset))
    out = next((tmp_path / "res" / "cli").iterdir())
    before = {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in out.rglob("*") if f.is_file()}
    again = subprocess.run([sys.executable, "-m", "alstudy.cli", "run", str(preset)],
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "2 of 2 unit(s) were already finished and skipped, 0 run now" in again.stderr
    assert str(out) in again.stderr
    assert {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in out.rglob("*") if f.is_file()} == before
    assert "random" in again.stdout and "entropy" in again.stdout  # the stored table


def test_readme_run_example_trains_into_a_fresh_folder():
    """The README's `alstudy run` example must not resolve to a committed (finished) run folder."""
    import shlex

    from alstudy import params

    repo = Path(__file__).resolve().parents[1]
    line = next(l for l in (repo / "README.md").read_text().splitlines()
                if "alstudy run params/quickstart.study.yaml" in l)
    args = shlex.split(line.split("#")[0])
    preset, rest = args[2], args[3:]
    given = {"results_dir": "results"}  # the command's default outside the test environment
    given.update({rest[i + 1]: yaml.safe_load(rest[i + 2]) for i in range(len(rest)) if rest[i] == "-p"})
    out = loop.run_dir(params.load(repo / preset, **given))
    assert not (repo / out).exists(), f"the README example reuses the committed {out}"


def test_papermill_reads_the_same_parameters_as_alstudy_where_its_line_rule_allows():
    """A direct papermill user sees every parameter (``papermill --help-notebook``): only a line
    with two ``=`` defeats papermill's inspection, and only a label of saal_rho needs one."""
    import papermill as pm

    for path in sorted(notebooks.path_of("quickstart").parent.glob("*.ipynb")):
        ours = [d.name for d in notebooks.parameter_docs(path)]
        theirs = list(pm.inspect_notebook(str(path)))
        if path.stem == "saal_rho":
            assert set(theirs) == set(ours) - {"strategies"}, path.stem
        else:
            assert theirs == ours, path.stem


def test_papermill_line_rule_warning_is_dropped_only_for_that_message():
    keep = notebooks._CellReadByAst()
    record = lambda text: logging.LogRecord("papermill.translators", logging.WARNING, __file__, 1, text, None, None)
    assert not keep.filter(record("Unable to parse line 6 'strategies = {\"rho=0.01\": 1}'."))
    assert keep.filter(record("Passed unknown parameter: epoch"))
