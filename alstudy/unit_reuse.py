"""Finished units of the same configuration in other run folders, copied instead of run again.

A unit's numbers depend on the data, model, training and protocol parameters, the resolved
strategy (its name and every option, defaults included), the seed and what the unit ran on —
not on the experiment's name, the unit's label, the other strategies or the other seeds. Every
random stream of a unit is derived from (seed, cycle, purpose) and nothing in cycle ``c``
depends on how many cycles follow, so the first ``cycles`` cycles of a longer unit are the unit
a shorter run computes. :func:`find_donor` looks for such a unit under ``results_dir`` and
:func:`load` returns it truncated and relabelled, with its origin in the unit's record
(``copied_from``). ``reuse_units: false`` runs every unit afresh.

Copied rows keep the donor's ``train_seconds`` / ``select_seconds``: the time the unit took
where it ran.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from . import params as params_mod, records, strategies

__all__ = ["Donor", "unit_key", "find_donor", "load"]

#: Parameters that name or group units rather than change one.
_NOT_IN_KEY = ("strategies", "strategy_options", "cycles")


@dataclass(frozen=True)
class Donor:
    """A finished unit of another run folder: ``<run_dir>/units/<stem>.{csv,selected.csv,json}``."""

    run_dir: Path
    stem: str
    cycles: int

    def file(self, suffix: str) -> Path:
        return self.run_dir / "units" / f"{self.stem}{suffix}"


def unit_key(params: dict[str, Any], strategy: strategies.Strategy) -> str:
    """What a unit's numbers depend on besides its seed, cycles and environment, as one string."""
    semantic = {k: params.get(k, field.default) for k, field in params_mod.SCHEMA.items()
                if field.semantic and k not in _NOT_IN_KEY}
    semantic["strategy"] = [strategy.name, strategy.opts]
    return json.dumps(semantic, sort_keys=True, default=str)


def _built_strategies(saved: dict[str, Any]) -> dict[str, strategies.Strategy]:
    """A saved run's strategies by label; those its options no longer build are left out."""
    out = {}
    for label, (name, opts) in params_mod.strategy_specs(saved).items():
        try:
            out[label] = strategies.build(name, **opts)
        except (ValueError, TypeError):
            continue
    return out


def find_donor(params: dict[str, Any], strategy: strategies.Strategy, seed: int,
               env: dict[str, Any], own_dir: Path) -> Donor | None:
    """A finished unit under ``params['results_dir']`` that this (strategy, seed) unit would
    reproduce: the same :func:`unit_key`, at least as many cycles, the same torch version and
    the same :func:`alstudy.records.result_settings` (device type, CPU threads or GPU model).
    The first match in folder-name order, or ``None``."""
    key = unit_key(params, strategy)
    settings = records.result_settings(env)
    for saved_file in sorted(Path(params["results_dir"]).glob("*/*/params.yaml")):
        run_dir = saved_file.parent
        if run_dir.resolve() == own_dir.resolve():
            continue
        try:
            saved = {**params_mod.defaults(), **(yaml.safe_load(saved_file.read_text()) or {})}
            built = _built_strategies(saved)
        except (params_mod.ParamError, yaml.YAMLError, TypeError, AttributeError):
            continue
        if not isinstance(saved.get("cycles"), int) or saved["cycles"] < params["cycles"]:
            continue
        for label, other in built.items():
            donor = Donor(run_dir, records.unit_stem(label, seed), saved["cycles"])
            if (unit_key(saved, other) != key or not donor.file(".csv").exists()
                    or not donor.file(".json").exists()):
                continue
            unit_env = json.loads(donor.file(".json").read_text())
            if (unit_env.get("torch") == env.get("torch")
                    and records.result_settings(unit_env) == settings):
                return donor
    return None


def load(donor: Donor, params: dict[str, Any], label: str
         ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """``donor``'s unit as this run's ``label``: the metric rows of cycles ``0..cycles`` (no
    selection time after the last), the selections made before cycle ``cycles`` and its record
    with ``copied_from`` (the donor's tidy CSV, relative to the results folder's parent).

    Returns:
        ``(metrics, selections, record)`` in the loop's unit formats.
    """
    cycles = params["cycles"]
    metrics = pd.read_csv(donor.file(".csv"))
    after_last = (metrics.cycle > cycles) | ((metrics.cycle == cycles)
                                             & (metrics.metric == "select_seconds"))
    metrics = metrics[~after_last].assign(experiment=params["experiment"],
                                          run_id=params_mod.run_id(params), strategy=label)
    selected = pd.read_csv(donor.file(".selected.csv"))
    selected = selected[selected.cycle < cycles].assign(strategy=label)
    record = json.loads(donor.file(".json").read_text())
    origin = donor.file(".csv")
    root = Path(params["results_dir"]).resolve().parent
    if origin.resolve().is_relative_to(root):
        origin = origin.resolve().relative_to(root)
    record.update(strategy=label, copied_from=str(origin), copied_cycles=cycles)
    return metrics.reset_index(drop=True), selected.reset_index(drop=True), record
