"""What a run folder records, and how several processes share one without losing or mixing work.

A run folder ``<results_dir>/<experiment>/<run_id>/`` keeps:

* ``units/<stem>.csv`` (the unit's tidy rows; written last, it marks the unit done),
  ``units/<stem>.selected.csv`` and ``units/<stem>.json``: what the unit ran with (device,
  threads, library versions, host, times), since thread count and device change the numbers;
* ``params.yaml`` and ``environment.json``: written when the first unit finishes and never
  overwritten; the ``seeds`` of ``params.yaml`` only grow, to every seed with a finished unit;
* ``attempts/<time>-<pid>.json``: one record per invocation that had work to do (its full
  parameters, environment, units run and outcome, ``failed`` with the error when it failed).

Locks: ``units/.<stem>.lock`` is held (``flock``) while a unit runs, so a second process skips
it; the kernel drops the lock when its holder dies, so a killed run never leaves a lock that
blocks the next one. ``.run.lock`` serialises the short updates of the shared files.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import re
import socket
from pathlib import Path
from typing import Any, Iterator

import yaml

from .results import atomic_write_text

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

__all__ = ["default_threads", "unit_stem", "result_settings", "environment", "UnitLock",
           "run_lock", "record_finished_unit", "check_resume", "Attempt"]


def default_threads() -> int:
    """Torch threads when ``threads`` is null: ``$OMP_NUM_THREADS`` if set, else 1.

    One thread per process is the default because the small models here gain little from a
    second thread and collapse when another process holds a core (``benchmarks/bench_threads.py``).
    """
    try:
        n = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        return 1
    return n if n >= 1 else 1


def unit_stem(label: str, seed: int) -> str:
    """File stem of a unit: ``<label with unsafe characters as _>__seed<seed>``."""
    return f"{re.sub(r'[^A-Za-z0-9_.=+-]+', '_', label)}__seed{seed}"


def result_settings(env: dict[str, Any]) -> dict[str, Any]:
    """The part of an environment record that changes a unit's numbers: the device type, and
    the thread count on CPU or the GPU model on CUDA."""
    device = str(env.get("device", "?")).split(":")[0]
    out = {"device": device}
    if device == "cuda":
        out["gpu"] = env.get("gpu")
    else:
        out["threads"] = env.get("threads")
    return out


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def environment(device: Any, threads: int) -> dict[str, Any]:
    """Versions, device and thread count of this process (what a unit ran with)."""
    import numpy as np
    import pandas as pd
    import sklearn
    import torch

    device = torch.device(device)
    env = {"python": platform.python_version(), "platform": platform.platform(),
           "torch": torch.__version__, "numpy": np.__version__, "pandas": pd.__version__,
           "scikit-learn": sklearn.__version__, "device": str(device), "threads": int(threads)}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


class UnitLock:
    """An exclusive, non-blocking-or-waiting lock on one unit (``units/.<stem>.lock``).

    The holder's pid, host and start time are written into the file (see :meth:`holder`).
    A holder that dies releases the lock with its file descriptors, so stale locks need no
    clean-up; the file of a finished unit is removed by its holder.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = None

    def _lock(self, blocking: bool) -> bool:
        if fcntl is None:  # pragma: no cover - no advisory locks: run unguarded
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                return False
            except OSError:  # a filesystem without flock: run unguarded rather than not at all
                os.close(fd)
                return True
            try:  # the file we locked must still be the one at the path (not unlinked meanwhile)
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": _now()})
                os.ftruncate(fd, 0)
                os.pwrite(fd, info.encode(), 0)
                return True
            os.close(fd)

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; ``False`` when another process holds it."""
        return self._lock(blocking=False)

    def acquire(self) -> None:
        """Wait until the lock is free, then take it."""
        self._lock(blocking=True)

    def holder(self) -> str:
        """``pid N on HOST since TIME`` of the current holder (best effort)."""
        try:
            info = json.loads(self.path.read_text() or "{}")
            return f"pid {info['pid']} on {info['host']} since {info['since']}"
        except (OSError, ValueError, KeyError):
            return "another process"

    def release(self, remove: bool = True) -> None:
        """Drop the lock (and remove the lock file, e.g. once the unit is done)."""
        if self._fd is None:
            return
        if remove:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None


@contextlib.contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold ``<run_dir>/.run.lock`` while updating the files that all units share."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / ".run.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:  # pragma: no cover - a filesystem without flock
                pass
        yield
    finally:
        os.close(fd)


def record_finished_unit(run_dir: Path, params: dict[str, Any], env: dict[str, Any],
                         seed: int) -> None:
    """Write ``params.yaml`` and ``environment.json`` if absent; add ``seed`` to the saved seeds.

    Call under :func:`run_lock`, just before a unit is marked done. Nothing else of a saved
    record is ever rewritten.

    Raises:
        alstudy.params.ParamError: The folder holds a run with different parameters.
    """
    from . import params as params_mod

    saved = run_dir / "params.yaml"
    if saved.exists():
        previous = yaml.safe_load(saved.read_text()) or {}
        if not params_mod.semantic_equal(previous, params):
            raise params_mod.ParamError(f"{run_dir} holds a run with different parameters; set a "
                                        "new 'run_id' or remove the folder")
        seeds = list(previous.get("seeds") or [])
        if seed not in seeds:
            previous["seeds"] = sorted(seeds + [seed])
            atomic_write_text(yaml.safe_dump(previous, sort_keys=False), saved)
    else:
        atomic_write_text(yaml.safe_dump({**params, "seeds": [seed]}, sort_keys=False), saved)
    if not (run_dir / "environment.json").exists():
        atomic_write_text(json.dumps(env, indent=2), run_dir / "environment.json")


def check_resume(run_dir: Path, env: dict[str, Any], finished: list[str]) -> list[str]:
    """Refuse a resume that would mix units run with different devices or thread counts.

    Args:
        run_dir: The run folder.
        env: What this process would run the remaining units with (:func:`environment`).
        finished: Stems of the finished units.

    Returns:
        Warnings (differences that may change numbers but are not refused: a torch version;
        units finished before per-unit records existed, judged from ``environment.json``).

    Raises:
        alstudy.params.ParamError: Naming the setting, its values and the units that used them.
    """
    from . import params as params_mod

    now = result_settings(env)
    differ: dict[tuple[str, Any], list[str]] = {}
    warnings = []
    legacy = []
    for stem in finished:
        side = run_dir / "units" / f"{stem}.json"
        if not side.exists():
            legacy.append(stem)
            continue
        rec = json.loads(side.read_text())
        was = result_settings(rec)
        for key in now:  # device, then threads (CPU) or the GPU model (CUDA)
            if key in was and was[key] != now[key]:
                differ.setdefault((key, was[key]), []).append(stem)
                break
        if rec.get("torch") and rec["torch"] != env["torch"]:
            warnings.append(f"unit {stem} ran with torch {rec['torch']}, this process has {env['torch']}")
    if differ:
        (key, value), stems = next(iter(differ.items()))
        listed = ", ".join(stems[:3]) + (f" and {len(stems) - 3} more" if len(stems) > 3 else "")
        hint = f"set {key}: {value} to match" if key in ("threads", "device") else "use the same GPU model"
        raise params_mod.ParamError(
            f"{run_dir}: resuming would mix units run with different settings: {listed} ran with "
            f"{key}={value!r}, this run has {key}={now.get(key)!r}; {hint}, or use a new 'run_id' "
            "or 'results_dir'")
    old = run_dir / "environment.json"
    if legacy and old.exists():
        was = result_settings(json.loads(old.read_text()))
        bad = [k for k in now if k in was and was[k] != now[k]]
        if bad:
            warnings.append(f"{run_dir}: {len(legacy)} finished unit(s) have no record of their own; "
                            f"environment.json says {', '.join(f'{k}={was[k]!r}' for k in bad)}, this "
                            f"run has {', '.join(f'{k}={now[k]!r}' for k in bad)}: the results may mix")
    return warnings


class Attempt:
    """``attempts/<time>-<pid>.json``: one invocation's parameters, environment and outcome."""

    def __init__(self, run_dir: Path, params: dict[str, Any], env: dict[str, Any], todo: list[str]):
        started = dt.datetime.now(dt.timezone.utc)
        self.path = run_dir / "attempts" / f"{started:%Y%m%dT%H%M%S%fZ}-{os.getpid()}.json"
        self.record: dict[str, Any] = {"status": "running", "started": started.isoformat(),
                                       "host": socket.gethostname(), "pid": os.getpid(),
                                       "todo": todo, "ran": [], "finished_elsewhere": [],
                                       "params": params, "environment": env}
        self._write()

    def _write(self) -> None:
        atomic_write_text(json.dumps(self.record, indent=2, default=str), self.path)

    def ran(self, stem: str) -> None:
        """Note a unit this invocation finished."""
        self.record["ran"].append(stem)
        self._write()

    def copied(self, stem: str, origin: str) -> None:
        """Note a unit copied from an identical unit of another run folder."""
        self.record.setdefault("copied", {})[stem] = origin
        self._write()

    def finished_elsewhere(self, stem: str) -> None:
        """Note a unit that another process finished while this one waited."""
        self.record["finished_elsewhere"].append(stem)

    def close(self, error: BaseException | None = None) -> None:
        """Record the outcome: ``finished``, or ``failed`` with the error's last line."""
        self.record["ended"] = _now()
        if error is None:
            self.record["status"] = "finished"
        else:
            self.record["status"] = "failed"
            self.record["error"] = f"{type(error).__name__}: {error}".strip()
        self._write()
