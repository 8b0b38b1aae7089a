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
* on a *sibling run*: the same parameters but the other ``batch_split``, when one is stored.

A claim *hinges* on the batch split when those verdicts are not all the same. Nothing here
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
from .verdicts import COMPARISON_KINDS, judge, judge_run, run_frame, sibling_runs, _params

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
        (prefix ``dropped_``, with ``dropped_sizes``; empty when the run has none), the verdict
        on the sibling run with the other split (prefix ``other_``, with ``other_run``; empty
        when none is stored) and ``hinges`` (the available verdicts differ).
    """
    from . import quantities as quantities_mod

    run_dir = Path(run_dir)
    params = dict(params if params is not None else _params(run_dir))
    split = params.get("batch_split", "last_partial")
    other = _SPLITS[1 - _SPLITS.index(split)]
    claims = [c for c in claims_for(notebook) if c.not_run is None and c.kind in COMPARISON_KINDS]
    values = dict(quantities_mod.compute(notebook, run_dir, params, claims))
    siblings = sibling_runs(run_dir, {"batch_split": other})
    other_records = ({r.claim: r for r in judge_run(notebook, siblings[0], write=False, alpha=alpha)}
                     if siblings else {})
    rows = []
    for claim in claims:
        frame = run_frame(run_dir, claim)
        short = short_batch_sizes(frame["n_labeled"].unique(), int(params.get("batch_size", 96)), split)
        row = {"claim": claim.id, "split": split,
               **_verdict_cells(judge(claim, frame, quantities=values, alpha=alpha), "")}
        verdicts = [row["verdict"]]
        if short:
            kept = frame[~frame["n_labeled"].isin(short)]
            row.update(dropped_sizes=short,
                       **_verdict_cells(judge(claim, kept, quantities=values, alpha=alpha), "dropped_"))
            verdicts.append(row["dropped_verdict"])
        if claim.id in other_records:
            rec = other_records[claim.id]
            row.update(other_run=siblings[0].name, **_verdict_cells(rec.to_dict(), "other_"))
            verdicts.append(rec.verdict)
        row["hinges"] = len(set(verdicts)) > 1
        rows.append(row)
    cols = ["claim", "split", "verdict", "n", "diff", "ci_low", "ci_high",
            "dropped_sizes", "dropped_verdict", "dropped_n", "dropped_diff", "dropped_ci_low", "dropped_ci_high",
            "other_run", "other_verdict", "other_n", "other_diff", "other_ci_low", "other_ci_high", "hinges"]
    table = pd.DataFrame(rows).reindex(columns=cols)
    if write:
        results.atomic_write_text(table.to_csv(index=False), run_dir / "batch_split_check.csv")
    return table
