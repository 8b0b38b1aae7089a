"""Dry runs: a preset with its real models, input shapes, optimizer and code paths, at toy size.

``alstudy run PRESET --dry-run`` and ``alstudy notebook NAME -f PRESET --dry-run`` shrink only
what sets the *amount* of work: one seed, one cycle of one epoch, a small pool, a few candidates,
a small test set, and few repetitions inside strategies (noise draws K, dropout passes T,
committee members M, VAE steps, ascent steps). They keep everything that decides which code runs
and at which shapes: the dataset (full-size inputs), the model and its options, the optimizer, its
schedule, augmentation, batch size, the strategies with their other options and the per-cycle
metrics (on a couple of sampled examples each). A preset that would crash at paper shapes then
crashes here, in seconds to minutes on a CPU. Results go to a fresh scratch folder, never to the
results folder.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

from . import params as params_mod

__all__ = ["SEEDS", "CYCLES", "EPOCHS", "INITIAL", "BUDGET", "CANDIDATES", "TEST",
           "CYCLE_METRIC_SAMPLES", "STRATEGY_CAPS",
           "NOTEBOOK_CAPS", "scratch_dir", "loop_params", "notebook_params"]

SEEDS = 1  # seeds kept (the first ones)
CYCLES = 1  # acquisition cycles (cycle 0 trains, selects, cycle 1 retrains)
EPOCHS = 1  # training epochs per cycle
INITIAL = 4  # initial labeled set (at least one per class where the mode needs classes)
BUDGET = 4  # labels per cycle
CANDIDATES = 8  # unlabeled candidates scored per cycle
TEST = 8  # test examples
CYCLE_METRIC_SAMPLES = 2  # unlabeled examples each per-cycle metric samples

#: Strategy options that only repeat work, with their dry-run caps (applied where a strategy has them).
STRATEGY_CAPS: dict[str, int] = {"K": 2, "T": 2, "M": 2, "steps": 2, "ascent_steps": 2,
                                 "epochs": EPOCHS, "candidates": CANDIDATES}


def _first(n: int) -> Callable[[Any], Any]:
    return lambda v: v[:n] if isinstance(v, list) else v


def _ends(v: Any) -> Any:
    """The smallest and largest of a list (the log N check reads only K >= 64)."""
    return [v[0], v[-1]] if isinstance(v, list) and len(v) > 1 else v


def _at_most(n: int) -> Callable[[Any], Any]:
    return lambda v: min(v, n) if isinstance(v, int) and not isinstance(v, bool) else v


#: Caps of the parameters of notebooks with their own parameters (the theory notebooks), by key.
NOTEBOOK_CAPS: dict[str, Callable[[Any], Any]] = {
    "epochs": _at_most(EPOCHS), "round_epochs": _at_most(EPOCHS), "rounds": _at_most(CYCLES),
    "n_labeled": _at_most(10), "initial_size": _at_most(10),
    "budget": _at_most(1), "candidates": _at_most(CANDIDATES),  # budget: λ₁ of each pick
    "n_samples": _at_most(4), "n_pairs": _at_most(4), "n_badge": _at_most(6), "n_bound": _at_most(2),
    "n_margin": _at_most(4), "n_round_eval": _at_most(1),
    "repeats": _at_most(2), "pair_repeats": _at_most(1),
    "Ks": _first(2), "pair_Ks": _ends, "K_zeta": _at_most(2), "badge_K": _at_most(2),
    "pair_Ns": lambda v: [2, 4] if isinstance(v, list) else v,  # several N, all within n_pairs
    "taylor_rhos": _first(1), "margin_rhos": _first(2),
    # λ₁ (Lanczos) needs about 20 Hessian-vector products at any tolerance; tighter ones need more
    "eig_tol": lambda v: max(v, 1e-2) if isinstance(v, float) else v,
    "seeds": _first(SEEDS),
}


def scratch_dir() -> Path:
    """A new, empty scratch folder for one dry run (under the system's temporary folder)."""
    return Path(tempfile.mkdtemp(prefix="alstudy-dry-run-"))


def _strategies(p: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every strategy in the mapping form, with the repetition options capped."""
    from . import strategies

    out = {}
    for label, (name, opts) in params_mod.strategy_specs(p).items():
        effective = strategies.build(name, **opts).opts  # defaults and variant values included
        capped = dict(opts)
        for key, cap in STRATEGY_CAPS.items():
            value = effective.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > cap:
                capped[key] = cap
        out[label] = {"strategy": name, **capped}
    return out


def loop_params(p: dict[str, Any], results_dir: str | Path) -> dict[str, Any]:
    """The dry-run version of validated AL-loop parameters.

    The dataset is loaded once to size the protocol to it: the initial set keeps one example per
    class where ``initial_mode`` needs classes, and the pool keeps at least ten per class.

    Args:
        p: Validated parameters (:func:`alstudy.params.validate`).
        results_dir: Scratch folder that replaces ``results_dir``.

    Returns:
        Validated parameters of the dry run.

    Raises:
        alstudy.params.ParamError: Bad parameters.
        alstudy.data.DatasetUnavailable: The dataset is not on this machine.
    """
    from . import data as data_mod

    ds = data_mod.load(p["dataset"], root=p["data_root"], seed=p["data_seed"],
                       max_train=p["max_train"], max_test=p["max_test"])
    classes = ds.num_classes if p["initial_mode"] != "random" else None
    initial = min(p["initial_size"], max(INITIAL, classes or 0))
    budget = min(p["budget"], BUDGET)
    candidates = p["candidates"] if p["candidates"] == "all" else min(p["candidates"], max(CANDIDATES, budget))
    pool = max(initial + budget * CYCLES + CANDIDATES, 10 * (ds.num_classes or 1))
    n_test = int(ds.x_test.shape[0])
    q = dict(p, seeds=p["seeds"][:SEEDS], cycles=min(p["cycles"], CYCLES), epochs=EPOCHS,
             lr_milestones=[EPOCHS] if p["lr_milestones"] else [],
             initial_size=initial, budget=budget, candidates=candidates,
             max_train=pool if pool < ds.n_train else p["max_train"],
             max_test=TEST if TEST < n_test else p["max_test"],
             cycle_metric_samples=CYCLE_METRIC_SAMPLES if p["cycle_metrics"] else p["cycle_metric_samples"],
             results_dir=str(results_dir))
    q["strategies"] = _strategies(q)
    return params_mod.validate(q)


def notebook_params(defaults: dict[str, Any], given: dict[str, Any],
                    results_dir: str | Path) -> dict[str, Any]:
    """The dry-run overrides of a notebook with its own parameters (see :data:`NOTEBOOK_CAPS`).

    Args:
        defaults: The notebook's ``parameters`` cell.
        given: Overrides (preset and ``-p`` values).
        results_dir: Scratch folder that replaces ``results_dir``.

    Returns:
        ``given`` with every capped key set and ``results_dir`` replaced.
    """
    merged = {**defaults, **given}
    out = dict(given)
    for key, cap in NOTEBOOK_CAPS.items():
        if key in merged and cap(merged[key]) != merged[key]:
            out[key] = cap(merged[key])
    if "results_dir" in merged:
        out["results_dir"] = str(results_dir)
    return out
