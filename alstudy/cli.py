"""Command line: ``alstudy run | notebook | batch | collect | figures | judge | report | datasets | strategies``.

``alstudy run params/<file>.yaml [-p key value ...]`` runs the AL loop directly;
``alstudy notebook <name> [-f preset.yaml] [-p key value ...]`` executes
``notebooks/<name>.ipynb`` with papermill and stores the executed copy next to its results.
Values given with ``-p`` are parsed as YAML (``-p seeds "[0, 1, 2]"``, ``-p lr 1e-3``).
``--dry-run`` runs a preset at toy size with its real models and code paths (:mod:`alstudy.dryrun`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from . import params as params_mod


def _overrides(pairs: Sequence[Sequence[str]] | None) -> dict[str, Any]:
    """``-p KEY VALUE`` pairs as a dict, each value parsed as YAML (``-p seeds "[0, 1]"``)."""
    return {key: params_mod.parse_value(key, value) for key, value in (pairs or [])}


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def cmd_notebook(args: argparse.Namespace) -> int:
    """Execute a notebook with papermill into its results folder."""
    from . import notebooks

    if args.help:
        print(args.parser.format_help())
        if args.name:
            print(notebooks.describe(notebooks.path_of(args.name)))
        return 0
    if not args.name:
        raise params_mod.ParamError("give a notebook name, e.g. alstudy notebook quickstart; "
                                    "alstudy notebook NAME --help lists its parameters")
    try:
        from papermill.exceptions import PapermillExecutionError
    except ImportError:
        raise params_mod.ParamError("alstudy notebook needs papermill: pip install -e '.[notebooks]'") from None
    given: dict[str, Any] = {}
    for preset in args.file or []:
        given.update(params_mod.read_yaml(preset))
    given.update(_overrides(args.param))
    if args.dry_run:
        given = _dry_run_notebook(args.name, given)
    path = notebooks.path_of(args.name)
    try:
        output = notebooks.execute(args.name, given, kernel=args.kernel, progress=not args.quiet)
    except PapermillExecutionError as err:
        # papermill's message is the whole traceback; the kernel's last line names the cause
        executed = notebooks.run_dir(path, given) / path.name
        print(f"alstudy: error: notebook {args.name!r} failed in cell {err.exec_count}: {err.ename}: "
              f"{_first_line(err.evalue)} (traceback in {executed})", file=sys.stderr)
        return 1
    print(output)
    return 0


def _dry_run_notebook(name: str, given: dict[str, Any]) -> dict[str, Any]:
    """The parameters of a dry run of notebook ``name`` (see :mod:`alstudy.dryrun`)."""
    from . import dryrun, notebooks

    path = notebooks.path_of(name)
    defaults = notebooks.parameters(path)
    scratch = dryrun.scratch_dir()
    print(f"dry run: results under {scratch}", file=sys.stderr)
    if set(defaults) <= set(params_mod.SCHEMA):  # an AL-loop notebook
        try:
            p = params_mod.validate({**defaults, **given})
        except params_mod.ParamError as err:
            raise params_mod.ParamError(f"{path}: {err}") from None
        return dryrun.loop_params(p, scratch)
    return dryrun.notebook_params(defaults, given, scratch)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the AL loop from a YAML preset and print the summary table."""
    from . import loop
    from .results import summary_table

    p = params_mod.load(args.params, **_overrides(args.param))
    if args.dry_run:
        from . import dryrun

        scratch = dryrun.scratch_dir()
        print(f"dry run: results under {scratch}", file=sys.stderr)
        p = dryrun.loop_params(p, scratch)
    frame = loop.run(p)
    print(f"results: {loop.run_dir(p)}", file=sys.stderr)
    print(summary_table(frame).drop(columns=[c for c in summary_table(frame).columns
                                             if c.endswith(("_mean", "_std"))]).to_string(index=False))
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    """Run a grid of units locally or on Dask; print a failure summary; exit 1 if any failed."""
    from . import batch

    frame, outcomes = batch.run_batch(args.spec, jobs=args.jobs, backend=args.backend,
                                      scheduler=args.scheduler, fail_fast=args.fail_fast,
                                      results_dir=args.results_dir, progress=not args.quiet)
    ok = sum(o["ok"] for o in outcomes)
    print(f"{ok}/{len(outcomes)} unit(s) run now succeeded; {len(frame)} rows collected", file=sys.stderr)
    report = batch.failure_report(outcomes)
    if report:
        print(report, file=sys.stderr)
        return 1
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    """Rebuild an experiment's combined CSV from its finished run folders."""
    from . import batch

    folder = Path(args.experiment_dir)
    if not folder.is_dir():
        raise params_mod.ParamError(f"experiment folder {str(folder)!r} does not exist")
    if not any(folder.glob("*/metrics.csv")):
        raise params_mod.ParamError(f"experiment folder {str(folder)!r} holds no run folders "
                                    "(<run>/metrics.csv); nothing to collect")
    frame = batch.collect(args.experiment_dir)
    print(f"{len(frame)} rows -> {Path(args.experiment_dir) / 'metrics.csv'}", file=sys.stderr)
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    """Regenerate every figure from stored results by executing ``notebooks/figures.ipynb``."""
    from . import notebooks

    given = {"results_dir": args.results_dir} if args.results_dir else {}
    folder = Path(args.results_dir or params_mod.SCHEMA["results_dir"].default)
    if not folder.is_dir():
        raise params_mod.ParamError(f"results folder {str(folder)!r} does not exist")
    print(notebooks.execute("figures", given, progress=not args.quiet))
    return 0


def cmd_judge(args: argparse.Namespace) -> int:
    """Judge the registry claims of stored run folders again (no training); write verdict.json/.md."""
    from .evidence import verdicts

    for folder in args.run_dirs:
        run_dir = Path(folder)
        if not (run_dir / "params.yaml").exists() and not (run_dir / "params.json").exists():
            print(f"alstudy: error: {run_dir} is not a run folder (no params.yaml or params.json)", file=sys.stderr)
            return 2
        notebook = args.notebook or run_dir.parent.name
        records = verdicts.judge_run(notebook, run_dir)
        counts = {v: sum(r.verdict == v for r in records) for v in verdicts.VERDICT_VALUES}
        print(f"{run_dir}: " + ", ".join(f"{n} {v}" for v, n in counts.items() if n), file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Rebuild the README's reproduction section from the claim registry and the stored verdicts."""
    from .evidence import report

    changed = report.update_readme(args.readme, args.results_dir, check=args.check)
    if args.check:
        print(f"{args.readme}: {'differs from' if changed else 'matches'} the registry and results",
              file=sys.stderr)
        return 1 if changed else 0
    print(f"{args.readme}: {'rewritten' if changed else 'unchanged'}", file=sys.stderr)
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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is invalid; allowed: an integer >= 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``alstudy`` argument parser."""
    parser = argparse.ArgumentParser(prog="alstudy", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the AL loop from a YAML preset")
    run.add_argument("params", help="YAML preset, e.g. params/quickstart.cpu.yaml")
    run.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                     help="override one parameter (value parsed as YAML)")
    run.add_argument("--dry-run", action="store_true",
                     help="one seed, one cycle of one epoch on a small pool, same models and code "
                          "paths; results in a scratch folder")
    run.set_defaults(func=cmd_run)

    nb = sub.add_parser("notebook", help="execute a notebook with papermill into results/",
                        add_help=False)
    nb.add_argument("-h", "--help", action="store_true",
                    help="show this help and, with NAME, the notebook's parameters")
    nb.add_argument("name", nargs="?", help="notebook name (e.g. quickstart) or path")
    nb.add_argument("-f", "--file", action="append", help="YAML preset of parameters")
    nb.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                    help="override one parameter (value parsed as YAML)")
    nb.add_argument("--dry-run", action="store_true",
                    help="run the preset at toy size (same models and code paths) into a scratch folder")
    nb.add_argument("--kernel", default="python3", help="Jupyter kernel name")
    nb.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    nb.set_defaults(func=cmd_notebook, parser=nb)

    bt = sub.add_parser("batch", help="run a grid of units (papermill or loop) locally or on Dask")
    bt.add_argument("spec", help="batch file, e.g. params/batch/ns_ablation_k.cpu.yaml")
    bt.add_argument("--jobs", type=_positive_int, default=None,
                    help="parallel units, >= 1 (default: CPU cores)")
    bt.add_argument("--backend", choices=["local", "dask"], default="local")
    bt.add_argument("--scheduler", default=None, help="address of a running Dask scheduler")
    bt.add_argument("--fail-fast", action="store_true", help="stop after the first failed unit")
    bt.add_argument("--results-dir", default=None, help="override the results root")
    bt.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    bt.set_defaults(func=cmd_batch)

    co = sub.add_parser("collect", help="rebuild results/<experiment>/metrics.csv from its runs")
    co.add_argument("experiment_dir", help="e.g. results/ns_ablation_k")
    co.set_defaults(func=cmd_collect)

    fg = sub.add_parser("figures", help="regenerate every figure from results/ (no training)")
    fg.add_argument("--results-dir", default=None, help="results root (default: results)")
    fg.add_argument("-q", "--quiet", action="store_true")
    fg.set_defaults(func=cmd_figures)

    jd = sub.add_parser("judge", help="judge the claims of stored run folders again (no training)")
    jd.add_argument("run_dirs", nargs="+", help="run folders, e.g. results/ns_regression/ames-cpu")
    jd.add_argument("--notebook", default=None, help="notebook whose claims to judge (default: the experiment folder's name)")
    jd.set_defaults(func=cmd_judge)

    rp = sub.add_parser("report", help="regenerate the README's reproduction section from results/")
    rp.add_argument("--readme", default="README.md", help="README file with the section markers")
    rp.add_argument("--results-dir", default="results", help="results root holding verdict.json files")
    rp.add_argument("--check", action="store_true", help="only check; exit 1 if the README differs")
    rp.set_defaults(func=cmd_report)

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
    except OSError as err:  # e.g. an unwritable results folder: the message names the path
        where = f"{err.filename}: " if err.filename else ""
        print(f"alstudy: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
