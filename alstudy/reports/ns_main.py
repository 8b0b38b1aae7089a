"""NoiseStability main experiments: learning-curve figures and a per-cycle table.

Three experiments share this module:

* ``ns_classification`` – NoiseStability against Random, Entropy, BALD, QBC, CoreSet, BADGE,
  LL4AL and VAAL (the paper's Figure 1 protocol, MNIST-style).
* ``ns_regression`` – NoiseStability against Random and CoreSet on Ames Housing, mean absolute
  error (the paper's Figure 2, left).
* ``ns_text_pairs`` – sentence-pair classification by fine-tuning a BERT-style encoder
  (the paper's Figure 2, right, run on MRPC there).

The notebooks' verdicts come from the evidence engine (:func:`alstudy.evidence.judge_run` on
the claims the registry assigns to each notebook); this module only draws and tabulates.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from .. import plots
from ..results import METRIC_GOAL, read_metrics
from . import penalty_figure, register, run_params

__all__ = ["NS_LABEL", "ns_figures", "per_cycle_comparison"]

#: Strategy label of the method under test.
NS_LABEL = "noise_stability"


@register("ns_classification", "ns_regression", "ns_text_pairs")
def ns_figures(run_dir: Path) -> dict[str, plt.Figure]:
    """Learning curve of one run folder: mean and 95% band over seeds per strategy.

    Args:
        run_dir: A run folder holding ``metrics.csv`` and ``params.yaml``.

    Returns:
        ``{"learning_curve": Figure}`` (empty when the folder has no metrics yet).
    """
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        return {}
    frame = read_metrics(path)
    if frame.empty:
        return {}
    p = run_params(run_dir)
    seeds = frame["seed"].nunique()
    title = (f"{p.get('dataset', frame['dataset'].iloc[0])}, {p.get('model', frame['model'].iloc[0])}, "
             f"+{p.get('budget', '?')} per cycle, {seeds} seed(s)")
    figs = {"learning_curve": plots.learning_curve(frame, title=title)}
    if p.get("experiment", frame["experiment"].iloc[0]) == "ns_classification":
        figs.update(penalty_figure(frame, title))
    return figs


def _metric(frame: pd.DataFrame) -> str:
    present = set(frame["metric"])
    for name in METRIC_GOAL:
        if name in present:
            return name
    raise ValueError(f"no accuracy or mae rows in the results; metrics present: {sorted(present)}")


def per_cycle_comparison(frame: pd.DataFrame, strategy: str = NS_LABEL) -> pd.DataFrame:
    """Per cycle: the strategy's mean against the best other strategy's mean (descriptive).

    A table for reading the curves; it decides nothing (the verdicts pair by seed, see
    :mod:`alstudy.evidence.stats`).

    Args:
        frame: Tidy results of one run (one dataset).
        strategy: Label of the tested strategy.

    Returns:
        One row per cycle with ``cycle, n_labeled, mean, std, best_other, best_mean, best_std,
        gap`` (positive = the tested strategy is better, in the metric's direction) and
        ``best`` (the tested strategy has the best mean).

    Raises:
        ValueError: The strategy is missing or is the only one.
    """
    metric = _metric(frame)
    sign = 1.0 if METRIC_GOAL[metric] == "max" else -1.0
    sub = frame[frame["metric"] == metric]
    if strategy not in set(sub["strategy"]):
        raise ValueError(f"strategy {strategy!r} not in the results: {sorted(set(sub['strategy']))}")
    if sub["strategy"].nunique() < 2:
        raise ValueError("per-cycle comparison needs at least two strategies")
    stats = sub.groupby(["cycle", "strategy"])["value"].agg(["mean", "std"]).reset_index()
    n_lab = sub.groupby("cycle")["n_labeled"].first()
    rows = []
    for cycle, grp in stats.groupby("cycle"):
        own = grp[grp["strategy"] == strategy]
        others = grp[grp["strategy"] != strategy]
        if own.empty or others.empty:
            continue
        best = others.loc[(sign * others["mean"]).idxmax()]
        mean, std = float(own["mean"].iloc[0]), float(own["std"].iloc[0])
        gap = sign * (mean - float(best["mean"]))
        rows.append({"cycle": int(cycle), "n_labeled": int(n_lab.loc[cycle]), "mean": mean, "std": std,
                     "best_other": best["strategy"], "best_mean": float(best["mean"]),
                     "best_std": float(best["std"]), "gap": gap, "best": gap > 0})
    return pd.DataFrame(rows)
