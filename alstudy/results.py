"""Tidy results: atomic CSV writing, reading, and per-run summaries (final, best, AUBC).

One row per (run, strategy, seed, cycle, metric)::

    experiment, run_id, dataset, model, strategy, seed, cycle, n_labeled, metric, value
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

import numpy as np
import pandas as pd

__all__ = ["COLUMNS", "METRIC_GOAL", "atomic_write_csv", "atomic_write_text", "read_metrics",
           "remove_stale_temp_files", "file_mode", "summarize", "summary_table", "aubc",
           "add_option_column", "class_rates", "round_seconds"]

COLUMNS = ["experiment", "run_id", "dataset", "model", "strategy", "seed", "cycle", "n_labeled",
           "metric", "value"]

#: Whether larger (``max``) or smaller (``min``) is better; timing metrics are not summarised.
METRIC_GOAL = {"accuracy": "max", "mae": "min", "miou": "max", "pixel_accuracy": "max", "map50": "max",
               "map50_all": "max"}


#: When this module was imported: temp files older than this cannot be this process's writes.
PROCESS_START = time.time()
_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process umask, read without changing it where ``/proc`` allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:  # os.umask can only be read by setting it
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """Permission bits of a new file under the current umask (``0o644`` under umask 022)."""
    return 0o666 & ~_umask()


def atomic_write_text(text: str, path: str | Path) -> None:
    """Write ``text`` to ``path`` via a temporary file and rename (never a truncated file).

    The file gets the normal permissions of the umask (``tempfile`` would leave it 0600). The
    hidden temp file ``.<name>.<random>.tmp`` is locked while it is written, so that
    :func:`remove_stale_temp_files` can tell a write in progress from one a kill left behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
            os.replace(tmp, path)  # still locked until the file is closed
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temp_files(folder: str | Path, older_than: float | None = None) -> list[Path]:
    """Delete the hidden ``.NAME.XXXX.tmp`` files that a kill during a write left in ``folder``.

    Only stale ones go: modified before ``older_than`` (default: this process's start, see
    :data:`PROCESS_START`) and not locked by a writer that is still running.

    Returns:
        The files removed.
    """
    older_than = PROCESS_START if older_than is None else older_than
    removed = []
    for tmp in sorted(Path(folder).glob(".*.tmp")):
        try:
            if not tmp.is_file() or tmp.stat().st_mtime >= older_than:
                continue
            with open(tmp, "rb") as fh:
                if fcntl is not None:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: a live write
                tmp.unlink()
            removed.append(tmp)
        except OSError:  # locked, or gone meanwhile
            continue
    return removed


def atomic_write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a DataFrame as CSV atomically (temp file + rename)."""
    atomic_write_text(frame.to_csv(index=False), path)


def read_metrics(path: str | Path) -> pd.DataFrame:
    """Read one ``metrics.csv`` or every ``metrics.csv`` under a folder, concatenated."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(path.rglob("metrics.csv"))
    frames = [pd.read_csv(f) for f in files]
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(frames, ignore_index=True)


def aubc(n_labeled: np.ndarray, values: np.ndarray) -> float:
    """Area under the budget curve, normalised by the budget range (trapezoid rule).

    Equals the mean value over the labeled-set sizes spanned; a single point returns itself.
    """
    order = np.argsort(n_labeled)
    x, y = np.asarray(n_labeled, float)[order], np.asarray(values, float)[order]
    if len(x) < 2 or x[-1] == x[0]:
        return float(y.mean())
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0 / (x[-1] - x[0]))


def summarize(frame: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """Per (strategy, seed): the final-round value, the best over rounds and the AUBC.

    Args:
        frame: Tidy results.
        metric: Metric to summarise (default: the first of :data:`METRIC_GOAL` present).

    Returns:
        Columns ``experiment, run_id, dataset, model, strategy, seed, metric, final, best, aubc,
        cycles``.
    """
    metric = metric or next((m for m in METRIC_GOAL if m in set(frame["metric"])), None)
    if metric is None:
        raise ValueError(f"no summarisable metric in {sorted(set(frame['metric']))}")
    goal = METRIC_GOAL.get(metric, "max")
    rows = []
    keys = [k for k in ["experiment", "run_id", "dataset", "model", "strategy", "seed"] if k in frame]
    for key, grp in frame[frame["metric"] == metric].groupby(keys, sort=True):
        grp = grp.sort_values("cycle")
        vals = grp["value"].to_numpy(float)
        rows.append(dict(zip(keys, key), metric=metric, final=vals[-1],
                         best=vals.max() if goal == "max" else vals.min(),
                         aubc=aubc(grp["n_labeled"].to_numpy(), vals), cycles=int(grp["cycle"].max())))
    return pd.DataFrame(rows)


def summary_table(frame: pd.DataFrame, metric: str | None = None,
                  by: tuple[str, ...] = ("strategy",), precision: int = 4) -> pd.DataFrame:
    """Mean ± std over seeds of final, best-over-rounds and AUBC, one row per ``by`` group.

    Returns:
        A DataFrame with numeric ``*_mean``/``*_std`` columns plus formatted ``final``, ``best``,
        ``aubc`` strings (``"0.9120 ± 0.0040"``) and ``seeds``.
    """
    per_run = summarize(frame, metric)
    out = []
    for key, grp in per_run.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key), seeds=len(grp))
        for col in ("final", "best", "aubc"):
            mean, std = grp[col].mean(), grp[col].std(ddof=1) if len(grp) > 1 else 0.0
            row[f"{col}_mean"], row[f"{col}_std"] = mean, std
            row[col] = f"{mean:.{precision}f} ± {std:.{precision}f}"
        out.append(row)
    return pd.DataFrame(out)


def add_option_column(frame: pd.DataFrame, params: dict, option: str, column: str | None = None,
                      default=None) -> pd.DataFrame:
    """Add a column with each row's strategy option value (for ablation plots and tables).

    Args:
        frame: Tidy results whose ``strategy`` column holds the labels of ``params['strategies']``.
        params: The run's validated parameters.
        option: Strategy option to expose (e.g. ``zeta``).
        column: Column name (default: ``option``).
        default: Value for strategies that do not set the option (default: the strategy's default).

    Returns:
        A copy of ``frame`` with the new column.
    """
    from .params import strategy_specs
    from .strategies import build

    values = {label: build(name, **opts).opts.get(option, default)  # variant presets resolved
              for label, (name, opts) in strategy_specs(params).items()}
    out = frame.copy()
    out[column or option] = out["strategy"].map(values)
    return out


def class_rates(dataset) -> pd.DataFrame:
    """Per split and class of a classification dataset: how many examples, and what share.

    The largest test ``rate`` is the accuracy of a constant predictor (the majority class), the
    level a model must clear before its ranking of strategies means anything.

    Args:
        dataset: An :class:`alstudy.data.Dataset` with integer class targets.

    Returns:
        Columns ``split`` (``train``/``test``), ``class``, ``count``, ``rate``; one row per
        class of ``range(num_classes)``, absent classes with count 0.

    Raises:
        ValueError: A dataset without classes (regression).
    """
    if not dataset.num_classes:
        raise ValueError(f"dataset {dataset.name!r} has no classes (task {dataset.task!r}); "
                         "class_rates needs a classification dataset")
    rows = []
    for split, y in (("train", dataset.y_train), ("test", dataset.y_test)):
        counts = np.bincount(np.asarray(y, dtype=np.int64).ravel(), minlength=dataset.num_classes)
        for c, n in enumerate(counts):
            rows.append({"split": split, "class": c, "count": int(n), "rate": float(n) / max(int(counts.sum()), 1)})
    return pd.DataFrame(rows, columns=["split", "class", "count", "rate"])


def round_seconds(frame: pd.DataFrame, keys: tuple[str, ...] = ("strategy", "optimizer", "seed", "repeat")
                  ) -> pd.DataFrame:
    """Seconds per AL round of each timed unit: median over its cycles of training and selection.

    A round trains the model and then selects; the last cycle only trains, so ``select_seconds``
    is the median over the cycles that select. Rows flagged ``warmup`` (a timing protocol's
    discarded first repeats, :func:`alstudy.timing.round_timing`) are dropped.

    Args:
        frame: Tidy timing rows (``metric`` in ``train_seconds``/``select_seconds``) with the
            ``keys`` columns (e.g. ``timing.csv``).
        keys: Columns identifying one timed unit.

    Returns:
        One row per unit: the ``keys`` columns, ``train_seconds``, ``select_seconds`` and
        ``total_seconds`` (their sum; NaN where a unit never selected).
    """
    keys = [k for k in keys if k in frame]
    if "warmup" in frame:
        frame = frame[~frame["warmup"].astype(bool)]
    sub = frame[frame["metric"].isin(["train_seconds", "select_seconds"])]
    out = sub.groupby([*keys, "metric"])["value"].median().unstack("metric")
    out = out.reindex(columns=["train_seconds", "select_seconds"])
    out.columns.name = None
    out["total_seconds"] = out["train_seconds"] + out["select_seconds"]
    return out.reset_index()
