"""Reports of the SAAL experiments (Kim et al., ICML 2023): figures and tables.

Every builder reads only the CSVs and ``params.yaml`` of a run folder (so ``alstudy figures``
rebuilds the notebooks' figures without training). Tables that combine runs (Table 1's Adam
and SAM blocks, Fig 3's two optimizers) read every run folder of the experiment. Verdicts are
not made here: every notebook judges its registry claims with
:func:`alstudy.evidence.verdicts.judge_run`.

Two small functions train a model themselves (for measurements that need a model, not a
learning curve): :func:`scoring_speed` (batched SAAL scores vs the authors' per-candidate
deep-copy loop, :func:`per_instance_saal_scores`) and :func:`score_rank_correlations`
(Spearman correlation of the scores of SAAL variants on the same candidates). Both store their
results as CSV in the run folder. The timings of Fig 2 are measured by :mod:`alstudy.timing`.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
import torch.nn.functional as F
import yaml
from scipy import stats

from .. import plots
from ..results import add_option_column, atomic_write_csv, read_metrics, round_seconds, summarize
from . import penalty_figure, register

__all__ = ["SAAL_LABELS", "runs_with_params", "table1_from_frame", "table1", "rho_table",
           "perturbed_loss_table", "bound_table", "per_instance_saal_scores", "scoring_speed",
           "score_rank_correlations"]

#: Strategy labels counted as SAAL in Table 1 (with and without diversity).
SAAL_LABELS = ("saal", "saal_div")


# ----------------------------------------------------------------------------- helpers


def _run_frame(run_dir: Path) -> tuple[pd.DataFrame, dict]:
    """``(metrics, params)`` of one run folder (empty frame when there are no results)."""
    run_dir = Path(run_dir)
    path = run_dir / "metrics.csv"
    frame = read_metrics(path) if path.exists() else pd.DataFrame()
    params_path = run_dir / "params.yaml"
    params = yaml.safe_load(params_path.read_text()) if params_path.exists() else {}
    return frame, params or {}


def runs_with_params(run_dir: str | Path, keys: tuple[str, ...] = ("optimizer",)) -> pd.DataFrame:
    """Tidy results of ``run_dir`` and of every stored run that differs from it only in ``keys``
    (and in its seeds), with those parameters as columns: the units of one batch grid, such as
    the Adam and SAM runs of Table 1, never runs of another protocol.

    Args:
        run_dir: One run folder of the grid (``<results_dir>/<experiment>/<run id>``).
        keys: Run parameters the grid varies, added as columns (e.g. ``optimizer``).

    Returns:
        The concatenated tidy frame plus one column per key (empty when there are no runs).
    """
    from ..evidence.verdicts import matching_runs

    frames = []
    for run in matching_runs(run_dir, set(keys) | {"seeds"}):
        frame, params = _run_frame(run)
        if frame.empty:
            continue
        for key in keys:
            frame[key] = params.get(key)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _mean_std(values: pd.Series, precision: int = 4) -> tuple[float, float, str]:
    mean = float(values.mean())
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return mean, std, f"{mean:.{precision}f} ± {std:.{precision}f}"


def _lines(frame: pd.DataFrame, metrics: list[str], titles: list[str], hue: str = "strategy",
           suptitle: str | None = None, x: str = "n_labeled") -> plt.Figure:
    """One panel per metric: value vs ``x``, mean and 95% band over seeds per ``hue``."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.8), squeeze=False)
    for ax, metric, title in zip(axes[0], metrics, titles):
        sub = frame[frame["metric"] == metric]
        if sub.empty:
            ax.set_visible(False)
            continue
        plots.learning_curve(sub, metric, hue=hue, ax=ax, title=title, x=x)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- Table 1


def table1_from_frame(frame: pd.DataFrame, by: tuple[str, ...] = ("dataset", "optimizer", "strategy"),
                      metric: str = "accuracy", precision: int = 4) -> pd.DataFrame:
    """Table-1-shaped summary: final-round, best-over-rounds and AUBC accuracy per group.

    Per run (``by`` + seed): ``final`` = accuracy of the last round, ``best`` = the highest
    accuracy over rounds (the number the authors' README reports, averaged over trials),
    ``aubc`` = area under the budget curve normalised by the label range (trapezoid rule).
    Then mean ± std (ddof = 1) over seeds per group.

    Args:
        frame: Tidy results with the ``by`` columns (e.g. an ``optimizer`` column added by
            :func:`runs_with_params`).
        by: Grouping columns of the table.
        metric: Metric to summarise.
        precision: Decimals in the formatted columns.

    Returns:
        One row per group: the ``by`` columns, ``seeds``, numeric ``final_mean``, ``final_std``,
        ``best_mean``, ``best_std``, ``aubc_mean``, ``aubc_std``, formatted ``final``, ``best``,
        ``aubc`` and ``rank_best`` (1 = highest ``best_mean`` within its dataset and optimizer).

    Raises:
        ValueError: A ``by`` column is missing.
    """
    missing = [c for c in by if c not in frame.columns]
    if missing:
        raise ValueError(f"results lack the column(s) {missing} needed for the table; have {list(frame.columns)}")
    runs = []
    keys = list(by) + ["seed"]
    for key, grp in frame[frame["metric"] == metric].groupby(keys, sort=True, dropna=False):
        per = summarize(grp.drop(columns=[c for c in by if c not in ("strategy",)] + ["run_id"],
                                 errors="ignore"), metric)
        runs.append({**dict(zip(keys, key)), **per.iloc[0][["final", "best", "aubc"]].to_dict()})
    runs = pd.DataFrame(runs)
    rows = []
    for key, grp in runs.groupby(list(by), sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key), seeds=len(grp))
        for col in ("final", "best", "aubc"):
            row[f"{col}_mean"], row[f"{col}_std"], row[col] = _mean_std(grp[col], precision)
        rows.append(row)
    out = pd.DataFrame(rows)
    block = [c for c in by if c != "strategy"]
    if block:
        out["rank_best"] = out.groupby(block, dropna=False)["best_mean"].rank(ascending=False, method="min").astype(int)
    else:
        out["rank_best"] = out["best_mean"].rank(ascending=False, method="min").astype(int)
    return out


def table1(run_dir: str | Path) -> pd.DataFrame:
    """:func:`table1_from_frame` over ``run_dir`` and its runs with the other optimizer.

    Args:
        run_dir: One ``saal_table1`` run folder (:func:`runs_with_params` finds the others).

    Returns:
        The Table-1-shaped summary (empty when no run has results).
    """
    frame = runs_with_params(run_dir, ("optimizer",))
    if frame.empty:
        return pd.DataFrame()
    return table1_from_frame(frame)


@register("saal_table1")
def _report_table1(run_dir: Path) -> dict[str, plt.Figure]:
    frame, params = _run_frame(run_dir)
    if frame.empty:
        return {}
    title = (f"{frame['dataset'].iloc[0]}, {frame['model'].iloc[0]}, {params.get('optimizer', '?')}, "
             f"{frame['seed'].nunique()} seed(s)")
    return {"learning_curve": plots.learning_curve(frame, title=title), **penalty_figure(frame, title)}


# ----------------------------------------------------------------------------- rho (Fig 4)


_RHO_METRICS = ["psi", "margin_ratio", "accuracy"]


def _with_rho(frame: pd.DataFrame, params: dict) -> pd.DataFrame:
    if "rho" in frame.columns:
        return frame
    return add_option_column(frame, params, "rho")


def rho_table(frame: pd.DataFrame, params: dict) -> pd.DataFrame:
    """Per ρ: mean over rounds and seeds of ψ(ρ), r(ρ, δ), Eq 7 share, the largest δ among kept
    labels (Prop 3.2), plus final / best / AUBC test accuracy (SAAL Fig 4).

    Args:
        frame: Tidy results of a ``saal_rho`` run (cycle metric ``pseudo_label_margin``).
        params: The run's parameters (maps strategy labels to ρ).

    Returns:
        One row per ρ, sorted by ρ.
    """
    frame = _with_rho(frame, params)
    acc = summarize(frame.drop(columns=["rho"]), "accuracy").groupby("strategy")[["final", "best", "aubc"]].mean()
    rows = []
    for (label, rho), grp in frame.groupby(["strategy", "rho"]):
        m = grp.groupby("metric")["value"]
        get = lambda k, f="mean": float(getattr(m, f)().get(k, np.nan))
        rows.append({"strategy": label, "rho": rho, "psi": get("psi"), "r": get("margin_ratio"),
                     "delta_mean": get("margin_mean"), "eq7_holds": get("eq7_holds"),
                     "max_delta_when_kept": get("prop32_max_delta_kept", "max"),
                     "pseudo_accuracy": get("pseudo_accuracy"),
                     "final": acc.loc[label, "final"], "best": acc.loc[label, "best"],
                     "aubc": acc.loc[label, "aubc"]})
    return pd.DataFrame(rows).sort_values("rho").reset_index(drop=True)


@register("saal_rho")
def _report_rho(run_dir: Path) -> dict[str, plt.Figure]:
    frame, params = _run_frame(run_dir)
    if frame.empty:
        return {}
    return {"rho_over_rounds": _lines(frame, _RHO_METRICS,
                                      ["ψ(ρ): label kept (Fig 4a)", "r(ρ, δ) (Fig 4b)",
                                       "test accuracy (Fig 4c)"],
                                      suptitle=f"{frame['dataset'].iloc[0]}, {frame['model'].iloc[0]}")}


# ----------------------------------------------------------------------------- perturbed loss (Fig 3)


_PL_METRICS = ["perturbed_loss_unlabeled", "perturbed_loss_labeled", "perturbed_loss_total"]


def perturbed_loss_table(run_dir: str | Path) -> pd.DataFrame:
    """Per (optimizer, strategy): mean over rounds ≥ 1 and seeds of the maximally perturbed loss
    of X_U, X_L and X (SAAL Fig 3), and each strategy's rank (1 = lowest) within its optimizer.

    Round 0 (before any acquisition) is the same for every strategy and is left out.

    Args:
        run_dir: One ``saal_perturbed_loss`` run folder (:func:`runs_with_params` finds the run
            with the other optimizer).

    Returns:
        Columns ``optimizer, strategy, unlabeled, labeled, total, rank_unlabeled, rank_labeled,
        rank_total, seeds`` (empty when there are no runs).
    """
    frame = runs_with_params(run_dir, ("optimizer",))
    if frame.empty:
        return pd.DataFrame()
    sub = frame[frame["metric"].isin(_PL_METRICS) & (frame["cycle"] >= 1)]
    if sub.empty:
        return pd.DataFrame()
    out = sub.pivot_table(index=["optimizer", "strategy"], columns="metric", values="value", aggfunc="mean")
    out.columns = [c.removeprefix("perturbed_loss_") for c in out.columns]
    out = out.reset_index()
    for col in ("unlabeled", "labeled", "total"):
        out[f"rank_{col}"] = out.groupby("optimizer")[col].rank(method="min").astype(int)
    out["seeds"] = out.apply(lambda r: sub[(sub["optimizer"] == r["optimizer"])
                                           & (sub["strategy"] == r["strategy"])]["seed"].nunique(), axis=1)
    return out


@register("saal_perturbed_loss")
def _report_perturbed_loss(run_dir: Path) -> dict[str, plt.Figure]:
    frame, params = _run_frame(run_dir)
    if frame.empty:
        return {}
    return {"perturbed_loss": _lines(frame, _PL_METRICS, ["X_U (1,000 sampled)", "X_L", "X = X_L ∪ X_U (Eq 5)"],
                                     suptitle=f"maximally perturbed loss, {params.get('optimizer', '?')} training")}


# ----------------------------------------------------------------------------- bound (Fig 1)


_BOUND_CORR = ["bound_corr_loss", "bound_corr_grad", "bound_corr_eig"]
_BOUND_MAG = ["bound_loss", "bound_grad", "bound_eig"]


def bound_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per round: mean over seeds of the score–term correlations, the term magnitudes and λ₁.

    Args:
        frame: Tidy results with the ``bound_*`` rows of the ``bound_terms`` cycle metric.

    Returns:
        One row per cycle, columns ``cycle, n_labeled`` and the ``bound_*`` metrics.
    """
    sub = frame[frame["metric"].str.startswith(("bound_", "fixed_"))]
    if sub.empty:
        return pd.DataFrame()
    out = sub.pivot_table(index=["cycle", "n_labeled"], columns="metric", values="value", aggfunc="mean")
    return out.reset_index()


@register("saal_bound_over_rounds")
def _report_bound(run_dir: Path) -> dict[str, plt.Figure]:
    frame, params = _run_frame(run_dir)
    if frame.empty or not frame["metric"].str.startswith("bound_").any():
        return {}
    sub = frame[frame["metric"].str.startswith(("bound_", "fixed_lambda1"))].copy()
    sub["term"] = sub["metric"].map({"bound_corr_loss": "ℓ", "bound_corr_grad": "ρ‖∇ℓ‖",
                                     "bound_corr_eig": "½ρ²λ₁", "bound_loss": "ℓ",
                                     "bound_grad": "ρ‖∇ℓ‖", "bound_eig": "½ρ²λ₁",
                                     "bound_lambda1": "λ₁, fresh sample each round",
                                     "fixed_lambda1": "λ₁, one fixed sample"})
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for ax, metrics, title in [(axes[0], _BOUND_CORR, "Pearson(score, term) (Fig 1a)"),
                               (axes[1], _BOUND_MAG, "term magnitude (Fig 1b)"),
                               (axes[2], ["bound_lambda1", "fixed_lambda1"], "λ₁ without ½ρ² (Fig 1c)")]:
        d = sub[sub["metric"].isin(metrics)]
        sns.lineplot(data=d, x="n_labeled", y="value", hue="term", marker="o", errorbar=("ci", 95),
                     seed=0, ax=ax)
        ax.set_title(title)
        ax.set_xlabel("labeled examples")
        ax.grid(alpha=0.3)
    fig.suptitle(f"line: mean over {frame['seed'].nunique()} seed(s); band: 95% bootstrap interval "
                 "over seeds", fontsize=10)
    fig.tight_layout()
    return {"bound_terms": fig}


# ----------------------------------------------------------------------------- timing (Fig 2)


def per_instance_saal_scores(model: torch.nn.Module, x: torch.Tensor, rho: float = 0.05) -> torch.Tensor:
    """SAAL scores the way the authors' code computes them: one deep copy of the model per candidate.

    For each candidate (batch size 1): copy the model, compute the cross-entropy with the pseudo
    label, back-propagate, move every parameter by ``ρ g/‖g‖`` (SAM, Eq 3) and evaluate the loss
    again. Slow by construction; used as the timing baseline and as an independent check.

    Args:
        model: Classifier returning logits (left unchanged).
        x: Candidates ``[N, ...]``.
        rho: Radius ρ.

    Returns:
        Scores ``[N]`` (CPU).
    """
    was = model.training
    model.eval()
    out = []
    for i in range(x.shape[0]):
        net = copy.deepcopy(model)
        xi = x[i:i + 1]
        logits = net(xi)  # [1, C]
        y = logits.argmax(1).detach()
        loss = F.cross_entropy(logits, y)
        params = [p for p in net.parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss, params)
        norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.add_(rho * g / (norm + 1e-12))
            out.append(float(F.cross_entropy(net(xi), y)))
    model.train(was)
    return torch.tensor(out)


def _initial_model(p: dict[str, Any]):
    """A model trained like the run's first round (same data, initial set, optimizer, epochs)."""
    from .. import data as data_mod, models, pool as pool_mod
    from ..train import TrainConfig, fit, resolve_device

    data = data_mod.load(p["dataset"], root=p["data_root"], seed=p["data_seed"],
                         max_train=p["max_train"], max_test=p["max_test"])
    g = torch.Generator().manual_seed(0)
    init = pool_mod.initial_indices(data.y_train, p["initial_size"], p["initial_mode"], g, data.num_classes)
    torch.manual_seed(0)
    model = models.build(p["model"], data.input_shape, data.num_classes or 1, **p["model_options"])
    cfg = TrainConfig(epochs=p["epochs"], batch_size=p["batch_size"], optimizer=p["optimizer"],
                      lr=float(p["lr"]), sam_rho=float(p["sam_rho"]), sam_base=p["sam_base"])
    fit(model, data.x_train[init], data.y_train[init], cfg, task=data.task, generator=g,
        device=resolve_device("cpu"))
    pool = pool_mod.Pool(data.n_train, init)
    return model.cpu().eval(), data, pool


def scoring_speed(p: dict[str, Any], run_dir: str | Path, n_batched: int | None = None,
                  n_loop: int = 100) -> pd.DataFrame:
    """Time batched SAAL scoring against the per-candidate deep-copy loop on the same model.

    Trains one model like the run's first round, draws ``n_batched`` candidates (default: the
    run's ``candidates``, at most the unlabeled pool), times :func:`alstudy.strategies.saal.saal_scores`
    on all of them and :func:`per_instance_saal_scores` on the first ``n_loop``, and checks that
    both give the same scores there. Writes ``scoring_speed.csv`` to ``run_dir``.

    Args:
        p: Validated run parameters.
        run_dir: Run folder.
        n_batched: Candidates for the batched scorer.
        n_loop: Candidates for the loop (its time is extrapolated per candidate).

    Returns:
        One row per method: ``method, candidates, seconds, seconds_per_candidate``, plus
        ``speedup_per_candidate`` and ``max_abs_diff`` (scores on the shared candidates).
    """
    from ..strategies.saal import saal_scores

    model, data, pool = _initial_model(p)
    unl = pool.unlabeled
    n = min(unl.numel(), n_batched or (p["candidates"] if p["candidates"] != "all" else unl.numel()))
    g = torch.Generator().manual_seed(1)
    cand = unl[torch.randperm(unl.numel(), generator=g)[:n]]
    x = data.x_train[cand]
    saal_scores(model, x[:8])  # warm-up
    t0 = time.perf_counter()
    batched = saal_scores(model, x)
    t_b = time.perf_counter() - t0
    m = min(n_loop, n)
    t0 = time.perf_counter()
    loop_scores = per_instance_saal_scores(model, x[:m])
    t_l = time.perf_counter() - t0
    diff = float((batched[:m].double() - loop_scores.double()).abs().max())
    out = pd.DataFrame([
        {"method": "batched (alstudy.persample)", "candidates": n, "seconds": t_b, "seconds_per_candidate": t_b / n},
        {"method": "deep copy per candidate (official pattern)", "candidates": m, "seconds": t_l,
         "seconds_per_candidate": t_l / m}])
    out["speedup_per_candidate"] = out["seconds_per_candidate"] / out["seconds_per_candidate"].iloc[0]
    out["max_abs_diff"] = diff
    atomic_write_csv(out, Path(run_dir) / "scoring_speed.csv")
    return out


@register("saal_timing")
def _report_timing(run_dir: Path) -> dict[str, plt.Figure]:
    path = Path(run_dir) / "timing.csv"
    if not path.exists():
        return {}
    per = round_seconds(pd.read_csv(path))
    if per.empty:
        return {}
    long = per.melt(id_vars=["strategy", "optimizer"], value_vars=["train_seconds", "select_seconds"],
                    var_name="phase", value_name="seconds")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for ax, (phase, title) in zip(axes, [("train_seconds", "training per round"),
                                         ("select_seconds", "selection per round")]):
        sns.barplot(data=long[long["phase"] == phase], x="strategy", y="seconds", hue="optimizer",
                    estimator="median", errorbar=("pi", 50), ax=ax)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_ylabel("seconds (log)")
        ax.grid(alpha=0.3, axis="y")
        ax.tick_params(axis="x", rotation=30)
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes:
        ax.get_legend().remove()
    fig.legend(handles, labels, title="optimizer", loc="center right")
    fig.suptitle(f"median over {per['repeat'].nunique()} interleaved repeats (warm-up discarded); "
                 "bars: interquartile range")
    fig.tight_layout(rect=(0, 0, 0.92, 1))
    return {"seconds_per_round": fig}


# ----------------------------------------------------------------------------- paper vs official


def score_rank_correlations(p: dict[str, Any], run_dir: str | Path, n: int | None = None) -> pd.DataFrame:
    """Spearman correlation of every SAAL variant's scores with the paper variant's, same model.

    Trains one model like the run's first round, scores the same candidates with each SAAL
    strategy label of ``p['strategies']`` and compares with the label ``paper`` (or the first
    SAAL label). Diversity only changes how candidates are picked, not the scores, so the
    selections are compared too: overlap of the ``budget`` picked by each variant with the
    paper's top-b. Writes ``score_correlations.csv`` to ``run_dir``.

    Args:
        p: Validated run parameters.
        run_dir: Run folder.
        n: Candidates (default: the run's ``candidates``, at most the unlabeled pool).

    Returns:
        One row per SAAL label: ``variant, spearman, overlap`` (fraction of the budget shared
        with the paper's top-b), ``candidates``.
    """
    from .. import strategies
    from ..params import strategy_specs

    model, data, pool = _initial_model(p)
    specs = {k: v for k, v in strategy_specs(p).items() if v[0] == "saal"}
    if not specs:
        raise ValueError("score_rank_correlations needs at least one SAAL strategy in 'strategies'")
    ref = "paper" if "paper" in specs else next(iter(specs))
    unl = pool.unlabeled
    m = min(unl.numel(), n or (p["candidates"] if p["candidates"] != "all" else unl.numel()))
    fixed = type(pool)(data.n_train, pool.labeled, candidates=m)
    scores, picks = {}, {}
    for label, (name, opts) in specs.items():
        strat = strategies.build(name, **{**opts, "candidates": m})
        g = torch.Generator().manual_seed(2)
        cands = strat.candidate_indices(fixed, g)  # same candidates for every label
        scores[label] = strat.score(model, data.x_train[cands]).double().numpy()
        picks[label] = set(strat.select(model, data, fixed, p["budget"], torch.Generator().manual_seed(2)).tolist())
    rows = []
    for label in specs:
        rho = stats.spearmanr(scores[ref], scores[label]).statistic
        rows.append({"variant": label, "reference": ref, "spearman": float(rho),
                     "overlap": len(picks[label] & picks[ref]) / p["budget"], "candidates": m})
    out = pd.DataFrame(rows)
    atomic_write_csv(out, Path(run_dir) / "score_correlations.csv")
    return out


@register("saal_paper_vs_official")
def _report_paper_vs_official(run_dir: Path) -> dict[str, plt.Figure]:
    frame, params = _run_frame(run_dir)
    if frame.empty:
        return {}
    out = {"learning_curve": plots.learning_curve(
        frame, title=f"SAAL variants, {frame['dataset'].iloc[0]}, {frame['seed'].nunique()} seed(s)")}
    corr = Path(run_dir) / "score_correlations.csv"
    if corr.exists():
        c = pd.read_csv(corr)
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        c.set_index("variant")[["spearman", "overlap"]].plot.bar(ax=ax, rot=30)
        ax.set_ylim(min(0.0, float(c[["spearman", "overlap"]].min().min())), 1.05)
        ax.set_title(f"agreement with `{c['reference'].iloc[0]}` (same model, same candidates)")
        ax.grid(alpha=0.3, axis="y")
        fig.tight_layout()
        out["score_agreement"] = fig
    return out
