"""Verdict records: a registry claim judged on the numbers of one run, written as ``verdict.json``.

A notebook ends with :func:`judge_run`: every claim the registry assigns to the notebook
(:func:`alstudy.evidence.claims.claims_for`) is judged on the run's tidy results by the rules of
:mod:`alstudy.evidence.stats` (comparisons, families, trends) or, for claims about a named number
(theorem checks, correlations, cost ratios), on the values that :mod:`alstudy.evidence.quantities`
computes from the run folder's stored files. The records go to ``<run>/verdict.json``;
``verdict.md`` is rendered from them and nothing else. No text in a record is typed by hand: the
quote and setting come from the registry, every number from the run.

A record *applies* to its claim only when the run's parameters are those of the claim's preset
(``params/<notebook>.<preset>.yaml``; batch claims: the batch file's preset with its grid); a
run of other parameters (the notebook's seconds-long defaults, a user's variation) is judged
all the same, for the reader, but never stands for the claim in the README.

Verdict values: ``reproduced``, ``contradicted``, ``inconclusive`` (the data do not decide) and
``not_computed`` (the notebook does not yet compute the number the claim is about, or the run
lacks an arm the claim compares).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import yaml

from .. import results
from ..params import SCHEMA, defaults
from . import stats
from .claims import Claim, Threshold, claims_for

__all__ = ["Verdict", "VERDICT_VALUES", "judge", "judge_run", "render_markdown", "write_verdicts", "paired_table",
           "preset_of", "run_frame", "repo_root", "check_threshold", "sibling_runs", "matching_runs"]

VERDICT_VALUES = ("reproduced", "contradicted", "inconclusive", "not_computed")
COMPARISON_KINDS = ("superiority", "non_inferiority", "equivalence")
QUANTITY_KINDS = ("correlation", "theorem_check", "cost_ratio")
#: Parameters that say where or how a run executes, not what it computes (seeds are matched
#: apart: a run of some of a preset's seeds is that preset).
_NOT_SEMANTIC = {k for k, f in SCHEMA.items() if not f.semantic} | {"claims"}


def repo_root() -> Path:
    """The folder holding ``params/`` and ``notebooks/`` (the repository of this package)."""
    return Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Verdict:
    """One claim judged on one run (JSON-serialisable through :meth:`to_dict`).

    ``diff``/``ci_low``/``ci_high``/``p``/``n``/``mde`` are those of the *headline* comparison:
    the weakest member of a family (smallest ``diff`` for superiority and non-inferiority,
    largest ``|diff|`` for equivalence), the trend's mean rank correlation, or the tested mean of
    a named quantity. ``detail`` holds every member record; ``runs`` every run folder whose
    results were joined (``run`` and its siblings for a claim across run parameters).
    ``supported_margin`` (equivalence claims) is the smallest margin at which these data would
    establish the claim (:func:`alstudy.evidence.stats.supported_margin`).
    """

    claim: str
    paper: str
    where: str
    quote: str
    kind: str
    extension: bool
    diagnostic: bool
    notebook: str | None
    preset: str | None
    applies: bool
    run: str
    setting: str
    run_setting: str
    verdict: str
    headline: str
    n: int | None = None
    diff: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p: float | None = None
    test: str = ""
    margin: float | None = None
    mde: float | None = None
    supported_margin: float | None = None
    alpha: float = 0.05
    reason: str = ""
    detail: tuple = field(default_factory=tuple)
    runs: tuple = field(default_factory=tuple)
    written: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (NaN as None)."""
        return _clean(asdict(self))


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


# ---------------------------------------------------------------------------- which run is which


def preset_of(notebook: str, params: Mapping[str, Any], grid_keys: Sequence[str] = ()) -> str | None:
    """The preset of ``notebook`` whose every semantic key equals the run's parameters.

    A run of a subset of the preset's seeds (a campaign filling in unit by unit) is that preset:
    its records carry the n it has.

    Args:
        notebook: Notebook name.
        params: The run's (notebook-level) parameters.
        grid_keys: Keys a batch file varies around its preset (ignored in the match).

    Returns:
        ``"cpu"`` for ``params/<notebook>.cpu.yaml`` and so on, or None when no preset matches.
    """
    folder = repo_root() / "params"
    for path in sorted(folder.glob(f"{notebook}.*.yaml")):
        preset = yaml.safe_load(path.read_text()) or {}
        keys = [k for k in preset if k not in _NOT_SEMANTIC and k not in grid_keys and k != "seeds"]
        seeds_ok = "seeds" not in preset or "seeds" in grid_keys or _seeds_within(params.get("seeds"), preset["seeds"])
        if seeds_ok and all(_same(preset[k], params.get(k)) for k in keys):
            return path.name[len(notebook) + 1 : -len(".yaml")]
    return None


def _seeds_within(run: Any, preset: Any) -> bool:
    """A run of some of a preset's seeds is that preset, partly done (its records give n)."""
    if not isinstance(run, (list, tuple)) or not isinstance(preset, (list, tuple)) or not run:
        return False
    return {int(s) for s in run} <= {int(s) for s in preset}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    if isinstance(a, str) and isinstance(b, (int, float)):  # YAML "1e-3"
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-12)
        except ValueError:
            return False
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _batch_grid(claim: Claim) -> tuple[dict[str, Any], list[str]]:
    """``(batch spec, grid keys)`` of a claim run through a batch file (empty when none)."""
    if not claim.batch:
        return {}, []
    path = repo_root() / "params" / "batch" / claim.batch
    spec = yaml.safe_load(path.read_text()) if path.exists() else {}
    return spec or {}, list((spec or {}).get("grid", {}))


def _grid_keys(claim: Claim) -> set[str]:
    """The run parameters a claim's arms differ by (empty: the claim is judged on one run)."""
    cmp = claim.compare
    _, grid_keys = _batch_grid(claim)
    keys = set(grid_keys)
    if cmp is not None:
        if cmp.column != "strategy":
            keys.add(cmp.column)
        if cmp.between is not None:
            keys.add(cmp.between.column)
        keys |= {k for k in cmp.filter if k != "strategy"}
    return keys


def frame_runs(run_dir: Path, claim: Claim) -> list[Path]:
    """The run folders whose results :func:`run_frame` joins for ``claim`` (``run_dir`` alone,
    or it and its siblings)."""
    keys = _grid_keys(claim)
    return matching_runs(run_dir, keys) if keys else [Path(run_dir)]


def run_frame(run_dir: Path, claim: Claim, folders: Sequence[Path] | None = None) -> pd.DataFrame:
    """The tidy results a claim is judged on.

    A claim of one run uses ``<run>/metrics.csv``. A claim whose arms differ by a run parameter
    (``column`` other than ``strategy``, a ``between`` interaction, a batch grid) uses every
    sibling run folder of the same experiment whose parameters equal this run's except for the
    grid keys, with those keys as columns. ``folders``: :func:`frame_runs` when already known.
    """
    run_dir = Path(run_dir)
    keys = _grid_keys(claim)
    if not keys:
        path = run_dir / "metrics.csv"
        return results.read_metrics(path) if path.exists() else pd.DataFrame(columns=results.COLUMNS)
    frames = []
    for sibling in (frame_runs(run_dir, claim) if folders is None else folders):
        prm = _params_or_defaults(sibling)
        frame = results.read_metrics(sibling / "metrics.csv")
        for key in keys:
            frame[key] = prm.get(key)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=results.COLUMNS)


def matching_runs(run_dir: str | Path, free: set[str]) -> list[Path]:
    """Run folders of ``run_dir``'s experiment (itself included) whose semantic parameters equal
    its own except for the keys in ``free``; a key a run does not store has its default."""
    run_dir = Path(run_dir)
    own = _params_or_defaults(run_dir)
    out = []
    for sibling in sorted(p.parent for p in Path(run_dir).parent.glob("*/metrics.csv")):
        prm = _params_or_defaults(sibling)
        if all(_same(prm.get(k), own.get(k)) for k in set(own) | set(prm)
               if k not in free and k not in _NOT_SEMANTIC):
            out.append(sibling)
    return out


def sibling_runs(run_dir: str | Path, differ: Mapping[str, Any]) -> list[Path]:
    """Stored runs of the same experiment with ``run_dir``'s parameters but ``differ``'s values.

    The seed lists may differ (a sibling may hold fewer seeds; each verdict carries its own n).

    Args:
        run_dir: A run folder.
        differ: ``{key: value}`` the sibling has instead (e.g. ``{"batch_split": "equal"}``).

    Returns:
        Matching run folders, sorted by name (empty when none is stored).
    """
    return [s for s in matching_runs(Path(run_dir), set(differ) | {"seeds"})
            if all(_same(_params_or_defaults(s).get(k), v) for k, v in differ.items())]


def _params_or_defaults(run_dir: Path) -> dict[str, Any]:
    """A run's saved parameters, with the default of every key it does not store."""
    return {**defaults(), **_params(run_dir)}


def _params(run_dir: Path) -> dict[str, Any]:
    for name in ("params.yaml", "params.json"):
        path = Path(run_dir) / name
        if path.exists():
            return (yaml.safe_load(path.read_text()) if name.endswith("yaml") else json.loads(path.read_text())) or {}
    return {}


def _run_setting(frame: pd.DataFrame, params: Mapping[str, Any]) -> str:
    """A short description of what this run was, from its parameters and results."""
    parts = [str(params.get("dataset", "")), str(params.get("model", ""))]
    if {"initial_size", "budget", "cycles"} <= set(params):
        parts.append(f"{params['initial_size']} + {params['cycles']}×{params['budget']} labels")
    if "epochs" in params:
        parts.append(f"{params['epochs']} epochs")
    if not frame.empty and "seed" in frame:
        parts.append(f"{frame['seed'].nunique()} seed(s)")
    elif "seeds" in params:
        parts.append(f"{len(params['seeds'])} seed(s)")
    elif "seed" in params:
        parts.append("1 seed")
    return ", ".join(p for p in parts if p)


# ---------------------------------------------------------------------------- judging


def judge(claim: Claim, frame: pd.DataFrame | None = None, *,
          quantities: Mapping[str, Any] | None = None, alpha: float = 0.05) -> dict[str, Any]:
    """Judge one claim on a tidy frame (comparisons, trends) or on named values (quantities).

    Args:
        claim: A registry claim.
        frame: Tidy results the claim is about (see :func:`run_frame`).
        quantities: ``{claim id: values}`` for claims about a named number: a 1-D array of
            independent values (seeds, rounds, repeats), or ``{member: array}`` for a family.
        alpha: Significance level.

    Returns:
        The verdict fields (``verdict, headline, n, diff, ci_low, ci_high, p, test, margin, mde,
        supported_margin, reason, detail``).
    """
    frame = pd.DataFrame(columns=results.COLUMNS) if frame is None else frame
    if claim.kind in COMPARISON_KINDS:
        out = _judge_comparison(claim, frame, alpha)
    elif claim.kind == "trend":
        out = _judge_trend(claim, frame, quantities or {}, alpha)
    elif claim.kind in QUANTITY_KINDS:
        out = _judge_quantity(claim, (quantities or {}).get(claim.id), alpha)
    else:
        out = _missing(f"claims of kind {claim.kind!r} are judged from other claims, not on a run")
    if claim.gate is not None and out["verdict"] != "not_computed":
        gate = check_threshold((quantities or {}).get(f"{claim.id}:gate"), claim.gate.threshold, alpha)
        if gate["verdict"] == "not_computed":
            out = {**out, "verdict": "inconclusive",
                   "reason": f"gate not computed ({claim.gate.quantity}); the comparison alone: "
                             f"{out['verdict']}. {out.get('reason', '')}".strip()}
        elif gate["verdict"] != "reproduced":
            out = {**out, "verdict": "inconclusive",
                   "reason": f"gate not passed ({claim.gate.quantity}: {_gate_summary(gate)}, "
                             f"verdict {gate['verdict']}); the comparison alone: {out['verdict']}"}
        else:
            out = {**out, "reason": f"gate passed ({_gate_summary(gate)}). {out.get('reason', '')}".strip()}
    return out


def _gate_summary(gate: Mapping[str, Any]) -> str:
    """A gate's headline with its interval and n, so that a mean on the passing side of the bound
    whose interval still reaches across it reads as what it is."""
    if gate.get("ci_low") is None or gate.get("ci_high") is None:
        return gate["headline"]
    return f"{gate['headline']}, interval [{gate['ci_low']:.4g}, {gate['ci_high']:.4g}], n = {gate['n']}"


def _missing(reason: str) -> dict[str, Any]:
    return {"verdict": "not_computed", "headline": "", "reason": reason, "detail": ()}


def _oriented(frame: pd.DataFrame, metric: str, better: str | None) -> pd.DataFrame:
    """A copy whose ``metric`` rows are negated when the claim's 'better' opposes METRIC_GOAL."""
    goal = results.METRIC_GOAL.get(metric, "max")
    want = {"higher": "max", "lower": "min"}.get(better or "", goal)
    if want == goal:
        return frame
    out = frame.copy()
    rows = out["metric"] == metric
    out.loc[rows, "value"] = -out.loc[rows, "value"].astype(float)
    return out


def _filtered(frame: pd.DataFrame, claim: Claim) -> pd.DataFrame:
    cmp = claim.compare
    keep = pd.Series(True, index=frame.index)
    for key, value in cmp.filter.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        if key not in frame:
            return frame.iloc[0:0]
        keep &= frame[key].isin(values)
    return frame[keep]


def _members(cmp) -> list:
    return list(cmp.b) if isinstance(cmp.b, (list, tuple)) else [cmp.b]


def _labels_missing(frame: pd.DataFrame, column: str, labels: Sequence) -> list:
    have = set(frame[column]) if column in frame else set()
    return [x for x in labels if x not in have]


def _headline(comps: Sequence[stats.Comparison], kind: str) -> stats.Comparison:
    usable = [c for c in comps if c.diff is not None] or list(comps)
    if kind == "equivalence":
        return max(usable, key=lambda c: abs(c.diff) if c.diff is not None else -1)
    return min(usable, key=lambda c: c.diff if c.diff is not None else math.inf)


def _overall(comps: Sequence[stats.Comparison], share: float = 1.0) -> str:
    verdicts = [c.verdict for c in comps]
    if not verdicts:
        return "inconclusive"
    k = len(verdicts)
    if sum(v == "reproduced" for v in verdicts) >= math.ceil(share * k - 1e-9):
        return "reproduced"
    if sum(v == "contradicted" for v in verdicts) > k - math.ceil(share * k - 1e-9):
        return "contradicted"
    return "inconclusive"


def _comparison_fields(head: stats.Comparison, comps: Sequence[stats.Comparison], verdict: str,
                       label: str, reason: str, *, alpha: float, share: float = 1.0) -> dict[str, Any]:
    """The verdict fields of a comparison claim; an equivalence claim that needs every member
    also gets the margin its data support (:func:`stats.supported_margin`, Holm as decided)."""
    supported = (stats.supported_margin(comps, alpha) if head.kind == "equivalence" and share >= 1
                 else None)
    return {"verdict": verdict, "headline": label, "n": head.n, "diff": head.diff,
            "ci_low": head.ci_low, "ci_high": head.ci_high, "p": head.p_adj if head.p_adj is not None else head.p,
            "test": head.test, "margin": head.margin, "mde": head.mde, "supported_margin": supported,
            "reason": reason, "detail": tuple(c.to_dict() for c in comps)}


def _interaction_frame(frame: pd.DataFrame, claim: Claim, a, b, metric: str, value_metric: str,
                       cycles) -> pd.DataFrame:
    """Per seed, (a − b) in group ``between.a`` and in group ``between.b`` as a two-level frame.

    The claim "a's advantage over b is larger in group A than in group B" becomes a paired
    comparison of level ``between.a`` against ``between.b`` on the per-seed advantages.
    """
    cmp = claim.compare
    by = cmp.between.column
    rows = []
    for group in (cmp.between.a, cmp.between.b):
        sub = frame[frame[by] == group]
        sub = sub[sub["metric"] == value_metric]
        if cycles is not None:
            sub = sub[sub["cycle"].isin(list(cycles))]
        sel = (sub[sub[cmp.column].isin([a, b])].rename(columns={cmp.column: "strategy"})
               if cmp.column != "strategy" else sub[sub["strategy"].isin([a, b])])
        if sel.empty:  # this group has no run (e.g. only one optimizer was run)
            continue
        summ = results.summarize(sel, value_metric)
        wide = summ.pivot_table(index="seed", columns="strategy", values=metric)
        if a not in wide or b not in wide:
            continue
        sign = -1.0 if results.METRIC_GOAL.get(value_metric, "max") == "min" else 1.0
        for seed, d in (sign * (wide[a] - wide[b])).items():
            rows.append({"strategy": group, "seed": seed, "cycle": 0, "n_labeled": 0,
                         "metric": "advantage", "value": float(d)})
    return pd.DataFrame(rows, columns=["strategy", "seed", "cycle", "n_labeled", "metric", "value"])


def _judge_comparison(claim: Claim, frame: pd.DataFrame, alpha: float) -> dict[str, Any]:
    cmp = claim.compare
    frame = _filtered(frame, claim)
    metric, value_metric = cmp.metric, cmp.summary_metric
    members = _members(cmp)
    column = cmp.column
    share = cmp.threshold.share if cmp.threshold is not None else 1.0
    if frame.empty or value_metric not in set(frame["metric"]):
        return _missing(f"the run has no {value_metric!r} values")
    frame = _oriented(frame, value_metric, cmp.better)
    margin = claim.margin
    if claim.margin_relative_to is not None and margin is not None:
        ref = frame[(frame[column] == claim.margin_relative_to) & (frame["metric"] == value_metric)]
        if ref.empty:
            return _missing(f"the margin's reference arm {claim.margin_relative_to!r} is not in the run")
        summ = results.summarize(ref.rename(columns={column: "strategy"}) if column != "strategy" else ref,
                                 value_metric)
        scale = abs(float(summ[metric if metric in stats.SUMMARY_METRICS else "final"].mean()))
        margin = claim.margin * scale
    if cmp.between is not None:
        if cmp.between.column not in frame:
            return _missing(f"the runs lack the parameter {cmp.between.column!r}")
        comps = []
        for b in members:
            inter = _interaction_frame(frame, claim, cmp.a, b, metric if metric in stats.SUMMARY_METRICS else "final",
                                       value_metric, None)
            if set(inter["strategy"]) != {cmp.between.a, cmp.between.b}:
                return _missing(f"the runs lack {cmp.a!r} or {b!r} in both {cmp.between.column} groups")
            c = stats.compare(inter, cmp.between.a, cmp.between.b, metric="final", kind=claim.kind,
                              margin=margin, alpha=alpha, summary_metric="advantage")
            comps.append(c)
        if len(comps) > 1:
            comps = stats.holm_family(comps, alpha)
        head = _headline(comps, claim.kind)
        label = (f"advantage of {cmp.a} over {members[comps.index(head)]} ({metric} of {value_metric}), "
                 f"{cmp.between.column}={cmp.between.a} minus {cmp.between.column}={cmp.between.b}")
        return _comparison_fields(head, comps, _overall(comps, share), label,
                                  f"interaction over {len(comps)} baseline(s), Holm-corrected",
                                  alpha=alpha, share=share)
    missing = _labels_missing(frame, column, [cmp.a, *members])
    if missing:
        return _missing(f"the run lacks the arm(s) {missing} ({column})")
    if metric == "cycle":
        cycles = cmp.cycle_indices(frame["cycle"].unique())
        if not cycles:
            return _missing("no cycle matches the claim's cycles")
        comps = []
        for b in members:
            comps += stats.per_cycle(frame, cmp.a, b, kind=claim.kind, margin=margin, cycles=cycles,
                                     alpha=alpha, column=column, summary_metric=value_metric,
                                     holm_correct=False)
        comps = stats.holm_family(comps, alpha) if len(comps) > 1 else comps
        head = _headline(comps, claim.kind)
        label = f"{cmp.a} vs {head.b}, {value_metric} at cycle {head.cycle} (weakest of {len(comps)})"
        reason = (f"{len(members)} baseline(s) × {len(cycles)} cycle(s), Holm-corrected; "
                  f"{sum(c.verdict == 'reproduced' for c in comps)} reproduced, "
                  f"{sum(c.verdict == 'contradicted' for c in comps)} contradicted")
        return _comparison_fields(head, comps, _overall(comps, share), label, reason,
                                  alpha=alpha, share=share)
    if len(members) == 1:
        c = stats.compare(frame, cmp.a, members[0], metric=metric, kind=claim.kind, margin=margin,
                          alpha=alpha, column=column, summary_metric=value_metric)
        return _comparison_fields(c, [c], c.verdict, f"{cmp.a} vs {members[0]}, {metric} of {value_metric}",
                                  c.reason, alpha=alpha)
    fam = stats.compare_many(frame, cmp.a, members, kind=claim.kind, metric=metric, margin=margin,
                             alpha=alpha, column=column, summary_metric=value_metric)
    comps = list(fam.comparisons)
    head = _headline(comps, claim.kind)
    out = _comparison_fields(head, comps, _overall(comps, share),
                             f"{cmp.a} vs {head.b} (weakest of {len(comps)}), {metric} of {value_metric}",
                             f"family of {len(comps)}, Holm-corrected" + (f": {fam.reason}" if fam.reason else ""),
                             alpha=alpha, share=share)
    groups = stats.distinct_levels(frame, column, [cmp.a, *members], summary_metric=value_metric)
    if len(groups) < len(members) + 1:
        out["reason"] += ("; identical trajectories counted once: "
                          + "; ".join("=".join(map(str, g)) for g in groups if len(g) > 1))
    if claim.kind == "equivalence" and len(groups) >= 3:
        grid = stats.grid(frame, [cmp.a, *members], column=column, metric=metric, margin=margin,
                          alpha=alpha, summary_metric=value_metric)
        if grid.omnibus:
            out["reason"] += (f"; omnibus {grid.omnibus['test']} p = {grid.omnibus['p']:.3g} "
                              "(reported, does not decide)")
    return out


def _judge_trend(claim: Claim, frame: pd.DataFrame, quantities: Mapping[str, Any], alpha: float) -> dict[str, Any]:
    cmp = claim.compare
    if cmp.quantity is not None:  # a trend of a number only the notebook's own files hold
        values = quantities.get(claim.id)
        if values is None:
            return _missing(f"the notebook does not compute: {cmp.quantity}")
        frame = pd.DataFrame(values)  # columns seed, x, value
        frame = frame.assign(metric="quantity", strategy="quantity", cycle=0, n_labeled=0)
        t = stats.trend(frame.rename(columns={"x": cmp.x}), cmp.x, "quantity", direction=cmp.direction,
                        alpha=alpha)
        return _trend_fields(t, f"{cmp.quantity} along {cmp.x}")
    frame = _filtered(frame, claim)
    value_metric = cmp.summary_metric
    if frame.empty or value_metric not in set(frame["metric"]):
        return _missing(f"the run has no {value_metric!r} values")
    if cmp.x == "cycle":
        sub = frame[frame[cmp.column] == cmp.a] if cmp.a is not None else frame
        if sub.empty:
            return _missing(f"the run lacks the arm {cmp.a!r}")
        cycles = cmp.cycle_indices(sub["cycle"].unique()) if cmp.cycles is not None else None
        t = stats.trend(sub, "cycle", value_metric, direction=cmp.direction, alpha=alpha, cycles=cycles)
        return _trend_fields(t, f"{value_metric} of {cmp.a or 'the run'} along the cycles")
    levels = dict(cmp.levels)
    missing = _labels_missing(frame, cmp.column, list(levels))
    if missing:
        return _missing(f"the run lacks the arm(s) {missing} ({cmp.column})")
    sub = frame[frame[cmp.column].isin(list(levels))].copy()
    sub[cmp.x] = sub[cmp.column].map(levels).astype(float)
    metric = cmp.metric or "aubc"
    if metric in stats.SUMMARY_METRICS:
        t = stats.trend(sub, cmp.x, metric, summary_metric=value_metric, direction=cmp.direction, alpha=alpha)
    else:
        t = stats.trend(sub, cmp.x, value_metric, direction=cmp.direction, alpha=alpha)
    return _trend_fields(t, f"{metric} of {value_metric} along {cmp.x}")


def _trend_fields(t: stats.Trend, label: str) -> dict[str, Any]:
    return {"verdict": t.verdict, "headline": label, "n": t.n, "diff": t.mean_rho, "ci_low": t.ci_low,
            "ci_high": t.ci_high, "p": t.p, "test": t.test, "margin": None, "mde": None,
            "reason": t.reason, "detail": (t.to_dict(),)}


def check_threshold(values: Any, threshold: Threshold, alpha: float = 0.05) -> dict[str, Any]:
    """Whether independent values of a named quantity meet a threshold (one-sample tests).

    ``gt``/``ge``/``lt``/``le`` against ``value``: the superiority rule of
    :mod:`alstudy.evidence.stats` on the differences from ``value`` (one-sided t-test at α/2 in
    each direction; reproduced iff the (1 − α) CI of the mean lies on the claimed side).
    ``between`` [lo, hi] and ``approx`` (value ± tol): the equivalence rule (TOST) around the
    interval's centre with its half-width as margin. ``statistic: median`` judges the median
    instead (:func:`alstudy.evidence.stats.median_test`, a sign test). A single value (n = 1)
    has no sampling interval: it is compared directly and the record says so.

    Args:
        values: 1-D array of independent values (or None when not computed).
        threshold: The registry threshold.
        alpha: Significance level.

    Returns:
        Verdict fields as :func:`judge` returns them.
    """
    if values is None:
        return _missing("the notebook does not compute this number")
    x = np.asarray(values, dtype=float).ravel()
    n_bad = int((~np.isfinite(x)).sum())
    x = x[np.isfinite(x)]
    if x.size == 0:
        return _missing("no finite value")
    op = threshold.op
    if op in ("between", "approx"):
        lo, hi = ((threshold.value[0], threshold.value[1]) if op == "between"
                  else (threshold.value - threshold.tol, threshold.value + threshold.tol))
        centre, margin, kind = 0.5 * (lo + hi), 0.5 * (hi - lo), "equivalence"
        shifted = x - centre
        text = f"needs to lie in [{lo:g}, {hi:g}]"
    else:
        centre, margin, kind = float(threshold.value), 0.0, "superiority"
        sign = 1.0 if op in ("gt", "ge") else -1.0
        shifted = sign * (x - centre)
        text = f"needs {dict(gt='>', ge='≥', lt='<', le='≤')[op]} {centre:g}"
    if x.size == 1:
        ok = (abs(shifted[0]) < margin) if kind == "equivalence" else (shifted[0] > 0 or (op in ("ge", "le") and shifted[0] == 0))
        return {"verdict": "reproduced" if ok else "contradicted", "headline": f"value {x[0]:.4g} ({text})",
                "n": 1, "diff": float(x[0]), "ci_low": None, "ci_high": None, "p": None,
                "test": "point check of a single value (no sampling interval)", "margin": None, "mde": None,
                "reason": "one number, compared directly" + (f"; {n_bad} non-finite dropped" if n_bad else ""),
                "detail": ()}
    if threshold.statistic == "median":
        m = stats.median_test(x, centre, "greater" if sign > 0 else "less", alpha)
        return {"verdict": stats._CODES[m["code"]], "headline": f"median {m['median']:.4g} ({text})",
                "n": m["n"], "diff": m["median"], "ci_low": m["ci_low"], "ci_high": m["ci_high"],
                "p": m["p"], "test": m["test"], "margin": None, "mde": m["mde"],
                "reason": ("MDE: the share of values beyond the bound, minus 1/2"
                           + (f"; {n_bad} non-finite dropped" if n_bad else "")),
                "detail": ({"p_contra": m["p_contra"]},)}
    tidy = pd.DataFrame({"strategy": "quantity", "seed": np.arange(x.size), "cycle": 0, "n_labeled": 0,
                         "metric": "q", "value": shifted})
    zero = tidy.assign(strategy="threshold", value=0.0)
    c = stats.compare(pd.concat([tidy, zero]), "quantity", "threshold", metric="final", kind=kind,
                      margin=margin if kind == "equivalence" else None, alpha=alpha, summary_metric="q")
    back = (lambda v: None if v is None else (v + centre if kind == "equivalence" else sign * v + centre))
    lo_ci, hi_ci = back(c.ci_low), back(c.ci_high)
    if lo_ci is not None and hi_ci is not None and lo_ci > hi_ci:
        lo_ci, hi_ci = hi_ci, lo_ci
    return {"verdict": c.verdict, "headline": f"mean {float(x.mean()):.4g} ({text})", "n": c.n,
            "diff": float(x.mean()), "ci_low": lo_ci, "ci_high": hi_ci, "p": c.p, "test": c.test,
            "margin": None, "mde": c.mde, "reason": c.reason + (f"; {n_bad} non-finite dropped" if n_bad else ""),
            "detail": (c.to_dict(),)}


def _judge_quantity(claim: Claim, values: Any, alpha: float) -> dict[str, Any]:
    cmp = claim.compare
    if values is None:
        return _missing(f"the notebook does not compute: {cmp.quantity}")
    if cmp.threshold is None:  # a diagnostic reported without a verdict
        x = np.asarray(values if not isinstance(values, Mapping) else list(values.values()), float).ravel()
        return {"verdict": "inconclusive", "headline": f"mean {np.nanmean(x):.4g} (reported, no threshold)",
                "n": int(np.isfinite(x).sum()), "diff": float(np.nanmean(x)), "reason": "a diagnostic without a threshold",
                "test": "none", "detail": ()}
    if isinstance(values, Mapping):  # a family: one set of values per member
        parts = {m: check_threshold(v, cmp.threshold, alpha) for m, v in values.items()}
        verdicts = [p["verdict"] for p in parts.values()]
        k, need = len(verdicts), math.ceil(cmp.threshold.share * len(verdicts) - 1e-9)
        overall = ("reproduced" if sum(v == "reproduced" for v in verdicts) >= need else
                   "contradicted" if sum(v == "contradicted" for v in verdicts) > k - need else "inconclusive")
        worst = min(parts, key=lambda m: {"contradicted": 0, "inconclusive": 1, "not_computed": 1,
                                          "reproduced": 2}[parts[m]["verdict"]])
        head = parts[worst]
        return {**head, "verdict": overall, "headline": f"{worst}: {head['headline']} (weakest of {k})",
                "reason": (f"{sum(v == 'reproduced' for v in verdicts)} of {k} members meet the threshold; "
                           f"the claim needs {need}"),
                "detail": tuple({"member": m, **{kk: vv for kk, vv in p.items() if kk != 'detail'}}
                                for m, p in parts.items())}
    return check_threshold(values, cmp.threshold, alpha)


# ---------------------------------------------------------------------------- a run's verdicts


def judge_run(notebook: str, run_dir: str | Path, params: Mapping[str, Any] | None = None, *,
              quantities: Mapping[str, Any] | None = None, alpha: float = 0.05,
              write: bool = True) -> list[Verdict]:
    """Judge every registry claim of ``notebook`` on one run folder; write ``verdict.json``/``.md``.

    Args:
        notebook: Notebook name (the claims' ``notebook``).
        run_dir: The run folder (its ``metrics.csv``, ``params.yaml``/``params.json``).
        params: The notebook-level parameters (default: the folder's saved parameters); they
            decide which preset the run is (:func:`preset_of`).
        quantities: Extra ``{claim id: values}`` (default: computed from the folder by
            :func:`alstudy.evidence.quantities.compute`).
        alpha: Significance level.
        write: Write ``verdict.json`` and ``verdict.md`` into ``run_dir``.

    Returns:
        One :class:`Verdict` per claim of the notebook that is runnable here.
    """
    from . import quantities as quantities_mod

    run_dir = Path(run_dir)
    params = dict(params if params is not None else _params(run_dir))
    claims = [c for c in claims_for(notebook) if c.not_run is None and c.kind != "summary"]
    values = dict(quantities_mod.compute(notebook, run_dir, params, claims))
    values.update(quantities or {})
    stamp = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    root = repo_root()

    def label(folder: Path) -> str:
        try:
            return str(folder.resolve().relative_to(root))
        except ValueError:
            return str(folder)

    run_label = label(run_dir)
    records = []
    for claim in claims:
        _, grid_keys = _batch_grid(claim)
        folders = frame_runs(run_dir, claim)
        frame = run_frame(run_dir, claim, folders)
        preset = preset_of(notebook, params, grid_keys)
        fields = judge(claim, frame, quantities=values, alpha=alpha)
        records.append(Verdict(
            claim=claim.id, paper=claim.paper, where=claim.where, quote=claim.quote, kind=claim.kind,
            extension=claim.extension, diagnostic=claim.diagnostic, notebook=notebook, preset=preset,
            applies=preset == claim.preset, run=run_label, setting=claim.setting,
            run_setting=_run_setting(frame, params), alpha=alpha, written=stamp,
            runs=tuple(label(f) for f in folders),
            **{k: fields.get(k, v) for k, v in _DEFAULTS.items()}))
    if write:
        write_verdicts(run_dir, records)
    return records


_DEFAULTS = {"verdict": "not_computed", "headline": "", "n": None, "diff": None, "ci_low": None,
             "ci_high": None, "p": None, "test": "", "margin": None, "mde": None,
             "supported_margin": None, "reason": "", "detail": ()}


def write_verdicts(run_dir: str | Path, records: Sequence[Verdict]) -> tuple[Path, Path]:
    """Write ``verdict.json`` (the records) and ``verdict.md`` (rendered from them) atomically."""
    run_dir = Path(run_dir)
    payload = {"records": [r.to_dict() for r in records]}
    results.atomic_write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", run_dir / "verdict.json")
    results.atomic_write_text(render_markdown(records), run_dir / "verdict.md")
    return run_dir / "verdict.json", run_dir / "verdict.md"


def _fmt(v: float | None, digits: int = 4) -> str:
    return "—" if v is None else f"{v:+.{digits}f}" if isinstance(v, float) else str(v)


def render_markdown(records: Sequence[Verdict | Mapping[str, Any]]) -> str:
    """Markdown of verdict records: quote, verdict, headline comparison with CI, test, n, MDE."""
    lines = []
    for r in records:
        r = r.to_dict() if isinstance(r, Verdict) else dict(r)
        tag = " (extension)" if r["extension"] else ""
        scope = "" if r["applies"] else " — *this run is not the claim's preset: shown, not counted*"
        lines.append(f"### `{r['claim']}`{tag} — **{r['verdict']}**{scope}")
        lines.append(f"> {r['quote']}  \n> — {r['where']}")
        lines.append("")
        if r["headline"]:
            ci = (f" [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]"
                  if r["ci_low"] is not None and r["ci_high"] is not None else "")
            p = f", p = {r['p']:.3g}" if r["p"] is not None else ""
            margin = f", margin {r['margin']:.4g}" if r["margin"] is not None else ""
            mde = f", MDE {r['mde']:.4g}" if r["mde"] is not None else ""
            supported = (f"; smallest margin these data establish: ±{r['supported_margin']:.4g}"
                         if r.get("supported_margin") is not None else "")
            lines.append(f"* {r['headline']}: {_fmt(r['diff'])}{ci}{p}; n = {r['n']}; {r['test']}{margin}"
                         f"{mde}{supported}")
        if r["reason"]:
            lines.append(f"* {r['reason']}")
        joined = [f for f in r.get("runs") or () if f != r["run"]]
        also = f"; joined with `{'`, `'.join(joined)}`" if joined else ""
        lines.append(f"* run: `{r['run']}` ({r['run_setting']}){also}; claim's setting: {r['setting']}")
        lines.append("")
    return "\n".join(lines) if lines else "No registered claim is tested by this notebook.\n"


def paired_table(frame: pd.DataFrame, reference: str | None = None, *, metric: str = "aubc",
                 kind: str = "superiority", margin: float | None = None, alpha: float = 0.05,
                 summary_metric: str | None = None) -> pd.DataFrame:
    """Every strategy of a run against one reference, paired by seed, Holm-corrected as a family.

    Args:
        frame: Tidy results of one run.
        reference: The strategy every other one is compared with (default: ``random`` when
            present, else the first strategy in the frame).
        metric: ``aubc``, ``final`` or ``best``.
        kind: The comparison's kind (see :mod:`alstudy.evidence.stats`).
        margin: Margin for equivalence / non-inferiority.
        alpha: Significance level.
        summary_metric: Per-cycle metric (default accuracy or mae).

    Returns:
        One row per strategy: ``strategy, reference, n, diff, ci_low, ci_high, p_adj, mde,
        verdict`` (``diff`` > 0: the strategy is better); empty with fewer than two strategies.
    """
    names = list(dict.fromkeys(frame["strategy"]))
    if len(names) < 2:
        return pd.DataFrame(columns=["strategy", "reference", "n", "diff", "ci_low", "ci_high", "p_adj",
                                     "mde", "verdict"])
    reference = reference or ("random" if "random" in names else names[0])
    others = [s for s in names if s != reference]
    comps = stats.holm_family([stats.compare(frame, s, reference, metric=metric, kind=kind, margin=margin,
                                             alpha=alpha, summary_metric=summary_metric) for s in others], alpha)
    return pd.DataFrame([{"strategy": c.a, "reference": c.b, "n": c.n, "diff": c.diff, "ci_low": c.ci_low,
                          "ci_high": c.ci_high, "p_adj": c.p_adj if c.p_adj is not None else c.p,
                          "mde": c.mde, "verdict": c.verdict} for c in comps])
