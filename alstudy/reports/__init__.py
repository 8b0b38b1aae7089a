"""Figures per experiment, rebuilt from stored results without retraining.

Every experiment has one *report builder*: ``builder(run_dir) -> {figure name: Figure}``,
reading only the CSVs (and ``params.yaml``) in its run folder. Notebooks call
:func:`figures` on the folder they just wrote; :func:`regenerate` calls the same builders on
every run folder under ``results/`` (``alstudy figures``), so a figure in a notebook and its
regenerated copy cannot differ. Builders register with ``@register("<experiment>")``;
experiments without one get learning curves (:func:`learning_curves`). Modules in this package
are imported automatically.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Callable

import matplotlib.pyplot as plt
import yaml

from .. import plots
from ..results import read_metrics

__all__ = ["REPORTS", "FIGURES_DEFAULTS", "register", "figures", "save", "regenerate", "learning_curves",
           "run_params", "penalty_figure"]

Builder = Callable[[Path], dict[str, plt.Figure]]
REPORTS: dict[str, Builder] = {}


def register(*experiments: str) -> Callable[[Builder], Builder]:
    """Decorator: use the builder for these experiment names."""
    def wrap(fn: Builder) -> Builder:
        for name in experiments:
            if name in REPORTS:
                raise ValueError(f"report for {name!r} registered twice")
            REPORTS[name] = fn
        return fn
    return wrap


def run_params(run_dir: Path) -> dict:
    """The resolved parameters saved with a run (empty if none)."""
    path = Path(run_dir) / "params.yaml"
    return yaml.safe_load(path.read_text()) if path.exists() else {}


def learning_curves(run_dir: Path) -> dict[str, plt.Figure]:
    """Default report: one learning curve (mean, 95% band over seeds) per dataset of the run."""
    frame = read_metrics(Path(run_dir) / "metrics.csv")
    if frame.empty:
        return {}
    out = {}
    for dataset, sub in frame.groupby("dataset"):
        seeds = sub["seed"].nunique()
        name = "learning_curve" if frame["dataset"].nunique() == 1 else f"learning_curve_{dataset}"
        out[name] = plots.learning_curve(sub, title=f"{dataset}, {sub['model'].iloc[0]}, {seeds} seed(s)")
    return out


def penalty_figure(frame, title: str, metric: str = "accuracy") -> dict[str, plt.Figure]:
    """``{"penalty_matrix": Figure}``: the pairwise penalty matrix of the run's strategies
    (:func:`alstudy.evidence.penalty_matrix`, paired t per labeled-set size) as a heat map; empty
    when the run has fewer than 2 strategies or 2 seeds, or no ``metric`` rows."""
    from ..evidence import penalty_matrix

    sub = frame[frame["metric"] == metric]
    if sub.empty or sub["strategy"].nunique() < 2 or sub["seed"].nunique() < 2:
        return {}
    matrix = penalty_matrix(sub, metric=metric)
    return {"penalty_matrix": plots.penalty_heatmap(
        matrix, title=f"penalty matrix, {title}\nrow significantly better than column "
                      f"(paired t, alpha 0.05), 1 / checkpoints per win")}


def figures(experiment: str, run_dir: str | Path) -> dict[str, plt.Figure]:
    """Build the figures of one run folder (no training)."""
    return REPORTS.get(experiment, learning_curves)(Path(run_dir))


def save(figs: dict[str, plt.Figure], run_dir: str | Path) -> list[Path]:
    """Write figures as ``<run_dir>/<name>.png`` through :func:`alstudy.plots.savefig`."""
    return [plots.savefig(fig, name, folder=run_dir) for name, fig in figs.items()]


def regenerate(results_dir: str | Path | None = None, close: bool = True) -> list[Path]:
    """Rebuild every figure of every run folder ``<results_dir>/<experiment>/<run>/`` (a folder
    with a saved ``params.yaml`` or ``params.json``).

    Args:
        results_dir: Results root (``None`` = the ``results_dir`` parameter's default).
        close: Close the figures after saving them.

    Returns:
        The PNG files written.
    """
    from ..params import SCHEMA

    results_dir = results_dir or SCHEMA["results_dir"].default
    written = []
    saved = {*Path(results_dir).glob("*/*/params.yaml"), *Path(results_dir).glob("*/*/params.json")}
    for run_dir in sorted({p.parent for p in saved}):
        experiment = run_dir.parent.name
        figs = figures(experiment, run_dir)
        written += save(figs, run_dir)
        if close:
            for fig in figs.values():
                plt.close(fig)
    return written


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

#: Parameters of ``notebooks/figures.ipynb``.
FIGURES_DEFAULTS = {"results_dir": None, "show": 6}
