"""Parameterised notebooks: find them, read their ``parameters`` cell, execute them with papermill.

The executed copy is stored next to the results it produced, in the folder the notebook itself
computes from its parameters (:func:`run_dir`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from . import params as params_mod

__all__ = ["NOTEBOOK_DIR", "path_of", "parameters", "run_dir", "execute"]

NOTEBOOK_DIR = Path("notebooks")


def path_of(name: str) -> Path:
    """``notebooks/<name>.ipynb`` (or ``name`` itself if it is a path to a notebook).

    Raises:
        alstudy.params.ParamError: No such notebook (the message lists the available ones).
    """
    path = Path(name)
    if path.suffix != ".ipynb":
        path = NOTEBOOK_DIR / f"{name}.ipynb"
    if not path.exists():
        have = sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb"))
        raise params_mod.ParamError(f"notebook {name!r} not found; available: {have}")
    return path


def parameters(path: Path) -> dict[str, Any]:
    """Defaults of a notebook's single ``parameters`` cell (plain assignments, evaluated)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise params_mod.ParamError(f"{path} must have exactly one cell tagged 'parameters'")
    namespace: dict[str, Any] = {}
    exec(compile(cells[0].source, str(path), "exec"), {"__builtins__": __builtins__}, namespace)  # noqa: S102
    return {k: v for k, v in namespace.items() if not k.startswith("_")}


def run_dir(path: Path, given: dict[str, Any]) -> Path:
    """Folder the notebook's results go to, computed exactly as the notebook computes it.

    AL-loop notebooks (all parameters are :data:`alstudy.params.SCHEMA` keys) use
    :func:`alstudy.loop.run_dir`; others use ``<results_dir>/<experiment>/<run_id or hash>``.

    Raises:
        alstudy.params.ParamError: Unknown parameter names or bad values.
    """
    from . import loop

    defaults = parameters(path)
    if set(defaults) <= set(params_mod.SCHEMA):  # an AL-loop notebook: the schema decides
        try:
            return loop.run_dir(params_mod.validate({**defaults, **given}))
        except params_mod.ParamError as err:
            raise params_mod.ParamError(f"{path}: {err}") from None
    merged = params_mod.check_keys(given, defaults, where=str(path))
    digest = hashlib.sha1(json.dumps(merged, sort_keys=True, default=str).encode()).hexdigest()[:10]
    results_dir = merged.get("results_dir") or params_mod.SCHEMA["results_dir"].default
    base = Path(results_dir) / merged.get("experiment", path.stem)
    return base / (merged.get("run_id") or f"{path.stem}-{digest}")


def execute(name: str, given: dict[str, Any] | None = None, *, kernel: str = "python3",
            progress: bool = True) -> Path:
    """Execute a notebook with papermill into its results folder and return the executed copy.

    Args:
        name: Notebook name (``quickstart``) or path.
        given: Parameter overrides (injected by papermill, validated by the notebook).
        kernel: Jupyter kernel name.
        progress: Show papermill's cell progress bar.

    Returns:
        Path of the executed notebook, ``<run_dir>/<name>.ipynb`` (replaced only by a successful
        execution; a failed one stays in ``<run_dir>/attempts/``).
    """
    import papermill as pm

    given = dict(given or {})
    path = path_of(name)
    out_dir = run_dir(path, given)
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / path.name
    # executed into attempts/ first: a failed run keeps its copy there and never replaces the
    # executed notebook of a finished run; a successful one is moved into place
    attempt = out_dir / "attempts" / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}.{path.name}"
    attempt.parent.mkdir(exist_ok=True)
    pm.execute_notebook(str(path), str(attempt), parameters=given, kernel_name=kernel,
                        progress_bar=progress, cwd=str(Path.cwd()))
    os.replace(attempt, output)
    return output
