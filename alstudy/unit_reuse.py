"""Finished units of the same configuration in other run folders, copied instead of run again.

A unit's numbers depend on the data, model, training and protocol parameters, the resolved
strategy (its name and every option, defaults included), the seed, the code that computes and
what the unit ran on — not on the experiment's name, the unit's label, the other strategies or
the other seeds. Every random stream of a unit is derived from (seed, cycle, purpose) and
nothing in cycle ``c`` depends on how many cycles follow, so the first ``cycles`` cycles of a
longer unit are the unit a shorter run computes.

Every unit the loop runs records :func:`fingerprint` in ``units/<stem>.json``: a hash of its
:func:`unit_key`, of the computing code (:func:`code_fingerprint`) and of the data tensors
(:func:`data_fingerprint`). :class:`DonorIndex` finds a finished unit under ``results_dir`` with
the same fingerprint, at least as many cycles, the same library versions and the same device
type and thread count (GPU model on CUDA); :func:`load` returns it truncated and relabelled, with
its origin in the unit's record (``copied_from``). On CPU a copy is bit for bit the unit this run
would compute; on CUDA, up to the non-determinism of its kernels. Units without a fingerprint
(written before it was recorded) are never copied. ``reuse_units: false`` runs every unit here.

Copied rows keep the source's ``train_seconds`` / ``select_seconds``: the time the unit took where
it ran. The evidence engine's cost claims compare only units timed in their own run folder.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from . import params as params_mod, records, strategies

__all__ = ["Donor", "DonorIndex", "unit_key", "code_fingerprint", "data_fingerprint",
           "fingerprint", "load"]

#: Parameters that name or group units rather than change one (device and threads are compared
#: through the unit's environment record instead).
_NOT_IN_KEY = ("strategies", "strategy_options", "cycles", "seeds", "experiment", "run_id",
               "results_dir", "progress", "reuse_units", "device", "threads")
#: Package files that do not compute a unit's numbers (records, verdicts, reports, plots, CLI).
_NOT_COMPUTING = ("evidence/", "reports/", "plots.py", "notebooks.py", "cli.py", "batch.py",
                  "records.py", "results.py", "dryrun.py", "unit_reuse.py", "theory_runs.py",
                  "timing.py", "params.py")
#: Environment fields that must be equal between a source unit and this run.
_VERSIONS = ("python", "torch", "numpy", "pandas", "scikit-learn")


def unit_key(params: dict[str, Any], strategy: strategies.Strategy) -> str:
    """What a unit's numbers depend on besides its seed, cycles, code, data and environment."""
    semantic = {k: params.get(k, field.default) for k, field in params_mod.SCHEMA.items()
                if k not in _NOT_IN_KEY}
    semantic["strategy"] = [strategy.name, strategy.opts]
    return json.dumps(semantic, sort_keys=True, default=str)


@functools.cache
def code_fingerprint() -> str:
    """SHA-1 of the package's computing sources (every ``alstudy/**/*.py`` but those of
    :data:`_NOT_COMPUTING`), read once per process: the code this process runs."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha1()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if not rel.startswith(_NOT_COMPUTING):
            digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _feed(digest: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().contiguous()
        digest.update(f"{obj.dtype}{tuple(obj.shape)}".encode())
        digest.update(obj.view(torch.uint8).numpy().tobytes() if obj.numel() else b"")
    elif isinstance(obj, np.ndarray):
        digest.update(f"{obj.dtype}{obj.shape}".encode() + np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            digest.update(str(k).encode())
            _feed(digest, obj[k])
    elif isinstance(obj, (list, tuple)):
        digest.update(f"[{len(obj)}".encode())
        for item in obj:
            _feed(digest, item)
    elif hasattr(obj, "__dict__"):
        _feed(digest, vars(obj))
    else:
        digest.update(repr(obj).encode())


def data_fingerprint(data: Any) -> str:
    """SHA-1 of a dataset's train and test inputs and targets (tensors byte for byte)."""
    digest = hashlib.sha1()
    for part in (data.x_train, data.y_train, data.x_test, data.y_test):
        _feed(digest, part)
    return digest.hexdigest()


def fingerprint(params: dict[str, Any], strategy: strategies.Strategy, data_digest: str) -> str:
    """What a unit record stores as ``fingerprint``: :func:`unit_key`, code and data, hashed."""
    text = "\0".join([unit_key(params, strategy), code_fingerprint(), data_digest])
    return hashlib.sha1(text.encode()).hexdigest()


@dataclass(frozen=True)
class Donor:
    """A finished unit of another run folder: ``<run_dir>/units/<stem>.{csv,selected.csv,json}``."""

    run_dir: Path
    stem: str
    record: dict[str, Any]

    def file(self, suffix: str) -> Path:
        return self.run_dir / "units" / f"{self.stem}{suffix}"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        out = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return out if isinstance(out, dict) else None


class DonorIndex:
    """The finished units under ``params['results_dir']`` that units of this run could copy.

    Built on the first :meth:`find`: the other run folders whose ``params.yaml`` has at least
    this run's cycles and a strategy with the same :func:`unit_key` as one of ``built``.
    """

    def __init__(self, params: dict[str, Any], built: dict[str, strategies.Strategy],
                 data_digest: str, env: dict[str, Any], own_dir: Path):
        self.params, self.built, self.env, self.own_dir = params, built, env, own_dir
        self.prints = {label: fingerprint(params, s, data_digest) for label, s in built.items()}
        self._folders: dict[str, list[tuple[Path, str]]] | None = None

    def _scan(self) -> dict[str, list[tuple[Path, str]]]:
        keys = {label: unit_key(self.params, s) for label, s in self.built.items()}
        wanted: dict[str, list[str]] = {}
        for label, key in keys.items():
            wanted.setdefault(key, []).append(label)
        found: dict[str, list[tuple[Path, str]]] = {label: [] for label in self.built}
        own = self.own_dir.resolve()
        for saved_file in sorted(Path(self.params["results_dir"]).glob("*/*/params.yaml")):
            run_dir = saved_file.parent
            if run_dir.resolve() == own or not (run_dir / "units").is_dir():
                continue
            try:
                saved = {**params_mod.defaults(), **(yaml.safe_load(saved_file.read_text()) or {})}
                specs = params_mod.strategy_specs(saved)
            except (OSError, params_mod.ParamError, yaml.YAMLError, TypeError, AttributeError):
                continue
            if not isinstance(saved.get("cycles"), int) or saved["cycles"] < self.params["cycles"]:
                continue
            for other_label, (name, opts) in specs.items():
                try:
                    key = unit_key(saved, strategies.build(name, **opts))
                except (ValueError, TypeError):
                    continue
                for label in wanted.get(key, []):
                    found[label].append((run_dir, other_label))
        return found

    def find(self, label: str, seed: int) -> Donor | None:
        """A finished source for unit (``label``, ``seed``) with this run's fingerprint,
        versions and device settings; one that is not itself a copy first, else ``None``."""
        if self._folders is None:
            self._folders = self._scan()
        settings = records.result_settings(self.env)
        copies = []
        for run_dir, other_label in self._folders.get(label, []):
            donor_stem = records.unit_stem(other_label, seed)
            record = _read_json(run_dir / "units" / f"{donor_stem}.json")
            if (record is None or record.get("fingerprint") != self.prints[label]
                    or not (run_dir / "units" / f"{donor_stem}.csv").exists()
                    or any(record.get(k) != self.env.get(k) for k in _VERSIONS)
                    or records.result_settings(record) != settings):
                continue
            donor = Donor(run_dir, donor_stem, record)
            if not record.get("copied_from"):
                return donor
            copies.append(donor)
        return copies[0] if copies else None


def load(donor: Donor, params: dict[str, Any], label: str
         ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]] | None:
    """``donor``'s unit as this run's ``label``: the metric rows of cycles ``0..cycles`` (no
    selection time after the last), the selections made before cycle ``cycles`` and its record
    with ``copied_from`` (the original unit's tidy CSV, relative to the results folder's
    parent). ``None`` when the source's files cannot be read (the loop then runs the unit).

    Returns:
        ``(metrics, selections, record)`` in the loop's unit formats.
    """
    cycles = params["cycles"]
    try:
        metrics = pd.read_csv(donor.file(".csv"))
        selected = pd.read_csv(donor.file(".selected.csv"))
    except (OSError, ValueError):
        return None
    after_last = (metrics.cycle > cycles) | ((metrics.cycle == cycles)
                                             & (metrics.metric == "select_seconds"))
    metrics = metrics[~after_last].assign(experiment=params["experiment"],
                                          run_id=params_mod.run_id(params), strategy=label)
    selected = selected[selected.cycle < cycles].assign(strategy=label)
    origin = donor.record.get("copied_from")
    if not origin:
        path = donor.file(".csv").resolve()
        root = Path(params["results_dir"]).resolve().parent
        origin = str(path.relative_to(root) if path.is_relative_to(root) else path)
    record = {**donor.record, "strategy": label, "copied_from": origin, "copied_cycles": cycles}
    return metrics.reset_index(drop=True), selected.reset_index(drop=True), record
