"""Running the theory notebooks: their defaults, run folder and saved parameters, and the
trained model they analyse.

The theory checks (:mod:`alstudy.theory`) are not active-learning runs: each notebook trains one
model on a labeled subset (:func:`trained_model`) and measures it. Their parameters are not
:data:`alstudy.params.SCHEMA` keys, so each notebook validates them against its defaults here
(:data:`NOISE_STABILITY_DEFAULTS`, :data:`SAAL_BOUND_DEFAULTS`) and writes them as ``params.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import data as data_mod
from . import models as models_mod
from . import pool as pool_mod
from . import train as train_mod

__all__ = ["NOISE_STABILITY_DEFAULTS", "SAAL_BOUND_DEFAULTS", "TrainedModel", "trained_model",
           "notebook_run_dir", "save_params", "use_threads"]

_RESULTS_DIR = os.environ.get("ALSTUDY_RESULTS", "results")

#: Defaults of ``notebooks/theory_noise_stability.ipynb`` (its ``parameters`` cell, key for key).
NOISE_STABILITY_DEFAULTS: dict[str, Any] = {
    "experiment": "theory_noise_stability",
    "results_dir": _RESULTS_DIR,
    "run_id": None,
    "threads": 1,
    "dataset": "digits",
    "model": "small_cnn",
    "model_options": {"width": 16, "hidden": 64},
    "n_labeled": 100,
    "epochs": 50,
    "batch_size": 16,
    "lr": 0.001,
    "seed": 0,
    "part": "features",
    "output": "auto",
    "include_bias": True,
    "zeta": 0.001,
    "n_samples": 24,
    "Ks": [1, 2, 4, 8, 16, 32, 64, 128, 256],
    "repeats": 3,
    "difference": "finite64",
    "zetas": [1e-09, 1e-08, 1e-07, 1e-06, 1e-05, 0.0001, 0.001, 0.01, 0.1, 1.0, 10.0],
    "K_zeta": 8,
    "n_pairs": 20,
    "pair_Ns": [5, 10, 20],
    "scalar_output": 0,
    "pair_Ks": [4, 16, 64, 256, 1024],
    "pair_repeats": 2,
    "eps": [0.1, 0.2, 0.3],
    "n_badge": 150,
    "badge_K": 30,
}

#: Defaults of ``notebooks/theory_saal_bound.ipynb`` (its ``parameters`` cell, key for key).
SAAL_BOUND_DEFAULTS: dict[str, Any] = {
    "experiment": "theory_saal_bound",
    "results_dir": _RESULTS_DIR,
    "run_id": None,
    "threads": 1,
    "dataset": "digits",
    "model": "small_cnn",
    "model_options": {"width": 16, "hidden": 64},
    "n_labeled": 100,
    "epochs": 50,
    "batch_size": 16,
    "lr": 0.001,
    "seed": 0,
    "rho": 0.05,
    "taylor_rhos": [0.2, 0.1, 0.02, 0.01, 0.005, 0.002, 0.001],
    "n_bound": 30,
    "eig_tol": 1e-06,
    "margin_rhos": [0.01, 0.05, 0.1],
    "n_margin": 300,
}

@dataclass
class TrainedModel:
    """A model trained on a labeled subset, with its data.

    Attributes:
        model: The trained model (eval mode, CPU).
        data: The :class:`alstudy.data.Dataset`.
        labeled: Training indices used for training ``[n_labeled]``.
        metrics: Test metrics (``{"accuracy": ...}`` or ``{"mae": ...}``).
    """

    model: nn.Module
    data: data_mod.Dataset
    labeled: torch.Tensor
    metrics: dict[str, float]

    @property
    def unlabeled(self) -> torch.Tensor:
        """Training indices not used for training (the unlabeled pool), ascending."""
        mask = torch.ones(self.data.n_train, dtype=torch.bool)
        mask[self.labeled] = False
        return mask.nonzero().flatten()

    def pool_sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """``min(n, pool size)`` random unlabeled indices (ascending), seeded."""
        pool = self.unlabeled
        pick = torch.randperm(pool.numel(), generator=torch.Generator().manual_seed(seed))[:n]
        return pool[pick].sort().values


def trained_model(dataset: str = "digits", model: str = "small_cnn", n_labeled: int = 100,
                  epochs: int = 30, seed: int = 0, *, model_options: dict | None = None,
                  batch_size: int = 32, lr: float = 1e-3, optimizer: str = "adam",
                  data_seed: int = 0, labeled: torch.Tensor | None = None) -> TrainedModel:
    """Train a registered model on a random (class-balanced) labeled subset.

    Args:
        dataset: A name of :data:`alstudy.data.DATASETS` (``digits``, ``mnist``, ``ames`` …).
        model: A name of :data:`alstudy.models.MODELS`.
        n_labeled: Size of the labeled subset (balanced over classes for classification).
        epochs: Training epochs.
        seed: Seeds the subset, the initial weights and the batch order.
        model_options: Model options, e.g. ``{"width": 8, "hidden": 32}``.
        batch_size: Training batch size.
        lr: Learning rate.
        optimizer: ``adam``, ``sgd``, ``sam`` or ``asam``.
        data_seed: Seed of the dataset's train/test split.
        labeled: Train on these indices instead of drawing ``n_labeled``.

    Returns:
        A :class:`TrainedModel` (model in eval mode).

    Raises:
        ValueError: Unknown dataset, model or option, or ``n_labeled`` outside ``[1, pool size]``.
    """
    ds = data_mod.load(dataset, seed=data_seed)
    gen = torch.Generator().manual_seed(seed)
    if labeled is None:
        if not 1 <= n_labeled <= ds.n_train:
            raise ValueError(f"n_labeled = {n_labeled} is invalid; allowed: 1..{ds.n_train}")
        balanced = ds.task == "classification" and n_labeled >= (ds.num_classes or 1)
        labeled = pool_mod.initial_indices(ds.y_train, n_labeled, "balanced" if balanced else "random",
                                           gen, ds.num_classes)
    torch.manual_seed(seed)
    net = models_mod.build(model, ds.input_shape, ds.num_classes or 1, **(model_options or {}))
    cfg = train_mod.TrainConfig(epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr)
    train_mod.fit(net, ds.x_train[labeled], ds.y_train[labeled], cfg, task=ds.task, generator=gen)
    metrics = train_mod.evaluate(net, ds.x_test, ds.y_test, task=ds.task,
                                 target_scale=float(ds.meta.get("target_scale", 1.0)))
    return TrainedModel(net.eval(), ds, labeled, metrics)


def use_threads(threads: int | None) -> int:
    """Set torch's CPU threads (``None`` keeps the current setting) and return the setting.

    Small models run fastest on one thread; on a busy machine more threads mostly spin.

    Args:
        threads: Number of threads >= 1, or ``None``.

    Returns:
        ``torch.get_num_threads()`` afterwards.

    Raises:
        ValueError: ``threads`` < 1.
    """
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"parameter 'threads' = {threads!r} is invalid; allowed: integer >= 1 or None")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def notebook_run_dir(cfg: dict[str, Any], notebook: str) -> Path:
    """The folder a theory notebook writes to, the same one ``alstudy notebook`` executes it into.

    ``<results_dir>/<experiment>/<run_id>``, where ``run_id`` defaults to
    ``<notebook>-<first 10 hex digits of the SHA-1 of the sorted-JSON parameters>``, as
    :func:`alstudy.notebooks.run_dir` computes it for notebooks with their own parameters.

    Args:
        cfg: The notebook's complete parameters (defaults merged with overrides).
        notebook: The notebook's file stem, e.g. ``"theory_noise_stability"``.

    Returns:
        The run folder (not created).
    """
    digest = hashlib.sha1(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:10]
    base = Path(cfg.get("results_dir") or _RESULTS_DIR) / cfg.get("experiment", notebook)
    return base / (cfg.get("run_id") or f"{notebook}-{digest}")


def save_params(cfg: dict[str, Any], folder: str | Path) -> Path:
    """Write the resolved parameters as ``params.json`` (atomic) and return the path.

    Args:
        cfg: Parameters.
        folder: Run folder.

    Returns:
        Path of the written file.
    """
    from .results import atomic_write_text

    path = Path(folder) / "params.json"
    atomic_write_text(json.dumps(cfg, indent=2, sort_keys=True, default=str) + "\n", path)
    return path

