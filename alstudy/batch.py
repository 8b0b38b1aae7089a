"""Sweeps: expand a grid into independent units and run them locally or on Dask.

A batch file (YAML) names what to run and the grid to expand::

    experiment: ns_ablation_k          # results/<experiment>/...
    name: k-cpu                        # <batch> in the folder names (optional; default: file name)
    notebook: ns_ablation_k            # executed with papermill per unit (omit: plain loop.run)
    preset: params/ns_ablation_k.cpu.yaml   # base parameters (optional)
    params: {cycles: 5}                # more base parameters (optional)
    grid:                              # one unit per combination
      dataset: [mnist, fashion_mnist]
      seeds: [[0], [1], [2]]

Every unit runs in its own folder ``results/<experiment>/<batch>-<unit>/`` and is marked done
by ``unit.json``, written atomically when it succeeds; a rerun skips done units, so a killed
driver or worker loses at most the units in flight. The driver then collects the units' tidy
CSVs into ``results/<experiment>/<batch>.csv`` (also ``alstudy collect``).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import signal
import sys
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
from tqdm import tqdm

from . import params as params_mod
from .results import atomic_write_csv, atomic_write_text, read_metrics, remove_stale_temp_files

__all__ = ["BatchSpec", "Unit", "load_spec", "expand", "run_batch", "collect", "execute_unit",
           "failure_report", "BACKENDS"]

BACKENDS = ("local", "dask")
_SPEC_KEYS = {"experiment", "name", "notebook", "preset", "params", "grid"}


@dataclass
class Unit:
    """One grid point: the parameters it runs with and the folder it owns."""

    name: str
    params: dict[str, Any]
    run_dir: Path
    notebook: str | None = None
    threads: int | None = None

    @property
    def done(self) -> bool:
        """Whether the unit finished successfully before."""
        return (self.run_dir / "unit.json").exists()


@dataclass
class BatchSpec:
    """A parsed batch file."""

    name: str
    experiment: str
    notebook: str | None
    base: dict[str, Any]
    grid: dict[str, list[Any]] = field(default_factory=dict)


def load_spec(path: str | Path, results_dir: str | None = None) -> BatchSpec:
    """Read and check a batch file.

    Raises:
        alstudy.params.ParamError: Unknown keys, an empty grid axis or a missing preset.
    """
    path = Path(path)
    raw = params_mod.read_yaml(path, what="batch file")
    unknown = sorted(set(raw) - _SPEC_KEYS)
    if unknown:
        raise params_mod.ParamError(f"{path}: unknown batch key(s) {unknown}; allowed: {sorted(_SPEC_KEYS)}")
    base: dict[str, Any] = {}
    if raw.get("preset"):
        preset = Path(raw["preset"])
        if not preset.exists():
            raise params_mod.ParamError(f"{path}: preset {str(preset)!r} does not exist")
        base.update(params_mod.read_yaml(preset))
    for key in ("params", "grid"):
        if not isinstance(raw.get(key) or {}, dict):
            raise params_mod.ParamError(f"{path}: {key!r} must be a mapping of key: value")
    base.update(raw.get("params") or {})
    experiment = raw.get("experiment") or raw.get("notebook") or base.get("experiment") or path.stem
    base["experiment"] = experiment
    if results_dir:
        base["results_dir"] = results_dir
    grid = raw.get("grid") or {}
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise params_mod.ParamError(f"{path}: grid axis {key!r} must be a non-empty list")
    name = raw.get("name") or path.stem.replace(".", "-")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.=+-]+", name):
        raise params_mod.ParamError(f"{path}: batch name {name!r} must be letters, digits and _ . = + -")
    return BatchSpec(name, experiment, raw.get("notebook"), base, grid)


def _slug(values: dict[str, Any]) -> str:
    text = "-".join(f"{k}={v}" for k, v in values.items())
    text = re.sub(r"[^A-Za-z0-9_.=+-]+", "", text.replace(" ", ""))
    if len(text) > 60 or not text:
        text = text[:40] + "-" + hashlib.sha1(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return text


def expand(spec: BatchSpec, threads: int | None = None) -> list[Unit]:
    """All units of the grid (validated: a bad value fails here, before any unit runs)."""
    keys = list(spec.grid)
    combos = itertools.product(*(spec.grid[k] for k in keys)) if keys else [()]
    units = []
    for combo in combos:
        point = dict(zip(keys, combo))
        name = f"{spec.name}-{_slug(point)}" if point else spec.name
        given = {**spec.base, **point, "run_id": name}
        if spec.notebook:
            from . import notebooks

            run_dir = notebooks.run_dir(notebooks.path_of(spec.notebook), given)
        else:
            from .loop import run_dir as loop_run_dir

            given = params_mod.validate(given)
            run_dir = loop_run_dir(given)
        units.append(Unit(name, given, run_dir, spec.notebook, threads))
    names = [u.name for u in units]
    if len(set(names)) != len(names):
        raise params_mod.ParamError("two grid points map to the same unit name; make the values distinct")
    return units


def _pin_threads(threads: int | None) -> None:
    """Limit torch/BLAS threads so that N parallel units on N cores do not oversubscribe.

    ``None`` (a remote worker) uses the cores this process may run on (its job's allocation).
    """
    if not threads:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)


def execute_unit(unit: Unit) -> dict[str, Any]:
    """Run one unit (papermill notebook or ``loop.run``) and mark it done.

    Never raises for a failing unit: returns ``{"name", "ok", "seconds", "error"}`` so that one
    failure does not stop the others.
    """
    _pin_threads(unit.threads)
    t0 = time.perf_counter()
    try:
        unit.run_dir.mkdir(parents=True, exist_ok=True)
        if unit.notebook:
            from . import notebooks

            notebooks.execute(unit.notebook, unit.params, progress=False)
        else:
            from . import loop

            loop.run({**unit.params, "progress": False})
        seconds = time.perf_counter() - t0
        atomic_write_text(json.dumps({"unit": unit.name, "seconds": seconds,
                                      "params": unit.params}, indent=2, default=str),
                          unit.run_dir / "unit.json")
        return {"name": unit.name, "ok": True, "seconds": seconds, "error": ""}
    except BaseException as err:  # noqa: BLE001 - reported, never swallowed silently
        if isinstance(err, KeyboardInterrupt):
            raise
        return {"name": unit.name, "ok": False, "seconds": time.perf_counter() - t0,
                "error": "".join(traceback.format_exception(err))[-2000:]}


def collect(experiment_dir: str | Path, units: Iterable[Unit] | None = None,
            output: str | Path | None = None) -> pd.DataFrame:
    """Concatenate the tidy ``metrics.csv`` of finished units into one CSV (sorted, no duplicates).

    Args:
        experiment_dir: ``results/<experiment>``.
        units: Restrict to these units (default: every run folder below ``experiment_dir``).
        output: Where to write the combined CSV (default ``<experiment_dir>/metrics.csv``).

    Returns:
        The combined frame.
    """
    experiment_dir = Path(experiment_dir)
    dirs = [u.run_dir for u in units] if units is not None else sorted(
        p.parent for p in experiment_dir.glob("*/metrics.csv"))
    frames = [read_metrics(d / "metrics.csv") for d in dirs if (d / "metrics.csv").exists()]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not frame.empty:
        key = [c for c in ("run_id", "strategy", "seed", "cycle", "metric") if c in frame]
        frame = frame.drop_duplicates(key, keep="last").sort_values(key, kind="stable").reset_index(drop=True)
    atomic_write_csv(frame, Path(output) if output else experiment_dir / "metrics.csv")
    return frame


def _die_with_children() -> None:
    """End this worker and the processes it started (e.g. a notebook's kernel)."""
    try:
        import psutil

        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.kill()
    except ImportError:  # pragma: no cover - psutil is optional
        pass
    os._exit(1)


def _die_with_driver(driver: int) -> None:
    """Worker initializer: end this worker when the driver process ``driver`` dies.

    On Linux the kernel sends SIGTERM when the parent dies (``PR_SET_PDEATHSIG``); a watchdog
    thread that polls the parent also covers other systems and a parent that is not the driver.
    Either way the worker kills its own children, then exits; no unit keeps running unowned.
    """
    signal.signal(signal.SIGTERM, lambda *_: _die_with_children())
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG = 1

    parent = os.getppid()  # the driver, or a fork server that the driver started

    def alive() -> bool:
        if os.getppid() != parent:  # re-parented: the parent is gone
            return False
        try:
            os.kill(driver, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True

    def watch() -> None:
        while alive():
            time.sleep(0.5)
        _die_with_children()

    if not alive():  # died before this worker got here
        _die_with_children()
    threading.Thread(target=watch, name="alstudy-driver-watchdog", daemon=True).start()


def _run_local(todo: list[Unit], jobs: int, bar: tqdm, fail_fast: bool) -> list[dict[str, Any]]:
    outcomes = []
    if jobs == 1:
        for unit in todo:
            outcomes.append(execute_unit(unit))
            bar.update(1)
            if fail_fast and not outcomes[-1]["ok"]:
                break
        return outcomes
    with ProcessPoolExecutor(max_workers=jobs, initializer=_die_with_driver,
                             initargs=(os.getpid(),)) as pool:
        pending = {pool.submit(execute_unit, u) for u in todo}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                outcomes.append(fut.result())
                bar.update(1)
                bar.set_postfix(failed=sum(not o["ok"] for o in outcomes))
            if fail_fast and any(not o["ok"] for o in outcomes):
                for fut in pending:
                    fut.cancel()
                break
    return outcomes


def _run_dask(todo: list[Unit], jobs: int, bar: tqdm, fail_fast: bool,
              scheduler: str | None) -> list[dict[str, Any]]:
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError as err:  # pragma: no cover - depends on the install
        raise params_mod.ParamError("backend 'dask' needs dask.distributed: pip install -e '.[dask]'") from err
    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    outcomes = []
    try:
        futures = [client.submit(execute_unit, u, key=f"unit-{u.name}", pure=False) for u in todo]
        for fut in as_completed(futures):
            try:
                outcome = fut.result()
            except Exception as err:  # the worker died (retries exhausted) or the task was lost
                outcome = {"name": fut.key.removeprefix("unit-"), "ok": False, "seconds": 0.0,
                           "error": f"{type(err).__name__}: {err}"}
            outcomes.append(outcome)
            bar.update(1)
            bar.set_postfix(failed=sum(not o["ok"] for o in outcomes))
            if fail_fast and not outcome["ok"]:
                client.cancel(futures)
                break
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return outcomes


def run_batch(path: str | Path, *, jobs: int | None = None, backend: str = "local",
              scheduler: str | None = None, fail_fast: bool = False,
              results_dir: str | None = None, progress: bool = True) -> tuple[pd.DataFrame, list[dict]]:
    """Run every unfinished unit of a batch file, then collect the combined CSV.

    Args:
        path: Batch file.
        jobs: Parallel units (default: CPU cores); each gets ``cores // jobs`` threads.
        backend: ``local`` (process pool) or ``dask`` (LocalCluster, or ``scheduler``).
        scheduler: Address of an existing Dask scheduler (``tcp://host:8786``).
        fail_fast: Stop scheduling after the first failure.
        results_dir: Override the results root.
        progress: Show the overall progress bar.

    Returns:
        ``(combined frame, outcomes)`` with one outcome dict per unit run now.

    Raises:
        alstudy.params.ParamError: A bad batch file or grid value (before any unit runs).
    """
    if backend not in BACKENDS:
        raise params_mod.ParamError(f"unknown backend {backend!r}; allowed: {list(BACKENDS)}")
    cores = os.cpu_count() or 1
    jobs = jobs or cores
    if jobs < 1:
        raise params_mod.ParamError(f"--jobs must be >= 1, got {jobs}")
    spec = load_spec(path, results_dir)
    units = expand(spec, threads=None if scheduler else max(1, cores // jobs))
    todo = [u for u in units if not u.done]
    remove_stale_temp_files(units[0].run_dir.parent)  # left by a kill while writing the batch CSV
    bar = tqdm(total=len(units), initial=len(units) - len(todo), desc=f"batch {spec.name}",
               unit="unit", disable=not progress)
    if backend == "dask":
        outcomes = _run_dask(todo, jobs, bar, fail_fast, scheduler)
    else:
        outcomes = _run_local(todo, jobs, bar, fail_fast)
    bar.close()
    by_name = {u.name: u for u in units}
    for outcome in outcomes:
        outcome["params"] = by_name[outcome["name"]].params if outcome["name"] in by_name else {}
    experiment_dir = units[0].run_dir.parent
    frame = collect(experiment_dir, [u for u in units if u.done], experiment_dir / f"{spec.name}.csv")
    return frame, outcomes


def failure_report(outcomes: list[dict[str, Any]]) -> str:
    """Human-readable summary of failed units: name, parameters and the tail of the error."""
    failed = [o for o in outcomes if not o["ok"]]
    if not failed:
        return ""
    lines = [f"{len(failed)} unit(s) failed:"]
    for o in failed:
        lines.append(f"- {o['name']}")
        if o.get("params"):
            lines.append(f"  params: {json.dumps(o['params'], default=str)}")
        tail = o["error"].strip().splitlines()[-3:]
        lines += [f"  {line}" for line in tail]
    return "\n".join(lines)
