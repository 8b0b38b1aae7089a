"""Figures from tidy results, written by name through one entry point, :func:`savefig`."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

__all__ = ["savefig", "learning_curve", "ablation_curve", "detection_examples", "METRIC_LABELS"]

METRIC_LABELS = {"accuracy": "test accuracy", "mae": "test MAE", "select_seconds": "selection time [s]",
                 "train_seconds": "training time [s]", "map50": "test mAP@0.5 (VOC07 11-point)",
                 "map50_all": "test mAP@0.5 (all-point)"}


def savefig(fig: plt.Figure, name: str, folder: str | Path = "results/figures", dpi: int = 150) -> Path:
    """Save ``fig`` as ``<folder>/<name>.png`` (the one way figures are written) and return the path."""
    path = Path(folder) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def learning_curve(frame: pd.DataFrame, metric: str | None = None, hue: str = "strategy",
                   ax: plt.Axes | None = None, title: str | None = None,
                   x: str = "n_labeled", reference: float | None = None,
                   reference_label: str = "full training set") -> plt.Figure:
    """Metric vs number of labels: mean over seeds with a 95% bootstrap band (fixed seed).

    Args:
        frame: Tidy results (one or more strategies and seeds).
        metric: ``accuracy`` / ``mae`` / ``map50`` ... (default: the first of accuracy, mae,
            map50 present).
        hue: Column distinguishing the curves.
        ax: Axes to draw on (a new figure otherwise).
        title: Axes title.
        x: Column on the horizontal axis (default: labeled-set size).
        reference: Optional value drawn as a dashed horizontal line (e.g. the ceiling: the same
            model trained on the whole training set).
        reference_label: Legend entry of the reference line.

    Returns:
        The figure.
    """
    metric = metric or next(m for m in ("accuracy", "mae", "map50") if m in set(frame["metric"]))
    sub = frame[frame["metric"] == metric]
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.2))
    sns.lineplot(data=sub, x=x, y="value", hue=hue, style=hue, markers=True, dashes=False,
                 errorbar=("ci", 95), seed=0, ax=ax)
    if reference is not None:
        ax.axhline(reference, color="0.25", linestyle="--", linewidth=1.2,
                   label=f"{reference_label} ({reference:.3g})")
    ax.set_xlabel("labeled examples" if x == "n_labeled" else x)
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    n_curves = sub[hue].nunique() + (reference is not None)
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


def detection_examples(images, truths, predictions, class_names, *, ncols: int = 4,
                       min_score: float = 0.5, titles=None) -> plt.Figure:
    """Images with their true boxes (green, dashed) and predicted boxes (red, with class:score).

    Args:
        images: uint8 array/tensor ``[N, C, H, W]`` (C = 1 or 3).
        truths: Per image ``(boxes [G, 4], labels [G])`` in relative xyxy coordinates.
        predictions: Per image ``(boxes [K, 4], labels [K], scores [K])``.
        class_names: Name of every class index.
        ncols: Images per row.
        min_score: Predictions drawn from this score on.
        titles: Optional title per image.

    Returns:
        The figure.
    """
    import numpy as np
    from matplotlib.patches import Rectangle

    images = np.asarray(images)
    n = len(images)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.6 * nrows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        img = images[k]
        h, w = img.shape[1:]
        ax.imshow(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0), cmap="gray", vmin=0, vmax=255)
        for (x0, y0, x1, y1), lab in zip(np.asarray(truths[k][0]).tolist(), np.asarray(truths[k][1]).tolist()):
            ax.add_patch(Rectangle((x0 * w - 0.5, y0 * h - 0.5), (x1 - x0) * w, (y1 - y0) * h, fill=False,
                                   edgecolor="lime", linestyle="--", linewidth=1.2))
        boxes, labels, scores = (np.asarray(v) for v in predictions[k])
        for (x0, y0, x1, y1), lab, sc in zip(boxes.tolist(), labels.tolist(), scores.tolist()):
            if sc < min_score:
                continue
            ax.add_patch(Rectangle((x0 * w - 0.5, y0 * h - 0.5), (x1 - x0) * w, (y1 - y0) * h, fill=False,
                                   edgecolor="red", linewidth=1.2))
            ax.text(x0 * w, y0 * h - 1, f"{class_names[int(lab)]}:{sc:.2f}", color="red", fontsize=7,
                    va="bottom", bbox={"facecolor": "white", "alpha": 0.6, "pad": 0.5, "linewidth": 0})
        if titles is not None:
            ax.set_title(titles[k], fontsize=8)
    fig.tight_layout()
    return fig
