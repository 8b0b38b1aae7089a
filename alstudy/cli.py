"""Command line: ``alstudy run | notebook | datasets | strategies``.

``alstudy run params/<file>.yaml [-p key value ...]`` runs the AL loop directly;
``alstudy notebook <name> [-f preset.yaml] [-p key value ...]`` executes
``notebooks/<name>.ipynb`` with papermill and stores the executed copy next to its results.
Values given with ``-p`` are parsed as YAML (``-p seeds "[0, 1, 2]"``, ``-p lr 1e-3``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import yaml

from . import params as params_mod

NOTEBOOK_DIR = Path("notebooks")


def _overrides(pairs: Sequence[Sequence[str]] | None) -> dict[str, Any]:
    return {key: yaml.safe_load(value) for key, value in (pairs or [])}


def _notebook_path(name: str) -> Path:
    path = Path(name)
    if path.suffix != ".ipynb":
        path = NOTEBOOK_DIR / f"{name}.ipynb"
    if not path.exists():
        have = sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb"))
        raise params_mod.ParamError(f"notebook {name!r} not found; available: {have}")
    return path


def notebook_parameters(path: Path) -> dict[str, Any]:
    """Defaults of a notebook's ``parameters`` cell (plain assignments, evaluated)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise params_mod.ParamError(f"{path} must have exactly one cell tagged 'parameters'")
    namespace: dict[str, Any] = {}
    exec(compile(cells[0].source, str(path), "exec"), {}, namespace)  # noqa: S102 - our notebooks
    return {k: v for k, v in namespace.items() if not k.startswith("_")}


def notebook_run_dir(path: Path, given: dict[str, Any]) -> Path:
    """Folder the notebook's results go to, computed exactly as the notebook computes it."""
    from . import loop

    defaults = notebook_parameters(path)
    if set(defaults) <= set(params_mod.SCHEMA):  # an AL-loop notebook: the schema decides
        try:
            return loop.run_dir(params_mod.validate({**defaults, **given}))
        except params_mod.ParamError as err:
            raise params_mod.ParamError(f"{path}: {err}") from None
    merged = params_mod.check_keys(given, defaults, where=str(path))
    digest = hashlib.sha1(json.dumps(merged, sort_keys=True, default=str).encode()).hexdigest()[:10]
    base = Path(merged.get("results_dir", "results")) / merged.get("experiment", path.stem)
    return base / (merged.get("run_id") or f"{path.stem}-{digest}")


def cmd_notebook(args: argparse.Namespace) -> int:
    """Execute a notebook with papermill into its results folder."""
    import papermill as pm

    path = _notebook_path(args.name)
    given: dict[str, Any] = {}
    for preset in args.file or []:
        given.update(yaml.safe_load(Path(preset).read_text()) or {})
    given.update(_overrides(args.param))
    out_dir = notebook_run_dir(path, given)
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / path.name
    print(f"executing {path} -> {output}", file=sys.stderr)
    pm.execute_notebook(str(path), str(output), parameters=given, kernel_name=args.kernel,
                        progress_bar=not args.quiet, cwd=str(Path.cwd()))
    print(output)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run the AL loop from a YAML preset and print the summary table."""
    from . import loop
    from .results import summary_table

    p = params_mod.load(args.params, **_overrides(args.param))
    frame = loop.run(p)
    print(f"results: {loop.run_dir(p)}", file=sys.stderr)
    print(summary_table(frame).drop(columns=[c for c in summary_table(frame).columns
                                             if c.endswith(("_mean", "_std"))]).to_string(index=False))
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    """Print every dataset, whether it is available, and where from / how to get it."""
    from . import data

    rows = data.available(args.root)
    width = max(len(r.name) for r in rows)
    for r in rows:
        state = "available  " if r.available else "unavailable"
        print(f"{r.name:{width}s}  {r.task:14s}  {state}  {r.where}")
    return 0


def cmd_strategies(args: argparse.Namespace) -> int:
    """Print every strategy with its options, defaults and allowed values."""
    from . import strategies

    for name in strategies.available():
        cls = strategies.STRATEGIES[name]
        print(f"{name}  ({', '.join(cls.tasks)})")
        for key, opt in cls.option_spec().items():
            print(f"    {key} = {opt.default!r}  # {opt.allowed}{'; ' + opt.help if opt.help else ''}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``alstudy`` argument parser."""
    parser = argparse.ArgumentParser(prog="alstudy", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the AL loop from a YAML preset")
    run.add_argument("params", help="YAML preset, e.g. params/quickstart.cpu.yaml")
    run.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                     help="override one parameter (value parsed as YAML)")
    run.set_defaults(func=cmd_run)

    nb = sub.add_parser("notebook", help="execute a notebook with papermill into results/")
    nb.add_argument("name", help="notebook name (e.g. quickstart) or path")
    nb.add_argument("-f", "--file", action="append", help="YAML preset of parameters")
    nb.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"))
    nb.add_argument("--kernel", default="python3", help="Jupyter kernel name")
    nb.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    nb.set_defaults(func=cmd_notebook)

    ds = sub.add_parser("datasets", help="list datasets and how to get the missing ones")
    ds.add_argument("--root", default=None, help="folder of path-based datasets")
    ds.set_defaults(func=cmd_datasets)

    st = sub.add_parser("strategies", help="list strategies and their options")
    st.set_defaults(func=cmd_strategies)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``alstudy`` command."""
    args = build_parser().parse_args(argv)
    from .data import DatasetUnavailable

    try:
        return args.func(args)
    except (params_mod.ParamError, DatasetUnavailable) as err:
        print(f"alstudy: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
