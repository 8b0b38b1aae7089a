"""The ceiling of an AL run: its model and training recipe fitted once on the whole training pool.

The usual "100% labels" reference of AL plots: if the AL models end far below it, the
learning curves compare models that have not learned, and every strategy looks alike. The
result is stored in the run folder as its own tidy CSV, ``ceiling.csv`` (strategy label
``full training set``, ``cycle = -1``, ``n_labeled`` = pool size), next to ``metrics.csv``;
a rerun with the same parameters reads it back instead of training again.

For detection runs the ceiling model's detections on the first test images are stored too
(``examples.csv``: one row per true or predicted box; ``examples_images.npz``: the images), so
the example figure can be redrawn from the run folder alone.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import ceiling as full_data
from .. import data as data_mod
from ..results import atomic_write_csv

__all__ = ["CEILING_LABEL", "train_ceiling", "read_ceiling", "read_examples", "ceiling_fraction"]

CEILING_LABEL = "full training set"


def train_ceiling(params: dict[str, Any], *, data: data_mod.Dataset | None = None,
                  seed: int | None = None, examples: int = 8) -> pd.DataFrame:
    """Train the run's model once on every training example and evaluate it on the test set.

    :func:`alstudy.ceiling.run` with this module's label, the training time and, for
    detection, the example detections. Same model, optimizer, epochs, batch size and
    augmentation as every AL cycle of the run; the model initialisation and shuffling are
    seeded by ``(seed, "ceiling")``.

    Args:
        params: The run's parameters (validated here).
        data: The loaded dataset (loaded from the params when ``None``).
        seed: Seed of the single training run (default: the run's first seed).
        examples: Detection only: test images whose detections are stored.

    Returns:
        Tidy rows (``COLUMNS``): the test metrics and ``train_seconds`` (also ``ceiling.csv``).
    """
    return full_data.run(params, data=data, seeds=None if seed is None else [seed],
                         n_examples=examples, label=CEILING_LABEL, train_seconds=True,
                         example_writers={"detection": _write_examples})


def _write_examples(model, data: data_mod.Dataset, out: Path, n: int, device=None) -> None:
    from .train import predict_detections

    n = min(n, data.x_test.shape[0])
    dets = predict_detections(model, data.x_test[:n])
    rows = []
    for i in range(n):
        boxes, labels, _ = data.y_test[i]
        rows += [{"image": i, "kind": "truth", "x0": b[0], "y0": b[1], "x1": b[2], "y1": b[3],
                  "label": int(l), "score": 1.0} for b, l in zip(boxes.tolist(), labels.tolist())]
        d = dets[i]
        rows += [{"image": i, "kind": "prediction", "x0": b[0], "y0": b[1], "x1": b[2], "y1": b[3],
                  "label": int(l), "score": float(s)}
                 for b, l, s in zip(d["boxes"].tolist(), d["labels"].tolist(), d["scores"].tolist())]
    atomic_write_csv(pd.DataFrame(rows, columns=["image", "kind", "x0", "y0", "x1", "y1", "label", "score"]),
                     out / "examples.csv")
    buf = io.BytesIO()
    np.savez_compressed(buf, images=data.x_test[:n].numpy(),
                        class_names=np.array(data.meta.get("class_names", [str(c) for c in range(data.num_classes)])))
    tmp = out / ".examples_images.npz.tmp"
    tmp.write_bytes(buf.getvalue())
    tmp.replace(out / "examples_images.npz")


#: ``ceiling.csv`` of a run folder (empty frame when absent).
read_ceiling = full_data.read


def read_examples(run_dir: str | Path):
    """Stored detection examples of a run folder.

    Returns:
        ``(images uint8 [n, C, H, W], truths [(boxes, labels)], predictions [(boxes, labels,
        scores)], class_names)`` or ``None`` when the run folder has none.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "examples.csv").exists() or not (run_dir / "examples_images.npz").exists():
        return None
    with np.load(run_dir / "examples_images.npz") as z:
        images, names = z["images"], [str(c) for c in z["class_names"]]
    rows = pd.read_csv(run_dir / "examples.csv")
    truths, preds = [], []
    for i in range(len(images)):
        t = rows[(rows["image"] == i) & (rows["kind"] == "truth")]
        q = rows[(rows["image"] == i) & (rows["kind"] == "prediction")]
        truths.append((t[["x0", "y0", "x1", "y1"]].to_numpy(), t["label"].to_numpy()))
        preds.append((q[["x0", "y0", "x1", "y1"]].to_numpy(), q["label"].to_numpy(), q["score"].to_numpy()))
    return images, truths, preds, names


def ceiling_fraction(frame: pd.DataFrame, ceiling: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Last-cycle value of every strategy as a fraction of the ceiling.

    Args:
        frame: Tidy AL results.
        ceiling: :func:`train_ceiling`'s rows.
        metric: Metric compared (larger = better).

    Returns:
        One row per strategy: ``strategy, seeds, n_labeled, final_mean, final_std, ceiling,
        fraction`` (fraction = final_mean / ceiling).
    """
    ref = ceiling.loc[ceiling["metric"] == metric, "value"]
    if ref.empty:
        raise ValueError(f"no ceiling value for metric {metric!r}")
    ref_value = float(ref.mean())
    sub = frame[frame["metric"] == metric]
    last = sub[sub["cycle"] == sub.groupby(["strategy", "seed"])["cycle"].transform("max")]
    out = last.groupby("strategy").agg(seeds=("seed", "nunique"), n_labeled=("n_labeled", "max"),
                                       final_mean=("value", "mean"), final_std=("value", "std"))
    out["ceiling"] = ref_value
    out["fraction"] = out["final_mean"] / ref_value
    return out.reset_index()
