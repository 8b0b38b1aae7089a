"""Parameterised notebooks: find them, read their ``parameters`` cell, execute them with papermill.

The executed copy is stored next to the results it produced, in the folder the notebook itself
computes from its parameters (:func:`run_dir`).
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import io
import json
import logging
import os
import time
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import params as params_mod

__all__ = ["NOTEBOOK_DIR", "notebook_dirs", "path_of", "parameters", "ParameterDoc",
           "parameter_docs", "describe", "run_dir", "execute"]

NOTEBOOK_DIR = Path("notebooks")  # relative to the working directory (searched first)

#: The repository's notebooks folder, next to the package (an editable install or a checkout).
_PACKAGE_NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def notebook_dirs() -> list[Path]:
    """Folders searched for notebooks: ``./notebooks``, then the repository's ``notebooks/``."""
    dirs = [NOTEBOOK_DIR]
    if _PACKAGE_NOTEBOOKS.resolve() != NOTEBOOK_DIR.resolve():
        dirs.append(_PACKAGE_NOTEBOOKS)
    return dirs


def path_of(name: str) -> Path:
    """``notebooks/<name>.ipynb`` (or ``name`` itself if it is a path to a notebook).

    The name is looked up in :func:`notebook_dirs`: the working directory's ``notebooks/``, then
    the repository's, so ``alstudy notebook quickstart`` works from any directory.

    Raises:
        alstudy.params.ParamError: No such notebook (the message says where it looked and lists
            the available ones).
    """
    path = Path(name)
    if path.suffix == ".ipynb":
        if not path.is_file():
            raise params_mod.ParamError(f"notebook file {name!r} does not exist")
        return path
    for folder in notebook_dirs():
        if (folder / f"{name}.ipynb").is_file():
            return folder / f"{name}.ipynb"
    have = sorted({p.stem for folder in notebook_dirs() for p in folder.glob("*.ipynb")})
    where = ", ".join(str(d.resolve()) for d in notebook_dirs())
    raise params_mod.ParamError(f"notebook {name!r} not found{params_mod.did_you_mean(name, have)}; "
                                f"looked in {where}; available: {have}")


def _parameters_cell(path: Path) -> str:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise params_mod.ParamError(f"{path} must have exactly one cell tagged 'parameters'")
    return cells[0].source


@dataclass(frozen=True)
class ParameterDoc:
    """One key of a notebook's ``parameters`` cell, as written there."""

    name: str
    default: str  # the value's expression, as source text without comments
    comment: str  # the ``# ...`` comment(s) on the assignment's lines ("" if none)


def parameter_docs(path: Path) -> list[ParameterDoc]:
    """Every key of a notebook's ``parameters`` cell with its default and comment, in order.

    The cell is parsed (not run): each top-level ``name = value`` assignment is a parameter
    (names starting with ``_`` are not); its comment is the text of the comments on the lines
    of the assignment.
    """
    source = _parameters_cell(path)
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    docs = []
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)) or node.targets[0].id.startswith("_"):
            continue
        lines = range(node.lineno, (node.end_lineno or node.lineno) + 1)
        text = "; ".join(comments[i] for i in lines if comments.get(i))
        docs.append(ParameterDoc(node.targets[0].id, ast.unparse(node.value), text))
    return docs


def describe(path: Path) -> str:
    """The parameters of a notebook, one line each: ``name = default  # comment``."""
    docs = parameter_docs(path)
    width = max((len(d.name) for d in docs), default=0)
    column = min(max((len(d.default) for d in docs), default=0), 24)  # align short defaults' comments
    lines = [f"parameters of {path} (override with -p KEY VALUE or -f preset.yaml):"]
    for d in docs:
        lines.append(f"  {d.name:{width}s} = {d.default:{column}s}" + (f"  # {d.comment}" if d.comment else ""))
    if docs and {d.name for d in docs} <= set(params_mod.SCHEMA):
        lines.append("Every other key of alstudy.params.SCHEMA is accepted too "
                     "(python -c 'from alstudy import params; print(params.describe())').")
    return "\n".join(lines)


def parameters(path: Path) -> dict[str, Any]:
    """Defaults of a notebook's single ``parameters`` cell (plain assignments, evaluated)."""
    namespace: dict[str, Any] = {}
    exec(compile(_parameters_cell(path), str(path), "exec"), {"__builtins__": __builtins__}, namespace)  # noqa: S102
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


class _SchemaKeysKnown(logging.Filter):
    """Drops papermill's "Passed unknown parameter: <key>" for keys of :data:`params.SCHEMA`
    that a notebook's ``parameters`` cell leaves at their default (``threads``, ``run_id``,
    ...): the notebook collects and validates them itself. Other keys keep the warning (and
    fail the notebook's validation with a message naming them)."""

    PREFIX = "Passed unknown parameter: "

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith(self.PREFIX)
                    and message[len(self.PREFIX):] in params_mod.SCHEMA)


class _CellReadByAst(logging.Filter):
    """Drops papermill's "Unable to parse line ...": its inspection gives up on any line of the
    ``parameters`` cell with two ``=`` (a label such as ``"rho=0.01"``). The cell is read here with
    :mod:`ast` (:func:`parameters`, :func:`parameter_docs`), which those lines do not trouble."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Unable to parse line ")


@contextlib.contextmanager
def _quiet_known_papermill_warnings():
    """While papermill executes: without the two warnings above, which say nothing wrong."""
    filters = [(logging.getLogger("papermill"), _SchemaKeysKnown()),
               (logging.getLogger("papermill.translators"), _CellReadByAst())]
    for logger, only in filters:
        logger.addFilter(only)
    try:
        yield
    finally:
        for logger, only in filters:
            logger.removeFilter(only)


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
    with _quiet_known_papermill_warnings():
        pm.execute_notebook(str(path), str(attempt), parameters=given, kernel_name=kernel,
                            progress_bar=progress, cwd=str(Path.cwd()))
    os.replace(attempt, output)
    return output
