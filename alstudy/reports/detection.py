"""Reports of the detection experiment (SAAL §4.2, Fig 5): mAP learning curve with the ceiling,
example detections, the summary table and the fraction of the ceiling reached.

Everything is read from the run folder (``metrics.csv``, ``ceiling.csv``, ``examples.*``), so
``alstudy figures`` redraws the notebook's figures without training.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from .. import plots
from ..detection.ceiling import ceiling_fraction, read_ceiling, read_examples
from ..results import read_metrics, summary_table
from . import register

__all__ = ["DETECTION_METRIC", "detection_summary", "ceiling_statement"]

#: The metric of Fig 5: VOC mAP at IoU 0.5 (the VOC2007 11-point interpolation).
DETECTION_METRIC = "map50"


def detection_summary(frame: pd.DataFrame, ceiling: pd.DataFrame, metric: str = DETECTION_METRIC) -> pd.DataFrame:
    """Final, best-over-rounds and AUBC (mean ± std over seeds) plus the last-cycle fraction of
    the ceiling, one row per strategy.

    Args:
        frame: Tidy AL results.
        ceiling: Rows of :func:`alstudy.ceiling.train_ceiling` (may be empty).
        metric: Metric summarised.

    Returns:
        Columns ``strategy, seeds, final, best, aubc`` (and ``of_ceiling`` when a ceiling exists).
    """
    table = summary_table(frame, metric)[["strategy", "seeds", "final", "best", "aubc", "final_mean"]]
    if not ceiling.empty and (ceiling["metric"] == metric).any():
        frac = ceiling_fraction(frame, ceiling, metric).set_index("strategy")["fraction"]
        table["of_ceiling"] = table["strategy"].map(frac).map(lambda v: f"{100 * v:.0f}%")
    return table.drop(columns="final_mean")


def ceiling_statement(frame: pd.DataFrame, ceiling: pd.DataFrame, metric: str = DETECTION_METRIC) -> str:
    """One paragraph: the ceiling and the fraction of it every strategy reaches at the last cycle.

    Args:
        frame: Tidy AL results.
        ceiling: Rows of :func:`alstudy.ceiling.train_ceiling`.
        metric: Metric compared.

    Returns:
        Markdown text.
    """
    if ceiling.empty or not (ceiling["metric"] == metric).any():
        return "No ceiling stored for this run."
    frac = ceiling_fraction(frame, ceiling, metric)
    ref = float(frac["ceiling"].iloc[0])
    n_all = int(ceiling["n_labeled"].iloc[0])
    n_last = int(frac["n_labeled"].max())
    parts = ", ".join(f"{r.strategy} {100 * r.fraction:.0f}%" for r in frac.sort_values("fraction").itertuples())
    lo, hi = 100 * frac["fraction"].min(), 100 * frac["fraction"].max()
    return (f"**Ceiling** (the same model and recipe trained once on all {n_all} training images): "
            f"{metric} = {ref:.3f}. At the last cycle ({n_last} labels, {100 * n_last / n_all:.0f}% of the "
            f"pool) the AL models reach **{lo:.0f}–{hi:.0f}% of the ceiling** ({parts}; mean over "
            f"{int(frac['seeds'].max())} seed(s)).")


@register("saal_detection")
def _report_detection(run_dir: Path) -> dict[str, plt.Figure]:
    run_dir = Path(run_dir)
    path = run_dir / "metrics.csv"
    frame = read_metrics(path) if path.exists() else pd.DataFrame()
    figs: dict[str, plt.Figure] = {}
    if not frame.empty and (frame["metric"] == DETECTION_METRIC).any():
        ceil = read_ceiling(run_dir)
        ref = ceil.loc[ceil["metric"] == DETECTION_METRIC, "value"]
        seeds = frame["seed"].nunique()
        figs["learning_curve_map50"] = plots.learning_curve(
            frame, DETECTION_METRIC, reference=float(ref.mean()) if len(ref) else None,
            title=f"{frame['dataset'].iloc[0]}, {frame['model'].iloc[0]}, {seeds} seed(s)")
    ex = read_examples(run_dir)
    if ex is not None:
        images, truths, preds, names = ex
        figs["detections"] = plots.detection_examples(images, truths, preds, names, min_score=0.5)
    return figs
