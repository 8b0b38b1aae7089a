"""Seconds per AL round measured as a protocol: warm-up discarded, Adam and SAM interleaved.

SAAL Fig 2 compares the time of one acquisition round (training + selection) per strategy when
the task model is trained with Adam and with SAM. A single AL run times each round once, and
the first unit of a process also pays for imports, allocator growth and caches, which can
change a ratio of two short timings by half (in this project's single-run timing, Random's
SAM/Adam training ratio was 1.29 with its first, warm-up round included and 2.15 without).
:func:`round_timing` therefore times a protocol:

* one *timed unit* is :func:`alstudy.loop.run_unit` of one (strategy, seed) with the run's
  parameters and one optimizer: the labeled set, the initial weights, the batch order and the
  selection generator depend only on (seed, cycle), so the Adam and the SAM unit of a strategy
  train on the same labels from the same weights, and nothing but ``optimizer`` differs;
* ``warmup`` repeats of every unit come first; they are stored with ``warmup = True`` and left
  out of every summary (:func:`alstudy.results.round_seconds`);
* then ``repeats`` repeats; within a repeat each strategy's Adam and SAM units run back to back,
  Adam first in even repeats and SAM first in odd ones, so a slow drift of the machine's speed
  cancels in each pair;
* the timings go to ``timing.csv`` as tidy rows (``strategy, optimizer, seed, repeat, warmup,
  order, cycle, n_labeled, metric, value``; ``repeat`` counts from 0 after the warm-up (negative
  during it), ``order`` is the unit's position in its pair, ``metric`` = ``train_seconds`` /
  ``select_seconds``);
  the run folder also gets ``params.yaml`` and ``environment.json`` (versions, threads, CPU
  count and the load average before and after, since other processes slow a timing).

Ratios are formed per repeat (SAM over Adam of the same repeat), so each repeat gives one
independent value and the evidence engine can put an interval on their mean;
:func:`summary` gives medians and interquartile ranges for the notebook's table.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
import yaml
from tqdm import tqdm

from . import data as data_mod
from . import loop, params as params_mod, strategies
from .results import atomic_write_csv, atomic_write_text, round_seconds
from .train import resolve_device

__all__ = ["REPEATS", "WARMUP", "OPTIMIZERS", "TIMING_COLUMNS", "round_timing", "summary"]

#: Timed repeats after the warm-up (each gives one SAM/Adam ratio per strategy).
REPEATS = 10
#: Discarded warm-up repeats.
WARMUP = 1
#: The optimizers compared (SAAL Fig 2).
OPTIMIZERS = ("adam", "sam")
TIMING_COLUMNS = ["strategy", "optimizer", "seed", "repeat", "warmup", "order", "cycle", "n_labeled",
                  "metric", "value"]


def _environment(device: torch.device) -> dict[str, Any]:
    import sklearn

    return {"python": platform.python_version(), "platform": platform.platform(),
            "torch": torch.__version__, "numpy": np.__version__, "pandas": pd.__version__,
            "scikit-learn": sklearn.__version__, "device": str(device),
            "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):  # not on every platform
        return None


def round_timing(params: dict[str, Any], run_dir: str | Path | None = None, *, repeats: int = REPEATS,
                 warmup: int = WARMUP, optimizers: Sequence[str] = OPTIMIZERS,
                 data: data_mod.Dataset | None = None) -> pd.DataFrame:
    """Time one AL round per (strategy, seed, optimizer), interleaved and repeated (SAAL Fig 2).

    Args:
        params: Run parameters (validated here); ``optimizer`` is overridden by each of
            ``optimizers``; ``cycles`` sets the rounds of a timed unit.
        run_dir: Folder for ``timing.csv``, ``params.yaml`` and ``environment.json``
            (default: :func:`alstudy.loop.run_dir` of ``params``).
        repeats: Timed repeats (>= 1).
        warmup: Discarded repeats before them (>= 0).
        optimizers: Optimizers to alternate (two or more; the first runs first in even repeats).
        data: An already loaded dataset to reuse.

    Returns:
        The tidy timing rows (also written to ``<run_dir>/timing.csv``).

    Raises:
        ValueError: ``repeats`` < 1, ``warmup`` < 0, or fewer than two optimizers.
        alstudy.params.ParamError: Bad parameters.
    """
    if not (isinstance(repeats, int) and repeats >= 1):
        raise ValueError(f"repeats = {repeats!r} is invalid; allowed: an integer >= 1")
    if not (isinstance(warmup, int) and warmup >= 0):
        raise ValueError(f"warmup = {warmup!r} is invalid; allowed: an integer >= 0")
    optimizers = list(optimizers)
    if len(optimizers) < 2 or len(set(optimizers)) != len(optimizers):
        raise ValueError(f"optimizers = {optimizers!r} is invalid; allowed: two or more distinct names")
    p = params_mod.validate(params)
    for opt in optimizers:
        params_mod.validate(p, optimizer=opt)
    if p["threads"]:
        torch.set_num_threads(p["threads"])
    device = resolve_device(p["device"])
    if data is None:
        data = data_mod.load(p["dataset"], root=p["data_root"], seed=p["data_seed"],
                             max_train=p["max_train"], max_test=p["max_test"])
    params_mod.check_against_data(p, data.n_train, data.num_classes, data.task)
    specs = params_mod.strategy_specs(p)
    built = {label: strategies.build(name, **opts) for label, (name, opts) in specs.items()}
    out = Path(run_dir) if run_dir is not None else loop.run_dir(p)
    atomic_write_text(yaml.safe_dump(p, sort_keys=False), out / "params.yaml")
    env = {**_environment(device), "loadavg_before": _loadavg()}

    rows: list[dict[str, Any]] = []
    total = (warmup + repeats) * len(built) * len(p["seeds"]) * len(optimizers)
    with tqdm(total=total, desc="timing", disable=not p["progress"], mininterval=2.0) as bar:
        for repeat in range(warmup + repeats):
            order = optimizers if repeat % 2 == 0 else optimizers[::-1]
            for label, strategy in built.items():
                for seed in p["seeds"]:
                    for position, opt in enumerate(order):
                        metrics, _ = loop.run_unit({**p, "optimizer": opt}, data, label, strategy, seed,
                                                   device)
                        timed = metrics[metrics["metric"].isin(["train_seconds", "select_seconds"])]
                        for r in timed.itertuples(index=False):
                            rows.append({"strategy": label, "optimizer": opt, "seed": seed,
                                         "repeat": repeat - warmup, "warmup": repeat < warmup,
                                         "order": position,
                                         "cycle": r.cycle, "n_labeled": r.n_labeled, "metric": r.metric,
                                         "value": r.value})
                        bar.update(1)
    frame = pd.DataFrame(rows, columns=TIMING_COLUMNS)
    env["loadavg_after"] = _loadavg()
    atomic_write_text(json.dumps(env, indent=2), out / "environment.json")
    atomic_write_csv(frame, out / "timing.csv")
    return frame


def summary(frame: pd.DataFrame, optimizers: Sequence[str] = OPTIMIZERS) -> pd.DataFrame:
    """Median and interquartile range over repeats of the seconds per round, and the SAM/Adam ratio.

    Args:
        frame: Tidy timing rows (``timing.csv``); warm-up rows are dropped.
        optimizers: ``(reference, other)``: the ratio column is other over reference, per repeat.

    Returns:
        One row per (strategy, optimizer): ``repeats``, ``train_median``, ``train_iqr``,
        ``select_median``, ``select_iqr``, ``total_median``, ``total_iqr`` (seconds per round),
        and for the second optimizer ``train_ratio_median`` / ``total_ratio_median`` (median over
        repeats of its value over the first optimizer's in the same repeat).
    """
    per = round_seconds(frame)
    iqr = lambda s: float(s.quantile(0.75) - s.quantile(0.25))
    rows = []
    ref, other = optimizers[0], optimizers[1]
    for (strategy, opt), grp in per.groupby(["strategy", "optimizer"], sort=True):
        row = {"strategy": strategy, "optimizer": opt, "repeats": len(grp)}
        for col in ("train", "select", "total"):
            row[f"{col}_median"] = float(grp[f"{col}_seconds"].median())
            row[f"{col}_iqr"] = iqr(grp[f"{col}_seconds"])
        if opt == other:
            mine = per[(per["strategy"] == strategy)]
            wide = mine.pivot_table(index=["seed", "repeat"], columns="optimizer",
                                    values=["train_seconds", "total_seconds"])
            for col in ("train", "total"):
                if (f"{col}_seconds", ref) in wide and (f"{col}_seconds", other) in wide:
                    ratio = wide[(f"{col}_seconds", other)] / wide[(f"{col}_seconds", ref)]
                    row[f"{col}_ratio_median"] = float(ratio.median())
        rows.append(row)
    return pd.DataFrame(rows)
