"""The full-data ceiling of an AL run: the same model trained once on the whole training pool.

AL learning curves are read against the score a model reaches with every label (the "100%
labels" reference line). :func:`run` trains the run's model on all ``n_train`` examples with
the run's training settings, evaluates it on the run's test set, and writes

* ``<run_dir>/ceiling.csv`` — tidy rows (:data:`alstudy.results.COLUMNS`) with strategy
  ``full_data``, cycle −1 and ``n_labeled`` = the pool size;
* ``<run_dir>/ceiling_examples.npz`` — for dense tasks, a few test images with their targets
  and the ceiling model's predictions (``image [n, H, W]`` or ``[n, 3, H, W]`` in [0, 1],
  ``target`` / ``pred`` ``[n, H, W]``), for example figures that regenerate without training.

A rerun with the same seeds reads the CSV instead of training again. The model
initialisation and training order depend only on (seed, "ceiling"), as the loop's do on
(seed, cycle).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from . import data as data_mod
from . import models, params as params_mod
from .loop import derive_seed, run_dir, train_config
from .results import COLUMNS, atomic_write_csv
from .train import evaluate, fit, resolve_device

__all__ = ["CEILING_LABEL", "run", "read", "examples"]

#: Strategy label of the ceiling rows.
CEILING_LABEL = "full_data"


def read(folder: str | Path) -> pd.DataFrame:
    """The ``ceiling.csv`` of a run folder (an empty frame with :data:`COLUMNS` if absent)."""
    path = Path(folder) / "ceiling.csv"
    return pd.read_csv(path) if path.exists() else pd.DataFrame(columns=COLUMNS)


def examples(folder: str | Path) -> dict[str, np.ndarray] | None:
    """The stored example predictions of a run folder (``None`` if there are none)."""
    path = Path(folder) / "ceiling_examples.npz"
    if not path.exists():
        return None
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def _example_arrays(model: torch.nn.Module, data: data_mod.Dataset, n: int,
                    device: torch.device) -> dict[str, np.ndarray]:
    x = data.x_test[:n]  # [n, C, H, W]
    with torch.no_grad():
        pred = model.to(device).eval()(x.to(device)).argmax(1).cpu()  # [n, H, W]
    mean = torch.tensor(data.meta.get("channel_mean", [0.0] * x.shape[1])).view(1, -1, 1, 1)
    std = torch.tensor(data.meta.get("channel_std", [1.0] * x.shape[1])).view(1, -1, 1, 1)
    image = (x * std + mean).clamp(0, 1)  # back to [0, 1]
    image = image[:, 0] if image.shape[1] == 1 else image
    return {"image": image.numpy().astype(np.float32), "target": data.y_test[:n].numpy(),
            "pred": pred.numpy()}


def _write_segmentation_examples(model: torch.nn.Module, data: data_mod.Dataset, out: Path,
                                 n: int, device: torch.device) -> None:
    arrays = _example_arrays(model, data, n, device)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".ceiling_examples.tmp.npz"
    np.savez_compressed(tmp, **arrays)
    tmp.replace(out / "ceiling_examples.npz")


#: Writer of a task's example predictions: ``(model, data, run folder, n, device)``.
ExampleWriter = Callable[[torch.nn.Module, data_mod.Dataset, Path, int, torch.device], None]


def run(params: dict[str, Any], *, data: data_mod.Dataset | None = None,
        seeds: Sequence[int] | None = None, n_examples: int = 4, label: str = CEILING_LABEL,
        train_seconds: bool = False,
        example_writers: Mapping[str, ExampleWriter] | None = None) -> pd.DataFrame:
    """Train the run's model on the whole training pool and record its test metrics.

    Args:
        params: The run's parameters (validated here).
        data: The already loaded dataset (default: loaded as :func:`alstudy.loop.run` loads it).
        seeds: Seeds of the ceiling models (default: the run's first seed only).
        n_examples: Test images whose predictions are stored (dense tasks; 0 = none).
        label: Strategy label of the rows.
        train_seconds: Also record the training time as metric ``train_seconds``.
        example_writers: Per task, the writer of the first seed's example predictions
            (default: segmentation's ``ceiling_examples.npz``).

    Returns:
        The tidy ceiling rows (also in ``<run_dir>/ceiling.csv``).
    """
    p = params_mod.validate(params)
    seeds = list(seeds) if seeds is not None else [p["seeds"][0]]
    out = run_dir(p)
    stored = read(out)
    if not stored.empty and set(seeds) <= set(stored["seed"]):
        return stored[stored["seed"].isin(seeds)].reset_index(drop=True)
    if p["threads"]:
        torch.set_num_threads(p["threads"])
    device = resolve_device(p["device"])
    if data is None:
        data = data_mod.load_for(p)
    data_mod.check_loaded_as(data, p)
    writers = example_writers
    if writers is None:
        writers = {"segmentation": _write_segmentation_examples}
    cfg = train_config(p)
    rows = []
    for i, seed in enumerate(seeds):
        torch.manual_seed(derive_seed(seed, "ceiling", "init-model"))
        model = models.build(p["model"], data.input_shape, data.num_classes or 1, **p["model_options"])
        torch.manual_seed(derive_seed(seed, "ceiling", "train"))
        gen = torch.Generator().manual_seed(derive_seed(seed, "ceiling", "shuffle"))
        t0 = time.perf_counter()
        fit(model, data.x_train, data.y_train, cfg, task=data.task, device=device, generator=gen)
        train_s = time.perf_counter() - t0
        scores = evaluate(model, data.x_test, data.y_test, task=data.task,
                          batch_size=p["eval_batch_size"], device=device,
                          target_scale=float(data.meta.get("target_scale", 1.0)))
        if train_seconds:
            scores = {**scores, "train_seconds": train_s}
        for metric, value in scores.items():
            rows.append({"experiment": p["experiment"], "run_id": params_mod.run_id(p),
                         "dataset": p["dataset"], "model": p["model"], "strategy": label,
                         "seed": seed, "cycle": -1, "n_labeled": data.n_train, "metric": metric,
                         "value": value})
        if i == 0 and n_examples > 0 and data.task in writers:
            writers[data.task](model, data, out, n_examples, device)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    atomic_write_csv(frame, out / "ceiling.csv")
    return frame
