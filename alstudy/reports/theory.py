"""Figures of the theory notebooks, rebuilt from the CSVs they store (no retraining)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from .. import plots, theory
from . import register


def _read(run_dir: Path, name: str) -> pd.DataFrame | None:
    path = run_dir / name
    return pd.read_csv(path) if path.exists() else None


def _cfg(run_dir: Path) -> dict:
    path = run_dir / "params.json"
    return json.loads(path.read_text()) if path.exists() else {}


@register("theory_noise_stability")
def noise_stability_figures(run_dir: Path) -> dict[str, plt.Figure]:
    """Eq 6 vs K, Eq 6 vs ζ, concentration (Eq 12/16/17) and the BADGE link (Eq 9)."""
    figs = {}
    if (eq6 := _read(run_dir, "eq6_vs_K.csv")) is not None:
        figs["eq6_vs_K"] = plots.plot_eq6_vs_K(theory.summarize_eq6_K(eq6))
    if (zeta := _read(run_dir, "eq6_vs_zeta.csv")) is not None:
        figs["eq6_vs_zeta"] = plots.plot_eq6_vs_zeta(theory.summarize_eq6_zeta(zeta))
    pairs = _read(run_dir, "concentration.csv")
    samples, corr = _read(run_dir, "badge_link.csv"), _read(run_dir, "badge_link_correlations.csv")
    if pairs is not None and samples is not None and corr is not None:
        figs["concentration_and_badge"] = plots.plot_concentration_and_badge(
            pairs, theory.BadgeLink(samples, corr))
    return figs


@register("theory_saal_bound")
def saal_bound_figures(run_dir: Path) -> dict[str, plt.Figure]:
    """Score vs bound terms (SAAL Fig 1a) and ψ(ρ), r(ρ, δ) (Fig 4a/b)."""
    figs, cfg = {}, _cfg(run_dir)
    if (terms := _read(run_dir, "bound_terms.csv")) is not None:
        rho = cfg.get("rho", terms["rho"].iloc[0])
        figs["bound_correlations"] = plots.plot_saal_correlations(
            terms, theory.term_correlations(terms, rho), rho)
    if (margins := _read(run_dir, "margins.csv")) is not None:
        figs["margins"] = plots.plot_margins(theory.summarize_margins(margins))
    return figs
