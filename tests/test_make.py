"""The Makefile's promises: one setup installs everything `make lab` needs; lab starts as root."""

import os
import re
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_setup_installs_jupyterlab():
    extras = re.search(r"^EXTRAS \?= (.*)$", (ROOT / "Makefile").read_text(), re.M).group(1).split(",")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "lab" in extras and set(extras) <= set(project["optional-dependencies"])
    assert any(d.startswith("jupyterlab") for d in project["optional-dependencies"]["lab"])


def test_make_lab_starts_without_a_browser_and_as_root():
    out = subprocess.run(["make", "-n", "lab"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    (lab,) = [line for line in out.splitlines() if "jupyter lab" in line]
    assert "--no-browser" in lab and lab.rstrip().endswith("notebooks/")
    assert ("--allow-root" in lab) == (os.geteuid() == 0)
    assert not [line for line in out.splitlines() if '".[lab]"' in line]  # no install on first use
