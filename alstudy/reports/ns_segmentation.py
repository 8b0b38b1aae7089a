"""NoiseStability on semantic segmentation: figures and the ceiling table, from stored results.

The run folder holds the AL results (``metrics.csv``) and the full-data ceiling
(``ceiling.csv``, ``ceiling_examples.npz``; :mod:`alstudy.ceiling`). The learning curve of
mIoU carries the ceiling as a dashed line; :func:`ceiling_fractions` states how much of the
ceiling each strategy reaches at the last cycle (a model far below it has not learned, and
then every strategy looks alike).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from .. import ceiling, plots
from ..results import read_metrics
from . import register, run_params

__all__ = ["segmentation_figures", "ceiling_value", "ceiling_fractions"]


def ceiling_value(ceiling_frame: pd.DataFrame, metric: str = "miou") -> float | None:
    """Mean over seeds of the ceiling's ``metric`` (``None`` without ceiling rows)."""
    sub = ceiling_frame[ceiling_frame["metric"] == metric]
    return float(sub["value"].mean()) if len(sub) else None


def ceiling_fractions(frame: pd.DataFrame, ceiling_frame: pd.DataFrame,
                      metric: str = "miou") -> pd.DataFrame:
    """Last-cycle ``metric`` of each strategy as a fraction of the full-data ceiling.

    Args:
        frame: Tidy AL results.
        ceiling_frame: Rows of ``ceiling.csv``.
        metric: Metric compared (default mIoU).

    Returns:
        One row per strategy: ``strategy, seeds, n_labeled, final_mean, final_std, ceiling,
        fraction`` (``fraction`` = final_mean / ceiling).

    Raises:
        ValueError: No ceiling rows for ``metric``.
    """
    top = ceiling_value(ceiling_frame, metric)
    if top is None:
        raise ValueError(f"no ceiling rows for metric {metric!r}; run alstudy.ceiling.run first")
    sub = frame[frame["metric"] == metric]
    last = sub[sub["cycle"] == sub["cycle"].max()]
    rows = []
    for strategy, grp in last.groupby("strategy", sort=True):
        mean = float(grp["value"].mean())
        rows.append({"strategy": strategy, "seeds": grp["seed"].nunique(),
                     "n_labeled": int(grp["n_labeled"].iloc[0]), "final_mean": mean,
                     "final_std": float(grp["value"].std(ddof=1)) if len(grp) > 1 else 0.0,
                     "ceiling": top, "fraction": mean / top})
    return pd.DataFrame(rows)


@register("ns_segmentation")
def segmentation_figures(run_dir: Path) -> dict[str, plt.Figure]:
    """mIoU learning curve with the ceiling line, and the example predictions (if stored).

    Args:
        run_dir: A run folder with ``metrics.csv`` (and ``ceiling.csv``, ``ceiling_examples.npz``).

    Returns:
        ``{"learning_curve": Figure, "examples": Figure}`` (what the folder allows).
    """
    path = Path(run_dir) / "metrics.csv"
    figs: dict[str, plt.Figure] = {}
    if not path.exists():
        return figs
    frame = read_metrics(path)
    if frame.empty:
        return figs
    p = run_params(run_dir)
    ceil = ceiling.read(run_dir)
    top = ceiling_value(ceil)
    n_full = int(ceil["n_labeled"].iloc[0]) if len(ceil) else None
    title = (f"{p.get('dataset', frame['dataset'].iloc[0])}, {p.get('model', frame['model'].iloc[0])}, "
             f"+{p.get('budget', '?')} per cycle, {frame['seed'].nunique()} seed(s)")
    figs["learning_curve"] = plots.learning_curve(
        frame, metric="miou", title=title, reference=top,
        reference_label=f"full-data ceiling ({n_full} labels)" if n_full else "full-data ceiling")
    ex = ceiling.examples(run_dir)
    if ex is not None:
        names = None
        if p.get("dataset") == "mnist_canvas":
            names = ["background"] + [str(d) for d in range(10)]
        elif p.get("dataset") == "cityscapes":
            from ..data_segmentation import CITYSCAPES_CLASSES
            names = list(CITYSCAPES_CLASSES)
        figs["examples"] = plots.segmentation_examples(
            ex["image"], ex["target"], ex["pred"], class_names=names,
            title="test images, ground truth and the full-data model's predictions")
    return figs
