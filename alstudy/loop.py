"""The active-learning cycle: params -> tidy results on disk, resumable unit by unit.

A *unit* is one (strategy label, seed) run of ``cycles`` acquisitions. Each finished unit is
written atomically to ``<results_dir>/<experiment>/<run_id>/units/`` with a record of what it
ran with; the combined ``metrics.csv`` is rebuilt from every finished unit file of the folder
after each unit. A rerun of the same params skips finished units, so an interrupted run loses
at most the unit in flight; a unit in flight in another process is skipped and waited for
(see :mod:`alstudy.records` for the records and locks).

Seeding: the initial set, the model initialisation of each cycle and the training order depend
only on (seed, cycle), so every strategy of a seed starts from the same labels and weights;
the selection generator depends on (seed, cycle) too. Same params + seed -> same indices.
So a unit of the same configuration already finished in another run folder (another experiment
name or label, at least as many cycles) is copied rather than run again: see
:mod:`alstudy.unit_reuse`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from tqdm import tqdm

from . import data as data_mod
from . import cycle_metrics, models, params as params_mod, pool as pool_mod, records, strategies
from . import unit_reuse
from .results import COLUMNS, atomic_write_csv, atomic_write_text, remove_stale_temp_files
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
    return TrainConfig(epochs=p["epochs"], batch_size=p["batch_size"], batch_split=p["batch_split"],
                       optimizer=p["optimizer"],
                       lr=float(p["lr"]), momentum=float(p["momentum"]),
                       weight_decay=float(p["weight_decay"]), lr_milestones=list(p["lr_milestones"]),
                       lr_gamma=float(p["lr_gamma"]), augment=p["augment"],
                       sam_rho=float(p["sam_rho"]), sam_base=p["sam_base"])


def run_dir(p: dict[str, Any]) -> Path:
    """``<results_dir>/<experiment>/<run_id>`` of validated params."""
    return Path(p["results_dir"]) / p["experiment"] / params_mod.run_id(p)


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
            gen = _generator(*cycle_metrics.generator_parts(name, seed, cycle))
            for metric, value in cycle_metrics.compute(name, model, data, pool, strategy, p, gen):
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
        The tidy rows of every finished unit in the run folder, this call's and earlier ones'
        (also written to ``<run_dir>/metrics.csv``).

    Raises:
        alstudy.params.ParamError: Bad parameters (before any training).
    """
    p = params_mod.validate(params, **overrides)
    threads = p["threads"] or records.default_threads()
    device = resolve_device(p["device"])
    if data is None:
        data = data_mod.load_for(p)
    data_mod.check_loaded_as(data, p)
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
    for folder in (out, out / "units", out / "attempts"):  # left by a kill during a write
        remove_stale_temp_files(folder)

    units = [(label, seed) for seed in p["seeds"] for label in built]  # seed-major: an interrupted run leaves whole seeds
    done = lambda label, seed: (out / "units" / f"{records.unit_stem(label, seed)}.csv").exists()
    todo = [(l, s) for l, s in units if not done(l, s)]
    env = records.environment(device, threads)
    if todo:
        finished = [f.stem for f in _unit_files(out)]
        for warning in records.check_resume(out, env, finished):
            print(f"alstudy: warning: {warning}", file=sys.stderr)
    torch.set_num_threads(threads)
    order = list(built)
    donors = (unit_reuse.DonorIndex(p, built, unit_reuse.data_fingerprint(data), env, out)
              if todo else None)  # the data are hashed only when a unit is to be run
    ran, copied, elsewhere = _run_units(p, data, built, todo, device, env, out, done, donors)
    frame = _combine(out, order)
    skipped = len(units) - len(todo)
    if skipped or elsewhere or copied:
        print(f"alstudy: {skipped} of {len(units)} unit(s) were already finished and skipped"
              + (f", {elsewhere} finished by another process" if elsewhere else "")
              + (f", {copied} copied" if copied else "")
              + f", {ran} run now; results: {out}", file=sys.stderr)
    return frame


def _run_units(p: dict[str, Any], data: data_mod.Dataset, built: dict[str, strategies.Strategy],
               todo: list[tuple[str, int]], device: torch.device, env: dict[str, Any], out: Path,
               done: Any, donors: unit_reuse.DonorIndex | None) -> tuple[int, int, int]:
    """Run (or copy, see :mod:`alstudy.unit_reuse`) the unfinished units, each under its lock;
    wait for those in flight elsewhere.

    Returns:
        ``(units run here, units copied, units finished by another process meanwhile)``.
    """
    if not todo:
        return 0, 0, 0
    attempt = records.Attempt(out, p, env, [records.unit_stem(l, s) for l, s in todo])
    bar = tqdm(total=len(todo) * (p["cycles"] + 1), desc=p["experiment"], disable=not p["progress"],
               mininterval=2.0)
    waiting = []
    try:
        for label, seed in todo:
            lock = records.UnitLock(out / "units" / f".{records.unit_stem(label, seed)}.lock")
            if lock.try_acquire():
                _run_locked(p, data, built, label, seed, device, env, out, done, lock, attempt, bar,
                            donors)
            else:
                waiting.append((label, seed, lock))
        for label, seed, lock in waiting:  # in flight elsewhere: wait, and take over if it died
            if not done(label, seed):
                print(f"alstudy: {label} seed {seed} is running in {lock.holder()}; waiting for it",
                      file=sys.stderr)
                lock.acquire()
            _run_locked(p, data, built, label, seed, device, env, out, done, lock, attempt, bar,
                        donors)
    except BaseException as err:
        attempt.close(err)
        raise
    finally:
        bar.close()
    attempt.close()
    copied = attempt.record.get("copied", {})
    if copied:
        sources = sorted({str(Path(origin).parent.parent) for origin in copied.values()})
        print(f"alstudy: {len(copied)} unit(s) copied from finished units of the same "
              f"configuration in {', '.join(sources)} (reuse_units: false runs them here)",
              file=sys.stderr)
    return len(attempt.record["ran"]), len(copied), len(attempt.record["finished_elsewhere"])


def _run_locked(p: dict[str, Any], data: data_mod.Dataset, built: dict[str, strategies.Strategy],
                label: str, seed: int, device: torch.device, env: dict[str, Any], out: Path,
                done: Any, lock: records.UnitLock, attempt: records.Attempt, bar: tqdm,
                donors: unit_reuse.DonorIndex) -> None:
    """Run (or copy) one unit whose lock is held, write its files (the tidy CSV last), release
    the lock; nothing is run when another process finished the unit first."""
    stem = records.unit_stem(label, seed)
    try:
        if done(label, seed):  # finished by another process since the listing
            attempt.finished_elsewhere(stem)
            return
        donor = donors.find(label, seed) if p["reuse_units"] else None
        copy = unit_reuse.load(donor, p, label) if donor is not None else None
        if copy is not None:
            metrics, sel, record = copy
            if bar is not None:
                bar.update(p["cycles"] + 1)
        else:
            started = time.time()
            metrics, sel = run_unit(p, data, label, built[label], seed, device, bar)
            record = {**env, "strategy": label, "seed": seed, "host": attempt.record["host"],
                      "pid": attempt.record["pid"], "started": started,
                      "seconds": time.time() - started, "fingerprint": donors.prints[label]}
        atomic_write_csv(sel, out / "units" / f"{stem}.selected.csv")
        atomic_write_text(json.dumps(record, indent=2), out / "units" / f"{stem}.json")
        with records.run_lock(out):
            records.record_finished_unit(out, p, env, seed)
        atomic_write_csv(metrics, out / "units" / f"{stem}.csv")  # written last: marks the unit done
        if copy is not None:
            attempt.copied(stem, record["copied_from"])
        else:
            attempt.ran(stem)
        _combine(out, list(built))
    finally:
        lock.release()


def _unit_files(out: Path) -> list[Path]:
    """Every finished unit's tidy CSV in the run folder (whichever invocation wrote it)."""
    return [f for f in sorted((out / "units").glob("*.csv"))
            if not f.name.endswith(".selected.csv") and not f.name.startswith(".")]


def _combine(out: Path, order: list[str]) -> pd.DataFrame:
    """Rebuild ``metrics.csv`` from every finished unit file of the run folder.

    Units are ordered by strategy (in ``order``, the params' order) and seed, so the file does
    not depend on which invocation finished last. It is rewritten only when its content
    changes, under the run lock (rebuilt there again, so a concurrent unit is never dropped).
    """
    def build() -> tuple[pd.DataFrame, str]:
        rank = {label: i for i, label in enumerate(order)}
        frames = [pd.read_csv(f) for f in _unit_files(out)]
        frames.sort(key=lambda f: (rank.get(f["strategy"].iloc[0], len(rank)),
                                   str(f["strategy"].iloc[0]), int(f["seed"].iloc[0])))
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
        return frame, frame.to_csv(index=False)

    path = out / "metrics.csv"
    frame, text = build()
    if path.exists() and path.read_text() == text:
        return frame
    with records.run_lock(out):
        frame, text = build()
        atomic_write_text(text, path)
    return frame
