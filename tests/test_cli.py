"""The command line, as a user would type it."""

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
