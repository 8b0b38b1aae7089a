"""Figures from tidy results, written by name through one entry point, :func:`savefig`."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

__all__ = ["savefig", "learning_curve", "ablation_curve", "segmentation_examples", "METRIC_LABELS"]

METRIC_LABELS = {"accuracy": "test accuracy", "mae": "test MAE", "select_seconds": "selection time [s]",
                 "train_seconds": "training time [s]", "miou": "test mIoU",
                 "pixel_accuracy": "test pixel accuracy"}


def savefig(fig: plt.Figure, name: str, folder: str | Path = "results/figures", dpi: int = 150) -> Path:
    """Save ``fig`` as ``<folder>/<name>.png`` (the one way figures are written) and return the path."""
    path = Path(folder) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def learning_curve(frame: pd.DataFrame, metric: str | None = None, hue: str = "strategy",
                   ax: plt.Axes | None = None, title: str | None = None,
                   x: str = "n_labeled", reference: float | None = None,
                   reference_label: str = "full-data ceiling") -> plt.Figure:
    """Metric vs number of labels: mean over seeds with a 95% bootstrap band (fixed seed).

    Args:
        frame: Tidy results (one or more strategies and seeds).
        metric: ``accuracy`` / ``mae`` / ... (default: the first of accuracy, mae present).
        hue: Column distinguishing the curves.
        ax: Axes to draw on (a new figure otherwise).
        title: Axes title.
        x: Column on the horizontal axis (default: labeled-set size).
        reference: Draw a dashed horizontal line at this value (e.g. the full-data ceiling).
        reference_label: Legend entry of the reference line.

    Returns:
        The figure.
    """
    metric = metric or next(m for m in ("accuracy", "mae", "miou") if m in set(frame["metric"]))
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
    if reference is not None:
        ax.axhline(reference, color="0.3", linestyle="--", linewidth=1.2, label=reference_label)
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


def segmentation_examples(image, target, pred, class_names=None, ignore_index: int = 255,
                          title: str | None = None) -> plt.Figure:
    """Rows of (image, ground truth, prediction) for a few test images.

    Args:
        image: ``[n, H, W]`` grey or ``[n, 3, H, W]`` RGB values in [0, 1].
        target: True class maps ``[n, H, W]`` (``ignore_index`` drawn white).
        pred: Predicted class maps ``[n, H, W]``.
        class_names: Names of the classes (legend; default: the class ids).
        ignore_index: Target value of unscored pixels.
        title: Figure title.

    Returns:
        The figure.
    """
    import numpy as np
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    image, target, pred = np.asarray(image), np.asarray(target), np.asarray(pred)
    n = image.shape[0]
    num_classes = len(class_names) if class_names else int(max(
        target[target != ignore_index].max(initial=0), pred.max(initial=0))) + 1
    colours = sns.color_palette("tab20", max(num_classes, 2))[:num_classes] + [(1.0, 1.0, 1.0)]
    cmap = ListedColormap(colours)
    fig, axes = plt.subplots(n, 3, figsize=(6.6, 2.2 * n), squeeze=False)

    def coded(m):  # class ids -> colour index, ignore -> last (white)
        return np.where(m == ignore_index, num_classes, m)

    for i in range(n):
        img = image[i] if image.ndim == 3 else image[i].transpose(1, 2, 0)
        axes[i, 0].imshow(img, cmap="gray" if image.ndim == 3 else None, vmin=0, vmax=1)
        for j, m in ((1, target[i]), (2, pred[i])):
            axes[i, j].imshow(coded(m), cmap=cmap, vmin=0, vmax=num_classes, interpolation="nearest")
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    for ax, name in zip(axes[0], ("image", "ground truth", "prediction")):
        ax.set_title(name)
    names = list(class_names) if class_names else [str(c) for c in range(num_classes)]
    handles = [Patch(color=colours[c], label=names[c]) for c in range(num_classes)]
    handles.append(Patch(facecolor="white", edgecolor="0.5", label="ignore"))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
               fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
