"""Figures and tables of the NoiseStability ablation notebooks.

NoiseStability (Li et al., AAAI 2024) represents an unlabeled x by the noise deviation

* Eq 1: ``Δz(x)(k) = (f(x; θ + Δθ(k)) − f(x; θ)) / (ζ‖θ‖₂)`` with ``Δθ(k) = ζ‖θ‖₂ u(k)``,
* Eq 2: ``Δẑ(x) = sqrt(n/K) (Δz(x)(1), …, Δz(x)(K))``,

and selects with greedy k-center on Δẑ. Its Sec 5 varies ζ (Fig 3 left), K (Fig 3 middle), the
subset-selection algorithm (Fig 3 right), keeps only the magnitude or only the direction of Δẑ
(NS-M / NS-D, Fig 4 left) and selects one example per cycle against MC-dropout baselines
(Fig 4 right). One report builder per notebook is registered here (``alstudy figures`` rebuilds
the same figures from the stored CSVs), plus the tables the notebooks display and the ζ
round-off measurement. The verdicts come from the evidence engine
(:func:`alstudy.evidence.judge_run`), not from here.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import yaml

from .. import plots
from ..results import add_option_column, atomic_write_csv, read_metrics, summary_table
from . import learning_curves, register

__all__ = ["EXPERIMENTS", "option_table", "selected_indices", "pick_overlap", "zeta_roundoff",
           "zeta_table"]

EXPERIMENTS = ("ns_ablation_zeta", "ns_ablation_k", "ns_ablation_selection",
               "ns_ablation_variants", "ns_single_sample", "ns_paper_vs_official")

_NS_NAMES = ("noise_stability", "noise_stability_m", "noise_stability_d")


# ----------------------------------------------------------------------------- helpers


def _read(run_dir: Path) -> tuple[pd.DataFrame, dict]:
    run_dir = Path(run_dir)
    frame = read_metrics(run_dir / "metrics.csv") if (run_dir / "metrics.csv").exists() \
        else pd.DataFrame()
    path = run_dir / "params.yaml"
    p = yaml.safe_load(path.read_text()) if path.exists() else {}
    return frame, p


def _labels(params: dict) -> list[str]:
    """Strategy labels in the order of ``params['strategies']``."""
    s = params.get("strategies", [])
    return list(s) if isinstance(s, (list, dict)) else []


def option_table(frame: pd.DataFrame, params: dict, option: str) -> pd.DataFrame:
    """Mean ± std over seeds of AUBC and final accuracy per strategy, with an option's value.

    Args:
        frame: Tidy results of one run.
        params: The run's validated parameters (labels map to strategy options).
        option: Strategy option to show (e.g. ``K``), resolved with variant presets.

    Returns:
        One row per strategy label, in the order of ``params['strategies']``: ``strategy``,
        ``<option>``, ``seeds``, ``aubc``, ``final`` (formatted) and the numeric columns.
    """
    table = summary_table(frame)
    values = add_option_column(pd.DataFrame({"strategy": table["strategy"]}), params, option)
    table.insert(1, option, values[option].to_numpy())
    order = {label: i for i, label in enumerate(_labels(params))}
    table = table.sort_values("strategy", key=lambda s: s.map(order)).reset_index(drop=True)
    return table[["strategy", option, "seeds", "aubc", "final", "aubc_mean", "aubc_std",
                  "final_mean", "final_std"]]


def selected_indices(run_dir: str | Path) -> pd.DataFrame:
    """All selections of a run: ``strategy, seed, cycle, index`` (cycle −1 = initial set).

    Args:
        run_dir: A run folder written by :func:`alstudy.loop.run`.

    Returns:
        The concatenated ``units/*.selected.csv`` files (empty frame when there are none).
    """
    files = sorted(Path(run_dir, "units").glob("*.selected.csv"))
    if not files:
        return pd.DataFrame(columns=["strategy", "seed", "cycle", "index"])
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True)


def pick_overlap(selected: pd.DataFrame, reference: str, cycle: int = 0) -> pd.Series:
    """Fraction of each strategy's picks in one cycle that the reference strategy also picked.

    All strategies of a seed share the initial labels and the first model (see
    :mod:`alstudy.loop`), so at ``cycle = 0`` a difference in picks comes only from the
    acquisition itself (for NoiseStability the noise directions are shared as well).

    Args:
        selected: Output of :func:`selected_indices`.
        reference: Strategy label to compare against.
        cycle: Acquisition cycle.

    Returns:
        Mean over seeds of ``|picks ∩ reference picks| / |picks|``, indexed by strategy label.
    """
    sub = selected[selected["cycle"] == cycle]
    ref = {seed: set(g["index"]) for seed, g in sub[sub["strategy"] == reference].groupby("seed")}
    out = {}
    for label, grp in sub.groupby("strategy", sort=False):
        shares = [len(set(g["index"]) & ref[seed]) / len(g) for seed, g in grp.groupby("seed")
                  if seed in ref and len(g)]
        out[label] = float(np.mean(shares)) if shares else float("nan")
    return pd.Series(out, name=f"overlap_with_{reference}")


def _cycle_lines(ax: plt.Axes, frame: pd.DataFrame, label: str) -> None:
    """Dotted horizontal line per cycle at the mean accuracy of ``label``, coloured like the
    cycle's curve in ``ax`` (taken from the legend that :func:`alstudy.plots.ablation_curve`
    draws)."""
    legend = ax.get_legend()
    colours = {}
    if legend is not None:
        for handle, text in zip(legend.legend_handles, legend.get_texts()):
            colours[text.get_text()] = handle.get_color()
    sub = frame[(frame["strategy"] == label) & (frame["metric"] == "accuracy")]
    for cyc, grp in sub.groupby("cycle"):
        ax.axhline(grp["value"].mean(), ls=":", lw=1.2, color=colours.get(str(cyc), "0.4"))


def _aubc_figure(frame: pd.DataFrame, order: list[str], title: str) -> plt.Figure:
    """AUBC of every (strategy, seed) as dots, with the mean over seeds as a bar."""
    from ..results import summarize

    per_run = summarize(frame)
    order = [o for o in order if o in set(per_run["strategy"])]
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(order) + 1.4))
    means = per_run.groupby("strategy")["aubc"].mean().reindex(order)
    ax.barh(range(len(order)), means.to_numpy(), color="0.85")
    for i, label in enumerate(order):
        vals = per_run.loc[per_run["strategy"] == label, "aubc"].to_numpy()
        ax.plot(vals, np.full(len(vals), i), "o", color="C0", ms=4)
    ax.set_yticks(range(len(order)), order)
    ax.invert_yaxis()
    lo = float(per_run["aubc"].min())
    ax.set_xlim(max(0.0, lo - 0.05), min(1.0, float(per_run["aubc"].max()) + 0.02))
    ax.set_xlabel(f"AUBC of {plots.METRIC_LABELS.get(per_run['metric'].iloc[0], 'metric')}")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="x")
    return fig


def _title(frame: pd.DataFrame) -> str:
    return (f"{frame['dataset'].iloc[0]}, {frame['model'].iloc[0]}, "
            f"{frame['seed'].nunique()} seed(s)")


# ----------------------------------------------------------------------------- ζ


def _zetas(params: dict) -> list[tuple[str, float, str]]:
    """``(label, ζ, difference)`` of every noise_stability strategy of a run."""
    from ..params import strategy_specs
    from ..strategies import build

    out = []
    for label, (name, opts) in strategy_specs(params).items():
        if name in _NS_NAMES:
            o = build(name, **opts).opts
            out.append((label, float(o["zeta"]), o["difference"]))
    return out


def zeta_roundoff(params: dict, run_dir: str | Path | None = None, n: int = 300) -> pd.DataFrame:
    """Round-off of Eq 1 in float32 on a trained model: ‖Δẑ₃₂ − Δẑ₆₄‖ / ‖Δẑ₆₄‖ at each ζ.

    Trains the first seed's first-cycle model exactly as :func:`alstudy.loop.run` does (same
    initial labels, initialisation and data order), then embeds ``n`` unlabeled examples with
    :func:`alstudy.strategies.noise_stability.noise_stability_embedding` for every ζ of the
    run's ``noise_stability`` strategies, with ``difference`` = ``finite`` (float32),
    ``finite64`` and ``jvp`` (the ζ → 0 limit ``J_θ(x) u``), all from the same noise
    directions. Other options (K, noise_norm, perturb, output, ...) are those of the run's
    first ``noise_stability`` strategy.

    Args:
        params: Validated parameters of an ``ns_ablation_zeta`` run.
        run_dir: Where to write ``zeta_roundoff.csv`` (``None``: not written).
        n: Number of unlabeled examples embedded (the first ``n`` of the pool).

    Returns:
        One row per ζ: ``zeta``, ``rel_diff_32_64`` (float32 vs float64 Δẑ, Frobenius),
        ``rel_diff_64_jvp`` (float64 finite difference vs its ζ → 0 limit, the truncation
        error of Eq 1), ``rel_diff_32_jvp``, and ``kcenter_agree_32_64`` (share of the
        ``budget`` greedy k-center picks that the float32 and float64 Δẑ have in common).

    Raises:
        ValueError: A run without ``noise_stability`` strategies, or ``n < 1``.
    """
    from .. import data as data_mod
    from .. import models, pool as pool_mod, selection
    from ..loop import derive_seed, train_config
    from ..params import strategy_specs
    from ..strategies import build
    from ..strategies.noise_stability import noise_stability_embedding
    from ..train import fit, resolve_device

    if n < 1:
        raise ValueError(f"n = {n!r} is invalid; allowed: integer >= 1")
    specs = [(label, name, opts) for label, (name, opts) in strategy_specs(params).items()
             if name in _NS_NAMES]
    if not specs or not any(d != "jvp" for _, _, d in _zetas(params)):
        raise ValueError("zeta_roundoff needs at least one noise_stability strategy with a finite "
                         "difference in 'strategies'")
    zetas = sorted({z for _, z, d in _zetas(params) if d != "jvp"})
    o = build(specs[0][1], **specs[0][2]).opts
    if params.get("threads"):
        torch.set_num_threads(params["threads"])
    device = resolve_device(params["device"])
    data = data_mod.load(params["dataset"], root=params["data_root"], seed=params["data_seed"],
                         max_train=params["max_train"], max_test=params["max_test"])
    seed = params["seeds"][0]
    gen = lambda *parts: torch.Generator().manual_seed(derive_seed(*parts))  # noqa: E731
    init = pool_mod.initial_indices(data.y_train, params["initial_size"], params["initial_mode"],
                                    gen(seed, "init"), data.num_classes)
    torch.manual_seed(derive_seed(seed, 0, "init-model"))
    model = models.build(params["model"], data.input_shape, data.num_classes or 1,
                         **params["model_options"])
    torch.manual_seed(derive_seed(seed, 0, "train"))
    fit(model, data.x_train[init], data.y_train[init], train_config(params), task=data.task,
        device=device, generator=gen(seed, 0, "shuffle"))
    unlabeled = pool_mod.Pool(data.n_train, init).unlabeled
    x = data.x_train[unlabeled[:n]]  # [n, ...]
    common = dict(K=o["K"], noise_norm=o["noise_norm"], perturb=o["perturb"],
                  include_bias=o["include_bias"], output=o["output"], row_norm=o["row_norm"])
    budget = min(params["budget"], x.shape[0])

    def embed(zeta: float, difference: str) -> torch.Tensor:
        g = torch.Generator().manual_seed(derive_seed(seed, "zeta-roundoff"))  # same directions
        return noise_stability_embedding(model, x, zeta=zeta, difference=difference,
                                         generator=g, **common).double()  # [n, K*d]

    jvp = embed(zetas[0], "jvp")  # independent of ζ: the direction u is rescaled away
    rows = []
    for zeta in zetas:
        e32, e64 = embed(zeta, "finite"), embed(zeta, "finite64")
        rel = lambda a, b: float((a - b).norm() / b.norm().clamp_min(1e-300))  # noqa: E731
        p32 = set(selection.kcenter_greedy(e32, budget).tolist())
        p64 = set(selection.kcenter_greedy(e64, budget).tolist())
        rows.append({"zeta": zeta, "rel_diff_32_64": rel(e32, e64),
                     "rel_diff_64_jvp": rel(e64, jvp), "rel_diff_32_jvp": rel(e32, jvp),
                     "kcenter_agree_32_64": len(p32 & p64) / budget})
    out = pd.DataFrame(rows)
    if run_dir is not None:
        atomic_write_csv(out, Path(run_dir) / "zeta_roundoff.csv")
    return out


def _jvp_label(zetas: list[tuple[str, float, str]]) -> str | None:
    return next((label for label, _, d in zetas if d == "jvp"), None)


def zeta_table(frame: pd.DataFrame, params: dict, run_dir: str | Path | None = None
               ) -> pd.DataFrame:
    """AUBC and final accuracy per (ζ, difference), with first-cycle agreement with ``jvp``.

    Args:
        frame: Tidy results of an ``ns_ablation_zeta`` run.
        params: Its validated parameters.
        run_dir: The run folder (for the selections; ``None``: no overlap column).

    Returns:
        Columns ``strategy, zeta, difference, seeds, aubc, final`` (formatted), their numeric
        ``*_mean``/``*_std`` and ``overlap_jvp_cycle0`` (mean share of the first-cycle picks
        that the ``jvp`` strategy also picked).
    """
    info = {label: (z, d) for label, z, d in _zetas(params)}
    table = summary_table(frame)
    table = table[table["strategy"].isin(info)].copy()
    table.insert(1, "zeta", table["strategy"].map(lambda s: info[s][0]))
    table.insert(2, "difference", table["strategy"].map(lambda s: info[s][1]))
    jvp = _jvp_label(_zetas(params))
    if run_dir is not None and jvp is not None:
        ov = pick_overlap(selected_indices(run_dir), jvp, cycle=0)
        table["overlap_jvp_cycle0"] = table["strategy"].map(ov)
    table["order"] = table["difference"].map({"finite": 0, "finite64": 1, "jvp": 2})
    table = table.sort_values(["order", "zeta"]).drop(columns="order").reset_index(drop=True)
    cols = ["strategy", "zeta", "difference", "seeds", "aubc", "final"]
    cols += [c for c in ("overlap_jvp_cycle0",) if c in table]
    return table[cols + ["aubc_mean", "aubc_std", "final_mean", "final_std"]]


@register("ns_ablation_zeta")
def _zeta_report(run_dir: Path) -> dict[str, plt.Figure]:
    """Fig 3 (left) style: accuracy vs ζ per cycle, float32 and float64; round-off vs ζ."""
    frame, p = _read(run_dir)
    if frame.empty:
        return {}
    zetas = _zetas(p)
    info = {label: (z, d) for label, z, d in zetas}
    acc = frame[frame["metric"] == "accuracy"].copy()
    acc["zeta"] = acc["strategy"].map(lambda s: info.get(s, (math.nan, ""))[0])
    acc["difference"] = acc["strategy"].map(lambda s: info.get(s, (math.nan, ""))[1])
    diffs = [d for d in ("finite", "finite64") if d in set(acc["difference"])]
    figs = {}
    if diffs:
        fig, axes = plt.subplots(1, len(diffs), figsize=(6.0 * len(diffs), 4.2), sharey=True,
                                 squeeze=False)
        jvp = _jvp_label(zetas)
        for ax, d in zip(axes[0], diffs):
            plots.ablation_curve(acc[acc["difference"] == d], "zeta", ax=ax, log_x=True,
                                 title=f"difference = {d} ({'float32' if d == 'finite' else 'float64'})")
            if jvp is not None:
                _cycle_lines(ax, frame, jvp)
            ax.set_xlabel("ζ (dotted: jvp, the ζ → 0 limit)")
        fig.suptitle(_title(frame))
        fig.tight_layout()
        figs["ablation_zeta"] = fig
    path = Path(run_dir) / "zeta_roundoff.csv"
    if path.exists():
        ro = pd.read_csv(path)
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for col, lab in [("rel_diff_32_64", "float32 vs float64"),
                         ("rel_diff_64_jvp", "float64 vs jvp (truncation)"),
                         ("rel_diff_32_jvp", "float32 vs jvp")]:
            ax.plot(ro["zeta"], ro[col].clip(lower=1e-17), "o-", label=lab)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("ζ")
        ax.set_ylabel("relative difference of Δẑ (Frobenius)")
        ax.set_title("Eq 1 in float32: round-off vs truncation")
        ax.grid(alpha=0.3)
        ax.legend(frameon=False)
        figs["roundoff_zeta"] = fig
    return figs


# ----------------------------------------------------------------------------- K


@register("ns_ablation_k")
def _k_report(run_dir: Path) -> dict[str, plt.Figure]:
    """Fig 3 (middle) style: accuracy vs K per cycle; learning curves."""
    frame, p = _read(run_dir)
    if frame.empty:
        return {}
    acc = add_option_column(frame[frame["metric"] == "accuracy"], p, "K")
    fig = plots.ablation_curve(acc, "K", log_x=True, title=f"NoiseStability, K: {_title(frame)}")
    return {"ablation_k": fig, **learning_curves(run_dir)}


# ----------------------------------------------------------------------------- selectors


def _curves_and_aubc(run_dir: Path, title: str) -> dict[str, plt.Figure]:
    frame, p = _read(run_dir)
    if frame.empty:
        return {}
    order = _labels(p) or sorted(frame["strategy"].unique())
    return {**learning_curves(run_dir), "aubc": _aubc_figure(frame, order, f"{title}: {_title(frame)}")}


@register("ns_ablation_selection")
def _selection_report(run_dir: Path) -> dict[str, plt.Figure]:
    """Fig 3 (right) style learning curves of the three selectors, plus AUBC per seed."""
    return _curves_and_aubc(run_dir, "subset selection on Δẑ")


# ----------------------------------------------------------------------------- NS-M / NS-D


@register("ns_ablation_variants")
def _variants_report(run_dir: Path) -> dict[str, plt.Figure]:
    """Fig 4 (left) style learning curves of NS, NS-M and NS-D, plus AUBC per seed."""
    return _curves_and_aubc(run_dir, "NS vs NS-M vs NS-D")


# ----------------------------------------------------------------------------- single sample


@register("ns_single_sample")
def _single_report(run_dir: Path) -> dict[str, plt.Figure]:
    """Fig 4 (right) style learning curves with one label per cycle, plus AUBC per seed."""
    return _curves_and_aubc(run_dir, "one label per cycle")


# ----------------------------------------------------------------------------- paper vs official


@register("ns_paper_vs_official")
def _pvo_report(run_dir: Path) -> dict[str, plt.Figure]:
    """One learning curve per paper/official choice, plus AUBC per seed."""
    return _curves_and_aubc(run_dir, "paper vs official choices")
