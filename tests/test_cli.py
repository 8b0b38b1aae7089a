"""The command line, as a user would type it."""

import re
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from alstudy import notebooks
from alstudy.params import ParamError


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "alstudy.cli", *args], capture_output=True, text=True,
                          cwd=cwd)


def test_datasets_lists_availability_and_instructions():
    out = _run("datasets").stdout
    assert "mnist" in out and "available" in out
    assert "cifar-10-python.tar.gz" in out or "cifar10" in out


def test_run_with_preset_and_override(tmp_path):
    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump(dict(
        experiment="cli", dataset="digits", model_options={"width": 4}, strategies=["random"], seeds=[0],
        initial_size=10, budget=5, cycles=1, epochs=1, max_train=200, max_test=100, progress=False,
        results_dir=str(tmp_path / "res"))))
    res = _run("run", str(preset), "-p", "budget", "7")
    assert res.returncode == 0, res.stderr
    frame = pd.read_csv(next((tmp_path / "res" / "cli").rglob("metrics.csv")))
    assert sorted(frame.n_labeled.unique()) == [10, 17]


@pytest.mark.parametrize("args,msg", [
    (["-p", "epochs", "-3"], "'epochs' = -3"),
    (["-p", "strategies", "[random, entropyy]"], "unknown strategy 'entropyy'"),
    (["-p", "nonsense", "1"], "unknown parameter"),
])
def test_bad_params_exit_2_with_message(tmp_path, args, msg):
    preset = tmp_path / "p.yaml"
    preset.write_text("dataset: digits\n")
    res = _run("run", str(preset), *args)
    assert res.returncode == 2 and msg in res.stderr and "Traceback" not in res.stderr


def test_notebook_run_dir_matches_the_notebook(tmp_path):
    path = notebooks.path_of("quickstart")
    defaults = notebooks.parameters(path)
    assert defaults["dataset"] == "mnist"
    out = notebooks.run_dir(path, {"cycles": 1, "results_dir": str(tmp_path)})
    assert out.parent == tmp_path / "quickstart"
    with pytest.raises(ParamError, match="cylces"):
        notebooks.run_dir(path, {"cylces": 1})


def test_judge_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    from alstudy import cli

    assert cli.main(["judge", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


# --------------------------------------------------------------------------- bad inputs


def _one_line_error(res, code=2):
    """The failure contract: exit code, one ``alstudy: error:`` line, no traceback."""
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr + res.stdout
    errors = [l for l in res.stderr.splitlines() if l.startswith("alstudy: error:")
              or l.startswith("alstudy ") and "error:" in l]
    assert len(errors) == 1, res.stderr
    return errors[0]


def _tiny_preset(tmp_path, **extra):
    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump(dict(
        experiment="cli", dataset="digits", model_options={"width": 4}, strategies=["random"], seeds=[0],
        initial_size=10, budget=5, cycles=1, epochs=1, max_train=200, max_test=100, progress=False,
        results_dir=str(tmp_path / "res"), **extra)))
    return preset


def test_bad_params_files_and_values_give_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: digits\nstrategies: [random\n")
    line = _one_line_error(_run("run", str(bad)))
    assert "bad.yaml" in line and "not valid YAML: line" in line and "<unicode string>" not in line
    assert "is a folder" in _one_line_error(_run("run", str(tmp_path)))
    preset = _tiny_preset(tmp_path)
    line = _one_line_error(_run("run", str(preset), "-p", "seeds", "[0, 1"))
    assert "-p seeds '[0, 1'" in line and "not valid YAML" in line
    assert "'lr' = inf is not a finite number" in _one_line_error(_run("run", str(preset), "-p", "lr", "inf"))


def test_exponent_float_on_the_command_line(tmp_path):
    preset = _tiny_preset(tmp_path)
    res = _run("run", str(preset), "-p", "lr", "1e-3")
    assert res.returncode == 0, res.stderr
    saved = yaml.safe_load(next((tmp_path / "res" / "cli").rglob("params.yaml")).read_text())
    assert saved["lr"] == 0.001


def test_failed_reruns_leave_finished_records_byte_identical(tmp_path):
    preset = _tiny_preset(tmp_path)
    assert _run("run", str(preset)).returncode == 0
    before = {p: p.read_bytes() for p in (tmp_path / "res").rglob("*") if p.is_file()}
    for args in (["-p", "device", "cuda:99"], ["-p", "device", "cuda:abc"], ["-p", "threads", "0"],
                 ["-p", "seeds", "[0, 0]"], ["-p", "seeds", "oops: ["]):
        _one_line_error(_run("run", str(preset), *args))
    after = {p: p.read_bytes() for p in (tmp_path / "res").rglob("*") if p.is_file()}
    assert after == before


def test_unwritable_results_folder_is_named(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    preset = _tiny_preset(tmp_path)
    line = _one_line_error(_run("run", str(preset), "-p", "results_dir", str(blocker / "results")))
    assert str(blocker) in line


def test_notebook_presets_must_exist_and_be_mappings(tmp_path):
    line = _one_line_error(_run("notebook", "quickstart", "-f", str(tmp_path / "missing.yaml")))
    assert "missing.yaml' does not exist" in line
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    assert "must hold a mapping" in _one_line_error(_run("notebook", "quickstart", "-f", str(listing)))


def test_batch_spec_missing_or_not_a_mapping(tmp_path):
    assert "does not exist" in _one_line_error(_run("batch", str(tmp_path / "nope.yaml")))
    spec = tmp_path / "spec.yaml"
    spec.write_text("just a string\n")
    assert "batch file" in _one_line_error(_run("batch", str(spec)))
    spec.write_text("grid: [1, 2]\n")
    assert "'grid' must be a mapping" in _one_line_error(_run("batch", str(spec)))


def test_jobs_must_be_positive(tmp_path):
    res = _run("batch", "params/batch/quickstart.smoke.yaml", "--jobs", "0", "--results-dir", str(tmp_path))
    assert res.returncode == 2 and "--jobs" in res.stderr and "Traceback" not in res.stderr


def test_collect_and_figures_on_a_missing_folder_fail_and_create_nothing(tmp_path):
    missing = tmp_path / "nothing" / "here"
    assert "does not exist" in _one_line_error(_run("collect", str(missing)))
    assert "does not exist" in _one_line_error(_run("figures", "--results-dir", str(missing)))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no run folders" in _one_line_error(_run("collect", str(empty)))
    assert not missing.exists() and not (tmp_path / "nothing").exists() and not any(empty.iterdir())


def test_a_data_error_inside_a_notebook_is_one_line(tmp_path):
    res = _run("notebook", "quickstart", "-q", "-p", "dataset", "cifar10", "-p", "data_root",
               str(tmp_path / "no-data"), "-p", "results_dir", str(tmp_path / "res"))
    line = _one_line_error(res, code=1)
    assert "DatasetUnavailable: dataset 'cifar10' is not available" in line
    assert "cifar-10-python.tar.gz" in line and "quickstart.ipynb" in line


# --------------------------------------------------------------------------- finding notebooks


def test_notebooks_are_found_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert notebooks.path_of("quickstart").name == "quickstart.ipynb"
    with pytest.raises(ParamError, match=r"'quickstrat' not found \(did you mean 'quickstart'\?\); "
                                         r"looked in .*notebooks.*available: \[.*'quickstart'"):
        notebooks.path_of("quickstrat")
    res = _run("notebook", "nonexistent", cwd=tmp_path)
    line = _one_line_error(res)
    assert "looked in" in line and "'quickstart'" in line and "available: []" not in line


def test_notebook_help_lists_every_parameter_with_default_and_comment():
    res = _run("notebook", "quickstart", "--help")
    assert res.returncode == 0, res.stderr
    assert "--dry-run" in res.stdout
    assert re.search(r"\n  epochs +=  ?15 +# training epochs per cycle \(paper: 50\)\n", res.stdout)
    for key in notebooks.parameters(notebooks.path_of("quickstart")):
        assert re.search(rf"\n  {key} += \S.* +# \S", res.stdout), key
    theory = _run("notebook", "theory_saal_bound", "--help").stdout
    assert re.search(r"results_dir += _os\.environ\.get\('ALSTUDY_RESULTS', 'results'\) +# results root",
                     theory)


def test_every_notebook_parameter_has_a_comment():
    missing = []
    for path in sorted(notebooks.notebook_dirs()[-1].glob("*.ipynb")):
        docs = notebooks.parameter_docs(path)
        assert {d.name for d in docs} == set(notebooks.parameters(path)), path
        missing += [f"{path.stem}:{d.name}" for d in docs if not d.comment]
    assert not missing, missing
