"""Figures from tidy results, written by name through one entry point, :func:`savefig`."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
import seaborn as sns

__all__ = ["savefig", "learning_curve", "ablation_curve", "penalty_heatmap", "segmentation_examples",
           "detection_examples", "METRIC_LABELS",
           "plot_eq6_vs_K", "plot_eq6_vs_zeta", "plot_concentration_and_badge", "plot_log_n_dependence",
           "plot_saal_correlations", "plot_margins"]

METRIC_LABELS = {"accuracy": "test accuracy", "mae": "test MAE", "select_seconds": "selection time [s]",
                 "train_seconds": "training time [s]", "miou": "test mIoU",
                 "pixel_accuracy": "test pixel accuracy", "map50": "test mAP@0.5 (VOC07 11-point)",
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
    metric = metric or next(m for m in ("accuracy", "mae", "miou", "map50") if m in set(frame["metric"]))
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
    n_seeds = sub["seed"].nunique() if "seed" in sub else 1
    ax.text(0.99, 0.01, f"line: mean over {n_seeds} seed(s); band: 95% bootstrap CI of the mean",
            transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="0.35")
    if reference is not None:
        ax.axhline(reference, color="0.3", linestyle="--", linewidth=1.2,
                   label=f"{reference_label} ({reference:.3g})")
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


# ---------------------------------------------------------------------------- theory checks


def plot_eq6_vs_K(summary: pd.DataFrame, title: str | None = None):
    """Relative error of Eq 6 against K on log axes, with the predicted RMS and a 1/sqrt(K) line.

    Args:
        summary: Output of :func:`alstudy.theory.summarize_eq6_K`.
        title: Axes title.

    Returns:
        The matplotlib figure.
    """
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    K = summary["K"].to_numpy(float)
    ax.loglog(K, summary["rms"], "o-", label="RMS of ‖Δẑ‖²/‖J‖²_F − 1 (measured)")
    ax.loglog(K, summary["mean_abs"], "s--", alpha=0.7, label="mean |error| (measured)")
    ax.loglog(K, summary["predicted_rms"], "k:", label="predicted RMS (sphere, first order)")
    ref = summary["rms"].iloc[0] * np.sqrt(K[0] / K)
    ax.loglog(K, ref, color="grey", alpha=0.5, lw=3, label=r"$\propto 1/\sqrt{K}$")
    ax.set_xlabel("noise draws K")
    ax.set_ylabel("relative error of Eq 6")
    ax.grid(alpha=0.3, which="both")
    ax.legend(frameon=False, fontsize=8)
    if title:
        ax.set_title(title)
    return fig


def plot_eq6_vs_zeta(summary: pd.DataFrame, title: str | None = None):
    """Linearisation error and Eq 6 error against ζ for each ``difference`` (log axes).

    Args:
        summary: Output of :func:`alstudy.theory.summarize_eq6_zeta`.
        title: Figure title.

    Returns:
        The matplotlib figure.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.2))
    for diff, grp in summary.groupby("difference", sort=False):
        grp = grp.sort_values("zeta")
        axes[0].loglog(grp["zeta"], grp["lin_median"].clip(lower=1e-17), "o-", label=diff)
        axes[1].loglog(grp["zeta"], grp["eq6_rms"], "o-", label=diff)
    mc = summary["mc_rms"].iloc[0]
    axes[1].axhline(mc, color="k", ls=":", label=f"Monte-Carlo level at K ({mc:.2g})")
    axes[0].axvline(1e-3, color="grey", ls="--", alpha=0.5, label="paper ζ = 1e-3")
    axes[0].set_ylabel("median ‖Δẑ − Δẑ_lin‖ / ‖Δẑ_lin‖")
    axes[1].set_ylabel("RMS of ‖Δẑ‖²/‖J‖²_F − 1")
    for ax in axes:
        ax.set_xlabel("noise scale ζ")
        ax.grid(alpha=0.3, which="both")
        ax.legend(frameon=False, fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_concentration_and_badge(concentration: pd.DataFrame, link, title: str | None = None):
    """Left: fraction within ε vs K (Eq 12, 16, 17) with the JL bound; right: NS vs BADGE norms.

    Args:
        concentration: Output of :func:`alstudy.theory.projected_gradients`.
        link: Output of :func:`alstudy.theory.badge_link`.
        title: Figure title.

    Returns:
        The matplotlib figure.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.2))
    fr = concentration[concentration["eps"].notna()]
    styles = {"eq12_norm": "-", "eq16_distance": "--", "eq17_cosine": ":"}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for c, (eps, grp) in enumerate(fr.groupby("eps")):
        col = colors[c % len(colors)]
        for metric, sub in grp.groupby("metric"):
            m = sub.groupby("K")["value"].mean()
            axes[0].semilogx(m.index, m.values, styles.get(metric, "-"), color=col, marker="o", ms=3,
                             label=f"{metric}, ε={eps:g}")
        axes[0].axvline(grp[grp["metric"] == "eq16_distance"]["jl_K"].iloc[0], color=col, alpha=0.4, lw=3)
    axes[0].set_xlabel("noise draws K (thick lines: sufficient K of the JL bound, Eq 16)")
    axes[0].set_ylabel("fraction within ε")
    axes[0].grid(alpha=0.3, which="both")
    axes[0].legend(frameon=False, fontsize=7, ncol=1)
    s = link.samples
    sc = axes[1].scatter(s["badge_norm"], s["ns_norm"], c=s["max_prob"], s=12, cmap="viridis")
    fig.colorbar(sc, ax=axes[1], label="max softmax probability")
    row = link.correlations.set_index(["x", "y"]).loc[("ns_norm", "badge_norm")]
    axes[1].set_xlabel("BADGE ‖(p − e_ŷ) ⊗ z‖ (Eq 9)")
    axes[1].set_ylabel("NoiseStability ‖Δẑ(x)‖")
    axes[1].set_title(f"Spearman {row['spearman']:.2f}, Pearson {row['pearson']:.2f}")
    axes[1].grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_log_n_dependence(concentration: pd.DataFrame, power: pd.DataFrame, k_min: int = 64,
                          title: str | None = None):
    """K ε_max² against the number n of vectors (App. A.2.2 Remark), one panel per check.

    Args:
        concentration: Output of :func:`alstudy.theory.projected_gradients` at several N.
        power: Output of :func:`alstudy.theory.log_n_power` on it.
        k_min: Smallest K drawn (as in ``log_n_power``).
        title: Figure title.

    Returns:
        The matplotlib figure.
    """
    from .theory import expected_max_sq_normal  # lazy: theory imports torch
    from .theory.noise_stability import _WORST_VECTORS

    checks = {"eq12_norm": "Eq 12: the N norms", "eq16_distance": "Eq 16: the N(N−1)/2 distances"}
    fig, axes = plt.subplots(1, len(checks), figsize=(11.0, 4.0))
    for ax, (check, label) in zip(np.atleast_1d(axes), checks.items()):
        sub = concentration[(concentration["metric"] == f"{check}_worst") & (concentration["K"] >= k_min)]
        sub = sub.assign(n=sub["N"].astype(int).map(_WORST_VECTORS[check]), y=sub["K"] * sub["value"] ** 2)
        for K, grp in sub.groupby("K"):
            m = grp.groupby("n")["y"].mean()
            ax.loglog(m.index, m.values, marker="o", ms=4, label=f"K = {K:g}")
        n = np.array(sorted(sub["n"].unique()))
        start = sub[sub["n"] == n[0]]["y"].mean()
        log_law = np.array([expected_max_sq_normal(int(v)) for v in n])
        ax.loglog(n, start * log_law / log_law[0], "k--", label="log n law (largest of n Gaussian errors)")
        ax.loglog(n, start * np.sqrt(n / n[0]), "k:", label="K ∝ √n")
        q = power[power["metric"] == check]["q"]
        ax.set_title(f"{label}: mean q = {q.mean():+.2f} (0: log n, 1: √n)", fontsize=9)
        ax.set_xlabel("number n of vectors held within ε")
        ax.set_ylabel("K · ε_max²  (∝ K needed for a fixed ε)")
        ax.grid(alpha=0.3, which="both")
        for axis in (ax.xaxis, ax.yaxis):  # plain numbers on the log axes
            axis.set_major_formatter(mticker.FormatStrFormatter("%g"))
            axis.set_minor_formatter(mticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
        ax.legend(frameon=False, fontsize=7)
    if title:
        fig.suptitle(f"{title} (lines: mean over noise seeds)")
    fig.tight_layout()
    return fig


def plot_saal_correlations(terms: pd.DataFrame, correlations: pd.DataFrame, rho: float | None = None,
                           title: str | None = None):
    """SAAL Fig 1a: the score against each bound term (one panel per term), with the bound line.

    Args:
        terms: Output of :func:`alstudy.theory.saal_bound_terms`.
        correlations: Output of :func:`alstudy.theory.term_correlations` at the same ρ.
        rho: Which ρ (default: the first).
        title: Figure title.

    Returns:
        The matplotlib figure.
    """
    rho = terms["rho"].iloc[0] if rho is None else rho
    sub = terms[np.isclose(terms["rho"], rho)]
    corr = correlations.set_index("y")
    cols = [("loss", "loss ℓ(θ)"), ("grad_term", "ρ‖∇ℓ(θ)‖"), ("eig_term", "½ρ²λ₁"), ("bound", "sum (bound)")]
    fig, axes = plt.subplots(1, 4, figsize=(14.0, 3.6))
    for ax, (c, label) in zip(axes, cols):
        ax.scatter(sub[c], sub["score"], s=12)
        ax.set_xlabel(label)
        ax.set_title(f"Pearson {corr.loc[c, 'pearson']:.2f}, Spearman {corr.loc[c, 'spearman']:.2f}",
                     fontsize=9)
        ax.grid(alpha=0.3)
    lo, hi = sub[["bound", "score"]].min().min(), sub[["bound", "score"]].max().max()
    axes[3].plot([lo, hi], [lo, hi], "k:", label="score = bound")
    axes[3].legend(frameon=False, fontsize=8)
    axes[0].set_ylabel(f"SAAL score (ρ = {rho:g})")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_margins(summary: pd.DataFrame, title: str | None = None):
    """SAAL Fig 4a/4b: ψ(ρ) and r(ρ, δ) per ρ (bars; one group per round when present).

    Args:
        summary: Output of :func:`alstudy.theory.summarize_margins`.
        title: Figure title.

    Returns:
        The matplotlib figure.
    """
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 3.8))
    s = summary.copy()
    if "round" not in s.columns:
        s["round"] = 0
    rhos = sorted(s["rho"].unique())
    rounds = sorted(s["round"].unique())
    w = 0.8 / len(rounds)
    for k, rd in enumerate(rounds):
        sub = s[s["round"] == rd].set_index("rho").reindex(rhos)
        pos = np.arange(len(rhos)) + (k - (len(rounds) - 1) / 2) * w
        label = f"round {rd}" if len(rounds) > 1 else None
        axes[0].bar(pos, sub["psi"], width=w, label=label)
        axes[1].bar(pos, sub["r"], width=w, label=label)
    for ax, ylabel in zip(axes, ("ψ(ρ): fraction keeping ŷ", "r(ρ, δ): mean δ_x / max ℓ(x, ȳ)")):
        ax.set_xticks(np.arange(len(rhos)), [f"ρ = {r:g}" for r in rhos])
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, axis="y")
        if len(rounds) > 1:
            ax.legend(frameon=False, fontsize=8)
    axes[0].set_ylim(0, 1.05)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
