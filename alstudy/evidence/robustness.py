"""Does a verdict hinge on the last mini-batch? The batch-split check of a run's verdicts.

With the paper's loaders (``batch_split: last_partial``) a labeled set of ``n`` examples trains on
``n // batch_size`` full mini-batches and one last batch of ``n % batch_size``: with batch 96 and
+20 labels per cycle, 100 labels end every epoch on a step over 4 examples (200 labels: 8), and
every strategy's accuracy dips at those checkpoints. ``batch_split: equal`` trains on nearly equal
batches instead (:func:`alstudy.train.batches`).

:func:`batch_split_check` judges every comparison claim of a notebook three ways:

* on the run as it is;
* without the *short-batch checkpoints* of the run (labeled sizes above one batch whose smallest
  mini-batch holds fewer than a quarter of ``batch_size``; none under ``equal``);
* on a *sibling run*: the same parameters but the other ``batch_split``, when one is stored;
  both runs are then judged on the seeds they share, so that n is the same on both sides.

A claim *hinges* on the batch split when the run's verdict changes without its short-batch
checkpoints, or when the two runs' verdicts on their shared seeds differ. Nothing here
changes a verdict: the claim's verdict is the one :func:`alstudy.evidence.judge_run` wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
import torch

from .. import results
from ..train import batches
from .claims import claims_for
from .verdicts import COMPARISON_KINDS, judge, run_frame, sibling_runs, _params

__all__ = ["short_batch_sizes", "batch_split_check"]

#: A last mini-batch below this share of ``batch_size`` is "short".
SHORT_SHARE = 0.25
_SPLITS = ("last_partial", "equal")


def short_batch_sizes(sizes: Sequence[int], batch_size: int, split: str = "last_partial",
                      share: float = SHORT_SHARE) -> list[int]:
    """Labeled-set sizes whose training epochs end on a short mini-batch.

    Args:
        sizes: Labeled-set sizes (checkpoints) of a run.
        batch_size: Training batch size.
        split: ``last_partial`` or ``equal`` (as :func:`alstudy.train.batches`).
        share: A batch smaller than ``share * batch_size`` is short.

    Returns:
        The sizes above one batch (a single batch is the whole set, not an artefact) whose
        smallest mini-batch holds fewer than ``share * batch_size`` examples, sorted.
    """
    out = []
    for n in sorted({int(s) for s in sizes}):
        if n <= batch_size:
            continue
        smallest = min(b.numel() for b in batches(torch.arange(n), batch_size, split))
        if smallest < share * batch_size:
            out.append(n)
    return out


def _verdict_cells(fields: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {f"{prefix}verdict": fields.get("verdict"), f"{prefix}n": fields.get("n"),
            f"{prefix}diff": fields.get("diff"), f"{prefix}ci_low": fields.get("ci_low"),
            f"{prefix}ci_high": fields.get("ci_high")}


def batch_split_check(notebook: str, run_dir: str | Path, params: Mapping[str, Any] | None = None, *,
                      alpha: float = 0.05, write: bool = True) -> pd.DataFrame:
    """Judge a notebook's comparison claims with and without the batch-split artefact.

    Args:
        notebook: Notebook name (the claims' ``notebook``).
        run_dir: The run folder.
        params: The run's parameters (default: the folder's saved ones).
        alpha: Significance level.
        write: Also write the table to ``<run>/batch_split_check.csv``.

    Returns:
        One row per comparison claim: ``claim``, this run's ``split`` and verdict cells
        (``verdict, n, diff, ci_low, ci_high``), the same without the short-batch checkpoints
        (prefix ``dropped_``, with ``dropped_sizes``; empty when the run has none), this run and
        the sibling run with the other split judged on their shared seeds (``common_seeds``,
        ``common_verdict``, ``common_diff``; the sibling's cells with prefix ``other_``; empty
        when no sibling is stored) and ``hinges``.
    """
    from . import quantities as quantities_mod

    run_dir = Path(run_dir)
    params = dict(params if params is not None else _params(run_dir))
    split = params.get("batch_split", "last_partial")
    other = _SPLITS[1 - _SPLITS.index(split)]
    claims = [c for c in claims_for(notebook) if c.not_run is None and c.kind in COMPARISON_KINDS]
    values = dict(quantities_mod.compute(notebook, run_dir, params, claims))
    siblings = sibling_runs(run_dir, {"batch_split": other})
    sibling = siblings[0] if siblings else None
    sibling_values = (dict(quantities_mod.compute(notebook, sibling, _params(sibling), claims))
                      if sibling is not None else {})
    rows = []
    for claim in claims:
        frame = run_frame(run_dir, claim)
        short = short_batch_sizes(frame["n_labeled"].unique(), int(params.get("batch_size", 96)), split)
        row = {"claim": claim.id, "split": split,
               **_verdict_cells(judge(claim, frame, quantities=values, alpha=alpha), "")}
        same_run = [row["verdict"]]
        if short:
            kept = frame[~frame["n_labeled"].isin(short)]
            row.update(dropped_sizes=short,
                       **_verdict_cells(judge(claim, kept, quantities=values, alpha=alpha), "dropped_"))
            same_run.append(row["dropped_verdict"])
        split_pair = []
        if sibling is not None:
            other_frame = run_frame(sibling, claim)
            common = sorted(set(frame["seed"]) & set(other_frame["seed"]))
            mine = judge(claim, frame[frame["seed"].isin(common)], quantities=values, alpha=alpha)
            theirs = judge(claim, other_frame[other_frame["seed"].isin(common)], quantities=sibling_values,
                           alpha=alpha)
            row.update(other_run=sibling.name, common_seeds=len(common), common_verdict=mine["verdict"],
                       common_diff=mine.get("diff"), **_verdict_cells(theirs, "other_"))
            split_pair = [mine["verdict"], theirs["verdict"]]
        row["hinges"] = len(set(same_run)) > 1 or len(set(split_pair)) > 1
        rows.append(row)
    cols = ["claim", "split", "verdict", "n", "diff", "ci_low", "ci_high",
            "dropped_sizes", "dropped_verdict", "dropped_n", "dropped_diff", "dropped_ci_low", "dropped_ci_high",
            "other_run", "common_seeds", "common_verdict", "common_diff",
            "other_verdict", "other_n", "other_diff", "other_ci_low", "other_ci_high", "hinges"]
    table = pd.DataFrame(rows).reindex(columns=cols)
    if write:
        results.atomic_write_text(table.to_csv(index=False), run_dir / "batch_split_check.csv")
    return table
