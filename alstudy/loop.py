"""The active-learning cycle: params -> tidy results on disk, resumable unit by unit.

A *unit* is one (strategy label, seed) run of ``cycles`` acquisitions. Each finished unit is
written atomically to ``<results_dir>/<experiment>/<run_id>/units/``; the combined
``metrics.csv`` is rebuilt from the unit files after each unit. A rerun of the same params
skips finished units, so an interrupted run loses at most the unit in flight.

Seeding: the initial set, the model initialisation of each cycle and the training order depend
only on (seed, cycle), so every strategy of a seed starts from the same labels and weights;
the selection generator depends on (seed, cycle) too. Same params + seed -> same indices.
"""

from __future__ import annotations

import json
import platform
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from tqdm import tqdm

from . import data as data_mod
from . import cycle_metrics, models, params as params_mod, pool as pool_mod, strategies
from .results import COLUMNS, atomic_write_csv, atomic_write_text
from .train import TrainConfig, evaluate, fit, resolve_device

__all__ = ["run", "run_dir", "run_unit", "derive_seed", "train_config"]


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed derived from ``parts`` (stable across processes and platforms)."""
    words = [p if isinstance(p, int) else int.from_bytes(str(p).encode(), "little") % (2**32)
             for p in parts]
    return int(np.random.SeedSequence(words).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


def _generator(*parts: int | str) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(*parts))


def train_config(p: dict[str, Any]) -> TrainConfig:
    """The :class:`TrainConfig` described by validated params."""
    return TrainConfig(epochs=p["epochs"], batch_size=p["batch_size"], optimizer=p["optimizer"],
                       lr=float(p["lr"]), momentum=float(p["momentum"]),
                       weight_decay=float(p["weight_decay"]), lr_milestones=list(p["lr_milestones"]),
                       lr_gamma=float(p["lr_gamma"]), augment=p["augment"],
                       sam_rho=float(p["sam_rho"]), sam_base=p["sam_base"])


def run_dir(p: dict[str, Any]) -> Path:
    """``<results_dir>/<experiment>/<run_id>`` of validated params."""
    return Path(p["results_dir"]) / p["experiment"] / params_mod.run_id(p)


def _unit_stem(label: str, seed: int) -> str:
    return f"{re.sub(r'[^A-Za-z0-9_.=+-]+', '_', label)}__seed{seed}"


def _environment(device: torch.device) -> dict[str, Any]:
    import sklearn

    env = {"python": platform.python_version(), "platform": platform.platform(),
           "torch": torch.__version__, "numpy": np.__version__, "pandas": pd.__version__,
           "scikit-learn": sklearn.__version__, "device": str(device),
           "threads": torch.get_num_threads()}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def run_unit(p: dict[str, Any], data: data_mod.Dataset, label: str, strategy: strategies.Strategy,
             seed: int, device: torch.device, bar: tqdm | None = None
             ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run one (strategy, seed) through all cycles.

    Returns:
        ``(metrics, selections)``: tidy metric rows and one row per selected index.
    """
    cfg = train_config(p)
    num_outputs = data.num_classes or 1
    build = lambda: models.build(p["model"], data.input_shape, num_outputs, **p["model_options"])
    y = data.y_train
    init = pool_mod.initial_indices(y, p["initial_size"], p["initial_mode"], _generator(seed, "init"),
                                    data.num_classes)
    pool = pool_mod.Pool(data.n_train, init,
                         candidates=None if p["candidates"] == "all" else p["candidates"])
    rows: list[dict[str, Any]] = []
    picks: list[dict[str, Any]] = [{"cycle": -1, "index": int(i)} for i in init]
    base = {"experiment": p["experiment"], "run_id": params_mod.run_id(p), "dataset": p["dataset"],
            "model": p["model"], "strategy": label, "seed": seed}
    model = None
    for cycle in range(p["cycles"] + 1):
        if model is None or not p["warm_start"]:
            torch.manual_seed(derive_seed(seed, cycle, "init-model"))
            model = build()
        hook = strategy.training_hook(model, data)
        torch.manual_seed(derive_seed(seed, cycle, "train"))  # dropout masks
        labeled = pool.labeled
        t0 = time.perf_counter()
        fit(model, data.x_train[labeled], y[labeled], cfg, task=data.task, device=device,
            generator=_generator(seed, cycle, "shuffle"), hook=hook)
        train_s = time.perf_counter() - t0
        scores = evaluate(model, data.x_test, data.y_test, task=data.task,
                          batch_size=p["eval_batch_size"], device=device,
                          target_scale=float(data.meta.get("target_scale", 1.0)))
        n_lab = pool.n_labeled
        for metric, value in [*scores.items(), ("train_seconds", train_s)]:
            rows.append({**base, "cycle": cycle, "n_labeled": n_lab, "metric": metric, "value": value})
        for name in p["cycle_metrics"]:  # extra per-cycle diagnostics (alstudy.cycle_metrics)
            for metric, value in cycle_metrics.compute(name, model, data, pool, strategy, p,
                                                       _generator(seed, cycle, "metric", name)):
                rows.append({**base, "cycle": cycle, "n_labeled": n_lab, "metric": metric,
                             "value": value})
        if bar is not None:
            bar.set_postfix_str(f"{label} seed={seed} cycle={cycle} "
                                + " ".join(f"{k}={v:.4g}" for k, v in scores.items()))
        if cycle == p["cycles"]:
            if bar is not None:
                bar.update(1)
            break
        context = strategies.SelectionContext(train_config=cfg, build_model=build, device=device,
                                              cycle=cycle, seed=seed)
        t0 = time.perf_counter()
        chosen = strategy.select(model, data, pool, p["budget"], _generator(seed, cycle, "select"),
                                 context)
        select_s = time.perf_counter() - t0
        pool.add(chosen)
        picks += [{"cycle": cycle, "index": int(i)} for i in chosen]
        rows.append({**base, "cycle": cycle, "n_labeled": n_lab, "metric": "select_seconds",
                     "value": select_s})
        if bar is not None:
            bar.update(1)
    sel = pd.DataFrame(picks)
    sel.insert(0, "seed", seed)
    sel.insert(0, "strategy", label)
    return pd.DataFrame(rows, columns=COLUMNS), sel


def run(params: dict[str, Any] | None = None, *, data: data_mod.Dataset | None = None,
        **overrides: Any) -> pd.DataFrame:
    """Run every (strategy, seed) unit of an experiment and return its tidy results.

    Args:
        params: Parameters (validated here; see :mod:`alstudy.params`).
        data: An already loaded dataset to reuse (must match ``params['dataset']``).
        **overrides: Parameter overrides.

    Returns:
        The combined tidy DataFrame (also written to ``<run_dir>/metrics.csv``).

    Raises:
        alstudy.params.ParamError: Bad parameters (before any training).
    """
    p = params_mod.validate(params, **overrides)
    if p["threads"]:
        torch.set_num_threads(p["threads"])
    device = resolve_device(p["device"])
    if data is None:
        data = data_mod.load(p["dataset"], root=p["data_root"], seed=p["data_seed"],
                             max_train=p["max_train"], max_test=p["max_test"])
    params_mod.check_against_data(p, data.n_train, data.num_classes, data.task)
    params_mod.check_model(p, data.input_shape, data.num_classes or 1)
    specs = params_mod.strategy_specs(p)
    built = {label: strategies.build(name, **opts) for label, (name, opts) in specs.items()}

    out = run_dir(p)
    saved = out / "params.yaml"
    if saved.exists():
        previous = yaml.safe_load(saved.read_text())
        if not params_mod.semantic_equal(previous, p):
            raise params_mod.ParamError(
                f"{out} holds a run with different parameters; set a new 'run_id' or remove the folder")
    atomic_write_text(yaml.safe_dump(p, sort_keys=False), saved)
    atomic_write_text(json.dumps(_environment(device), indent=2), out / "environment.json")

    units = [(label, seed) for label in built for seed in p["seeds"]]
    todo = [(l, s) for l, s in units if not (out / "units" / f"{_unit_stem(l, s)}.csv").exists()]
    bar = tqdm(total=len(todo) * (p["cycles"] + 1), desc=p["experiment"], disable=not p["progress"],
               mininterval=2.0)
    for label, seed in todo:
        metrics, sel = run_unit(p, data, label, built[label], seed, device, bar)
        stem = _unit_stem(label, seed)
        atomic_write_csv(sel, out / "units" / f"{stem}.selected.csv")
        atomic_write_csv(metrics, out / "units" / f"{stem}.csv")  # written last: marks the unit done
        _combine(out, units)
    bar.close()
    return _combine(out, units)


def _combine(out: Path, units: list[tuple[str, int]]) -> pd.DataFrame:
    """Rebuild ``metrics.csv`` from the finished unit files of this run's units."""
    frames = [pd.read_csv(f) for l, s in units
              if (f := out / "units" / f"{_unit_stem(l, s)}.csv").exists()]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    atomic_write_csv(frame, out / "metrics.csv")
    return frame
