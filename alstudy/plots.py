"""Figures from tidy results, written by name through one entry point, :func:`savefig`."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

__all__ = ["savefig", "learning_curve", "ablation_curve", "penalty_heatmap", "METRIC_LABELS"]

METRIC_LABELS = {"accuracy": "test accuracy", "mae": "test MAE", "select_seconds": "selection time [s]",
                 "train_seconds": "training time [s]"}


def savefig(fig: plt.Figure, name: str, folder: str | Path = "results/figures", dpi: int = 150) -> Path:
    """Save ``fig`` as ``<folder>/<name>.png`` (the one way figures are written) and return the path."""
    path = Path(folder) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def learning_curve(frame: pd.DataFrame, metric: str | None = None, hue: str = "strategy",
                   ax: plt.Axes | None = None, title: str | None = None,
                   x: str = "n_labeled") -> plt.Figure:
    """Metric vs number of labels: mean over seeds with a 95% bootstrap band (fixed seed).

    Args:
        frame: Tidy results (one or more strategies and seeds).
        metric: ``accuracy`` / ``mae`` / ... (default: the first of accuracy, mae present).
        hue: Column distinguishing the curves.
        ax: Axes to draw on (a new figure otherwise).
        title: Axes title.
        x: Column on the horizontal axis (default: labeled-set size).

    Returns:
        The figure.
    """
    metric = metric or next(m for m in ("accuracy", "mae") if m in set(frame["metric"]))
    sub = frame[frame["metric"] == metric]
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.2))
    sns.lineplot(data=sub, x=x, y="value", hue=hue, style=hue, markers=True, dashes=False,
                 errorbar=("ci", 95), seed=0, ax=ax)
    ax.set_xlabel("labeled examples" if x == "n_labeled" else x)
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    n_curves = sub[hue].nunique()
    if n_curves > 4:  # many curves: legend beside the axes, never on top of the lines
        ax.legend(title=hue, frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5))
    else:
        ax.legend(title=hue, frameon=False)
    return ax.figure


def ablation_curve(frame: pd.DataFrame, value_col: str, metric: str | None = None,
                   ax: plt.Axes | None = None, title: str | None = None, log_x: bool = False) -> plt.Figure:
    """Paper-style ablation plot: metric vs the ablated value, one colour per cycle."""
    metric = metric or next(m for m in ("accuracy", "mae") if m in set(frame["metric"]))
    sub = frame[frame["metric"] == metric]
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.2))
    sns.lineplot(data=sub, x=value_col, y="value", hue="cycle", palette="viridis", marker="o",
                 errorbar=("ci", 95), seed=0, ax=ax)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(value_col)
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    return ax.figure


def penalty_heatmap(matrix: pd.DataFrame, title: str | None = None) -> plt.Figure:
    """Heat map of a pairwise penalty matrix (``evidence.penalty_matrix``, Ash et al. 2020, Sec. 5).

    Cell [i, j] = weighted number of checkpoints at which the row strategy is significantly
    better than the column strategy; the strip below gives each column's mean (how often that
    strategy loses; lower is better).

    Args:
        matrix: Square DataFrame, rows = winners, columns = losers.
        title: Figure title.

    Returns:
        The figure.
    """
    k = len(matrix)
    fig, (ax, ax_mean) = plt.subplots(2, 1, figsize=(1.0 + 0.8 * k, 1.6 + 0.7 * k), sharex=True,
                                      gridspec_kw=dict(height_ratios=[k, 1], hspace=0.08))
    vmax = max(float(matrix.to_numpy().max()), 1e-9)
    sns.heatmap(matrix, annot=True, fmt=".2f", cmap="viridis", vmin=0, vmax=vmax, cbar=False, square=False,
                ax=ax)
    ax.set_ylabel("row: significantly better ...")
    ax.set_xlabel("")
    means = matrix.mean(axis=0).to_frame().T.rename(index={0: "column mean"})
    sns.heatmap(means, annot=True, fmt=".2f", cmap="viridis", vmin=0, vmax=vmax, cbar=False, ax=ax_mean)
    ax_mean.set_xlabel("... than column (lower column mean = loses less)")
    ax_mean.set_ylabel("")
    ax_mean.tick_params(axis="y", rotation=0)
    ax_mean.tick_params(axis="x", rotation=45)
    ax.set_title(title or "penalty matrix: weighted wins of row over column (paired t per labeled-set size)",
                 fontsize=9)
    return fig
