"""Packaging promises: CPU pins, conda/pip lists agree, public docstrings, clean notebooks."""

import ast
import json
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(spec: str) -> str:
    return re.split(r"[<>=!~\[ ]", spec, maxsplit=1)[0].lower()


def test_environment_yml_lists_the_same_direct_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_specs = set(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        pip_specs |= set(extra)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda_specs = {s for s in conda_pip if not s.startswith("-e")}
    assert conda_specs == pip_specs


def test_cpu_stack_is_pinned_and_torchvision_absent():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + sum(project["optional-dependencies"].values(), [])
    assert "torch==2.13.0" in deps
    assert not any(_name(d) in {"torchvision", "torchaudio"} for d in deps)


def test_public_functions_have_docstrings():
    missing = []
    for path in (ROOT / "alstudy").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                if not ast.get_docstring(node):
                    missing.append(f"{path.relative_to(ROOT)}:{node.name}")
    assert not missing, missing


def test_notebooks_are_clean_and_parameterised():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert not any(c.get("outputs") or c.get("execution_count") for c in code), f"{path.name} has outputs"
        tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: {len(tagged)} parameters cells"
        assert nb["cells"][0]["cell_type"] == "markdown", f"{path.name} must open with markdown"
        src = "\n".join("".join(c["source"]) for c in code)
        assert not re.search(r"^\s*(def|class) ", src, re.M), f"{path.name} defines functions"


def test_readme_opens_with_the_two_commands_and_ci_calls_the_test_one():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", readme, re.S)
    commands = [l.split("#")[0].strip() for l in blocks[0].splitlines() if l.strip()]
    assert commands == ["make study", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_experiment_notebook_has_valid_presets(tmp_path, monkeypatch):
    """smoke, cpu and paper presets exist for every experiment notebook and validate against it."""
    import pytest

    from alstudy import notebooks

    monkeypatch.chdir(ROOT)
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        if path.stem == "figures":  # regenerates figures, runs no experiment
            continue
        for preset in ("smoke", "cpu", "paper"):
            file = ROOT / "params" / f"{path.stem}.{preset}.yaml"
            assert file.exists(), f"missing {file.name}"
            given = yaml.safe_load(file.read_text()) or {}
            given["results_dir"] = str(tmp_path)
            notebooks.run_dir(notebooks.path_of(path.stem), given)  # raises on a bad key or value
        with pytest.raises(Exception, match="nonexistent_key"):
            notebooks.run_dir(notebooks.path_of(path.stem), {"nonexistent_key": 1})
