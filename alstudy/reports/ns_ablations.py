"""Figures, tables and verdicts of the NoiseStability ablation notebooks.

NoiseStability (Li et al., AAAI 2024) represents an unlabeled x by the noise deviation

* Eq 1: ``Δz(x)(k) = (f(x; θ + Δθ(k)) − f(x; θ)) / (ζ‖θ‖₂)`` with ``Δθ(k) = ζ‖θ‖₂ u(k)``,
* Eq 2: ``Δẑ(x) = sqrt(n/K) (Δz(x)(1), …, Δz(x)(K))``,

and selects with greedy k-center on Δẑ. Its Sec 5 varies ζ (Fig 3 left), K (Fig 3 middle), the
subset-selection algorithm (Fig 3 right), keeps only the magnitude or only the direction of Δẑ
(NS-M / NS-D, Fig 4 left) and selects one example per cycle against MC-dropout baselines
(Fig 4 right). One report builder per notebook is registered here (``alstudy figures`` rebuilds
the same figures from the stored CSVs), plus the tables and the computed verdicts the notebooks
display.

Verdict rule (all notebooks): two settings differ when the difference of their mean area under
the budget curve (AUBC, :func:`alstudy.results.aubc`) exceeds the *noise level*
``max(TOL, largest std over seeds of the two)``; otherwise they are "within noise". ``TOL`` is
half an accuracy point, so that a two- or three-seed standard deviation that happens to be
tiny does not turn a negligible difference into a finding.
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

__all__ = ["TOL", "EXPERIMENTS", "compare", "option_table", "selected_indices", "pick_overlap",
           "zeta_roundoff", "zeta_table", "verdict_zeta", "verdict_k", "verdict_selection",
           "verdict_variants", "verdict_single_sample", "verdict_paper_vs_official"]

#: Smallest AUBC difference (accuracy, as a fraction) ever called a difference.
TOL = 0.005

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


def compare(table: pd.DataFrame, a: str, b: str, column: str = "aubc") -> tuple[float, float, str]:
    """Compare two rows of a :func:`alstudy.results.summary_table` by the verdict rule.

    Args:
        table: Output of ``summary_table`` (``strategy``, ``<column>_mean``, ``<column>_std``).
        a: Strategy label of the first setting.
        b: Strategy label of the second setting.
        column: ``aubc``, ``final`` or ``best`` (larger is better).

    Returns:
        ``(difference a − b, noise level, word)`` with word ``"better than"``, ``"worse than"``
        or ``"within noise of"``; noise level = ``max(TOL, std_a, std_b)``.

    Raises:
        ValueError: A label that is not in the table.
    """
    rows = table.set_index("strategy")
    for name in (a, b):
        if name not in rows.index:
            raise ValueError(f"strategy {name!r} not in the table; have {list(rows.index)}")
    diff = float(rows.loc[a, f"{column}_mean"] - rows.loc[b, f"{column}_mean"])
    noise = max(TOL, float(np.nan_to_num(rows.loc[a, f"{column}_std"])),
                float(np.nan_to_num(rows.loc[b, f"{column}_std"])))
    word = "better than" if diff > noise else "worse than" if diff < -noise else "within noise of"
    return diff, noise, word


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


def _rule(frame: pd.DataFrame) -> str:
    """The verdict rule and the number of seeds, as one markdown bullet."""
    return (f"- {frame['seed'].nunique()} seed(s); a difference counts when the AUBC means differ by "
            f"more than max({TOL}, the larger std over seeds).")


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


def verdict_zeta(frame: pd.DataFrame, params: dict, run_dir: str | Path | None = None) -> str:
    """Verdict on ζ sensitivity and on why ζ = 1e-6 is weak (activation vs float32 round-off).

    Checks, by the module's verdict rule on AUBC: (1) large ζ (≥ 1) is worse than the mid range
    1e-4..1e-2 in float32; (2) the smallest ζ is worse than the mid range in float32; then
    (3) decides the explanation of (2): *round-off* when the smallest ζ in float64 is within
    noise of the ζ → 0 limit ``jvp`` and of the mid range while float32 is worse; the paper's
    *activation* conjecture when ``jvp`` (which has exactly the first-order, "only activated
    neurons" behaviour) is itself worse than the mid range. The round-off magnitudes from
    :func:`zeta_roundoff` and the first-cycle pick agreement are quoted when available.

    Args:
        frame: Tidy results of an ``ns_ablation_zeta`` run.
        params: Its validated parameters.
        run_dir: The run folder (selections and ``zeta_roundoff.csv``), optional.

    Returns:
        Markdown text.
    """
    table = zeta_table(frame, params, run_dir)
    t = table.set_index("strategy")
    lab = {(float(r.zeta), r.difference): s for s, r in t.iterrows()}
    jvp = _jvp_label(_zetas(params))
    f32 = sorted(z for z, d in lab if d == "finite")
    mid = [z for z in f32 if 1e-4 <= z <= 1e-2]
    large = [z for z in f32 if z >= 1]
    small = min(f32) if f32 else None
    lines = ["**ζ sensitivity** (paper, Fig 3 left: 1e-4..1e-2 good, large ζ much worse early, "
             "ζ = 1e-6 sub-optimal)."]
    if not mid:
        return "\n".join(lines + ["No ζ in 1e-4..1e-2 was run: nothing to compare with."])
    mid_best = max(mid, key=lambda z: t.loc[lab[(z, "finite")], "aubc_mean"])

    def mean_std(zs, d):
        rows = t.loc[[lab[(z, d)] for z in zs]]
        return float(rows["aubc_mean"].mean()), float(rows["aubc_std"].fillna(0).max())

    m_mean, m_std = mean_std(mid, "finite")
    lines.append(f"- Mid range ζ ∈ {{{', '.join(f'{z:g}' for z in mid)}}} (float32): mean AUBC {m_mean:.4f} (best ζ = {mid_best:g}).")
    if large:
        l_mean, l_std = mean_std(large, "finite")
        noise = max(TOL, m_std, l_std)
        d = l_mean - m_mean
        early = _early_gap(frame, [lab[(z, "finite")] for z in large],
                           [lab[(z, "finite")] for z in mid])
        word = "**reproduced**" if d < -noise else "**not reproduced**"
        lines.append(f"- Large ζ ∈ {{{', '.join(f'{z:g}' for z in large)}}}: mean AUBC {l_mean:.4f}, {d:+.4f} vs the mid range "
                     f"(noise level {noise:.4f}); first-cycle accuracy {early:+.4f}. "
                     f"Large-ζ degradation: {word}.")
    small_worse = False
    if small is not None and small < min(mid):
        s32 = lab[(small, "finite")]
        ref = lab[(mid_best, "finite")]
        diff, noise, word = compare(table, s32, ref)
        small_worse = word == "worse than"
        lines.append(f"- ζ = {small:g} in float32: AUBC {t.loc[s32, 'aubc']} is {word} ζ = "
                     f"{mid_best:g} ({diff:+.4f}, noise {noise:.4f}). Small-ζ degradation: "
                     f"{'**reproduced**' if small_worse else '**not reproduced**'}.")
        s64 = lab.get((small, "finite64"))
        if s64 is not None and jvp is not None:
            d64, n64, w64 = compare(table, s64, ref)
            dj, nj, wj = compare(table, jvp, ref)
            d6j, n6j, w6j = compare(table, s64, jvp)
            lines.append(f"- Same ζ = {small:g} in float64: AUBC {t.loc[s64, 'aubc']}, {w64} ζ = "
                         f"{mid_best:g} ({d64:+.4f}); jvp (ζ → 0, no round-off): AUBC "
                         f"{t.loc[jvp, 'aubc']}, {wj} ζ = {mid_best:g} ({dj:+.4f}); float64 is "
                         f"{w6j} jvp ({d6j:+.4f}).")
            if "overlap_jvp_cycle0" in t:
                lines.append(f"- First-cycle picks shared with jvp (same model and noise "
                             f"directions): float32 {t.loc[s32, 'overlap_jvp_cycle0']:.0%}, "
                             f"float64 {t.loc[s64, 'overlap_jvp_cycle0']:.0%} at ζ = {small:g}; "
                             f"float32 {t.loc[ref, 'overlap_jvp_cycle0']:.0%} at ζ = {mid_best:g}.")
            ro_path = Path(run_dir) / "zeta_roundoff.csv" if run_dir is not None else None
            if ro_path is not None and ro_path.exists():
                ro = pd.read_csv(ro_path).set_index("zeta")
                if small in ro.index:
                    r = ro.loc[small]
                    lines.append(f"- On a trained first-cycle model, the float32 Δẑ at ζ = "
                                 f"{small:g} differs from the float64 one by "
                                 f"{r['rel_diff_32_64']:.1%} (relative Frobenius norm; at ζ = "
                                 f"{mid_best:g}: {ro.loc[mid_best, 'rel_diff_32_64']:.2%}), while "
                                 f"float64 is within {r['rel_diff_64_jvp']:.1e} of the ζ → 0 limit.")
            if small_worse and w64 != "worse than" and wj != "worse than":
                expl = ("**float32 round-off** explains the weak small-ζ result: the same ζ in "
                        "float64 and the exact ζ → 0 limit are as good as the mid range, so the "
                        "\"only activated neurons\" conjecture is not needed (and the ζ → 0 limit "
                        "is exactly that regime).")
            elif wj == "worse than":
                expl = ("the exact ζ → 0 limit (jvp) is itself worse than the mid range: consistent "
                        "with the paper's conjecture that an infinitesimal perturbation (first "
                        "order, no ReLU switches) is less informative.")
            elif small_worse:
                expl = ("undecided: float32 is worse, but float64 and jvp do not both match the mid "
                        "range within noise.")
            else:
                expl = ("nothing to explain at this scale: float32 at the smallest ζ is not worse "
                        "than the mid range, although its Δẑ carries the round-off quoted above.")
            lines.append(f"- Explanation: {expl}")
    return "\n".join(lines[:1] + [_rule(frame)] + lines[1:])


def _early_gap(frame: pd.DataFrame, a: list[str], b: list[str], cycle: int = 1) -> float:
    """Mean accuracy of strategies ``a`` minus that of ``b`` at one cycle (first after a pick)."""
    acc = frame[(frame["metric"] == "accuracy") & (frame["cycle"] == cycle)]
    va = acc[acc["strategy"].isin(a)]["value"].mean()
    vb = acc[acc["strategy"].isin(b)]["value"].mean()
    return float(va - vb)


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


def verdict_k(frame: pd.DataFrame, params: dict, run_dir: str | Path | None = None) -> str:
    """Verdict on K insensitivity (Fig 3 middle) and on K = 10 being competitive.

    "Insensitive" when the AUBC spread (max − min over K) is within the noise level
    ``max(TOL, largest std)``; "K = 10 competitive" when K = 10 is not worse than the best K.

    Args:
        frame: Tidy results of an ``ns_ablation_k`` run.
        params: Its validated parameters.
        run_dir: Unused (uniform signature).

    Returns:
        Markdown text.
    """
    table = option_table(frame, params, "K")
    best = table.loc[table["aubc_mean"].idxmax()]
    worst = table.loc[table["aubc_mean"].idxmin()]
    spread = float(best["aubc_mean"] - worst["aubc_mean"])
    noise = max(TOL, float(table["aubc_std"].fillna(0).max()))
    rows = ", ".join(f"K={int(r.K)}: {r.aubc}" for r in table.itertuples())
    lines = ["**K sensitivity** (paper, Fig 3 middle: \"not that sensitive\", K = 10 \"very "
             "competitive\").", f"- AUBC per K: {rows}.",
             f"- Spread best − worst = {spread:.4f} (K={int(best.K)} vs K={int(worst.K)}), noise "
             f"level {noise:.4f}: " + ("**insensitive (reproduced)**" if spread <= noise else
                                       "**sensitive (not reproduced)**") + "."]
    ten = table[table["K"] == 10]
    if len(ten):
        diff, n10, word = compare(table, ten["strategy"].iloc[0], best["strategy"])
        ok = word != "worse than"
        lines.append(f"- K = 10 is {word} the best K = {int(best.K)} ({diff:+.4f}, noise "
                     f"{n10:.4f}): " + ("**competitive (reproduced)**" if ok else
                                        "**not competitive (not reproduced)**") + ".")
    return "\n".join(lines[:1] + [_rule(frame)] + lines[1:])


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


def verdict_selection(frame: pd.DataFrame, params: dict, run_dir: str | Path | None = None) -> str:
    """Verdict on selector parity (Fig 3 right): every pair of selectors within noise.

    Args:
        frame: Tidy results of an ``ns_ablation_selection`` run.
        params: Its validated parameters.
        run_dir: Unused (uniform signature).

    Returns:
        Markdown text.
    """
    table = summary_table(frame)
    labels = [s for s in _labels(params) if s in set(table["strategy"])]
    lines = ["**Subset selection** (paper, Fig 3 right: k-center, k-means++ and k-DPP \"yield "
             "quite similar results\")."]
    lines.append("- AUBC: " + ", ".join(
        f"{s}: {table.set_index('strategy').loc[s, 'aubc']}" for s in labels) + ".")
    differ = []
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            diff, noise, word = compare(table, a, b)
            lines.append(f"- {a} is {word} {b} ({diff:+.4f}, noise {noise:.4f}).")
            if word != "within noise of":
                differ.append((a, b))
    lines.append("- Parity of the selectors: " + (
        "**reproduced** (all pairs within noise)." if not differ else
        f"**not reproduced** ({len(differ)} pair(s) differ beyond noise)."))
    return "\n".join(lines[:1] + [_rule(frame)] + lines[1:])


# ----------------------------------------------------------------------------- NS-M / NS-D


@register("ns_ablation_variants")
def _variants_report(run_dir: Path) -> dict[str, plt.Figure]:
    """Fig 4 (left) style learning curves of NS, NS-M and NS-D, plus AUBC per seed."""
    return _curves_and_aubc(run_dir, "NS vs NS-M vs NS-D")


def _label_of(params: dict, name: str) -> str | None:
    from ..params import strategy_specs

    return next((label for label, (n, _) in strategy_specs(params).items() if n == name), None)


def verdict_variants(frame: pd.DataFrame, params: dict, run_dir: str | Path | None = None) -> str:
    """Verdict on "neither NS-M nor NS-D can compete with the full version" (Fig 4 left).

    Reproduced when the full method is better than both degenerate versions beyond noise.

    Args:
        frame: Tidy results of an ``ns_ablation_variants`` run.
        params: Its validated parameters.
        run_dir: Unused (uniform signature).

    Returns:
        Markdown text.

    Raises:
        ValueError: The run lacks a ``noise_stability`` strategy.
    """
    table = summary_table(frame)
    full = _label_of(params, "noise_stability")
    if full is None:
        raise ValueError("verdict_variants needs a 'noise_stability' strategy in the run")
    lines = ["**Magnitude vs direction** (paper, Fig 4 left: neither NS-M nor NS-D \"can compete "
             "with the full version\")."]
    wins = []
    for name, what in (("noise_stability_m", "NS-M (top ‖Δẑ‖)"),
                       ("noise_stability_d", "NS-D (unit Δẑ, k-center)")):
        label = _label_of(params, name)
        if label is None:
            continue
        diff, noise, word = compare(table, full, label)
        wins.append(word == "better than")
        rows = table.set_index("strategy")
        lines.append(f"- {full} ({rows.loc[full, 'aubc']}) is {word} {what} "
                     f"({rows.loc[label, 'aubc']}); AUBC difference {diff:+.4f}, noise {noise:.4f}; "
                     f"final accuracy {rows.loc[full, 'final']} vs {rows.loc[label, 'final']}.")
    word = ("**reproduced**" if wins and all(wins) else
            "**partly reproduced**" if any(wins) else "**not reproduced**")
    lines.append(f"- Full NoiseStability better than both degenerate versions: {word}.")
    return "\n".join(lines[:1] + [_rule(frame)] + lines[1:])


# ----------------------------------------------------------------------------- single sample


@register("ns_single_sample")
def _single_report(run_dir: Path) -> dict[str, plt.Figure]:
    """Fig 4 (right) style learning curves with one label per cycle, plus AUBC per seed."""
    return _curves_and_aubc(run_dir, "one label per cycle")


def verdict_single_sample(frame: pd.DataFrame, params: dict,
                          run_dir: str | Path | None = None) -> str:
    """Verdict on "NS-M is superior to the Bayesian baselines" with one label per cycle.

    Reproduced when NS-M is better than every MC-dropout strategy (BALD, max entropy, variation
    ratio) beyond noise; partly when better than some and not worse than the rest.

    Args:
        frame: Tidy results of an ``ns_single_sample`` run.
        params: Its validated parameters.
        run_dir: Unused (uniform signature).

    Returns:
        Markdown text.

    Raises:
        ValueError: The run lacks a ``noise_stability_m`` strategy.
    """
    table = summary_table(frame)
    ns = _label_of(params, "noise_stability_m")
    if ns is None:
        raise ValueError("verdict_single_sample needs a 'noise_stability_m' strategy in the run")
    rows = table.set_index("strategy")
    lines = ["**Single-sample selection** (paper, Fig 4 right: noise stability \"is superior to "
             "the baselines\" with 50 samplings each)."]
    words = []
    for name in ("mc_entropy", "bald", "variation_ratio", "random"):
        label = _label_of(params, name)
        if label is None:
            continue
        diff, noise, word = compare(table, ns, label)
        if name != "random":
            words.append(word)
        lines.append(f"- {ns} ({rows.loc[ns, 'aubc']}) is {word} {label} ({rows.loc[label, 'aubc']}; "
                     f"{diff:+.4f}, noise {noise:.4f}).")
    if words and all(w == "better than" for w in words):
        v = "**reproduced**"
    elif any(w == "better than" for w in words) and "worse than" not in words:
        v = "**partly reproduced**"
    elif words and all(w == "within noise of" for w in words):
        v = "**not reproduced** (within noise of every Bayesian baseline at this scale)"
    else:
        v = "**not reproduced**"
    lines.append(f"- NS-M better than the MC-dropout baselines: {v}.")
    return "\n".join(lines[:1] + [_rule(frame)] + lines[1:])


# ----------------------------------------------------------------------------- paper vs official


@register("ns_paper_vs_official")
def _pvo_report(run_dir: Path) -> dict[str, plt.Figure]:
    """One learning curve per paper/official choice, plus AUBC per seed."""
    return _curves_and_aubc(run_dir, "paper vs official choices")


def verdict_paper_vs_official(frame: pd.DataFrame, params: dict,
                              run_dir: str | Path | None = None) -> str:
    """Which of the authors' code choices change the result, each against the paper baseline.

    The baseline is the strategy label ``paper`` (or the first strategy); every other label is
    compared with it by the verdict rule on AUBC.

    Args:
        frame: Tidy results of an ``ns_paper_vs_official`` run.
        params: Its validated parameters.
        run_dir: Unused (uniform signature).

    Returns:
        Markdown text.
    """
    table = summary_table(frame)
    labels = [s for s in _labels(params) if s in set(table["strategy"])]
    base = "paper" if "paper" in labels else labels[0]
    rows = table.set_index("strategy")
    lines = [f"**Paper vs official code** (baseline: `{base}`, AUBC {rows.loc[base, 'aubc']})."]
    changed = []
    for label in labels:
        if label == base:
            continue
        diff, noise, word = compare(table, label, base)
        if word != "within noise of":
            changed.append(f"{label} ({word.split()[0]})")
        lines.append(f"- {label}: AUBC {rows.loc[label, 'aubc']}, {word} {base} ({diff:+.4f}, "
                     f"noise {noise:.4f}).")
    lines.append("- Choices that change the result beyond noise: "
                 + (", ".join(changed) if changed else "none; the paper's description and the "
                    "authors' code give the same curve within noise at this scale") + ".")
    return "\n".join(lines[:1] + [_rule(frame)] + lines[1:])
