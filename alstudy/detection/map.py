"""PASCAL VOC mean average precision (Everingham et al., IJCV 2010, §4.2), IoU 0.5.

Per class, all detections of the test set are ranked by confidence. A detection is a true
positive when its best-overlapping ground-truth object of that class (in the same image) has
IoU > 0.5 and was not already claimed by a higher-ranked detection; a second detection of a
claimed object is a false positive. Objects marked ``difficult`` are left out: they do not
count in the number of positives, and a detection whose best match is a difficult object is
neither a true nor a false positive. With recall ``r = TP / n_pos`` and precision
``p = TP / (TP + FP)`` along the ranking:

* ``11point`` (VOC2007 devkit; the metric SSD and the SAAL paper report on VOC2007 test):
  ``AP = (1/11) Σ_{t ∈ {0, 0.1, …, 1}} max_{r ≥ t} p(r)`` (0 where no recall reaches t);
* ``all`` (VOC2010+ devkit): the area under the precision envelope
  ``p̃(r) = max_{r' ≥ r} p(r')``, summed over the recall steps.

mAP is the mean over the classes that have at least one non-difficult object. The same code
as the official devkit (``voc_eval.py``), written from its description; tested against
hand-computed precision/recall curves.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .boxes import iou

__all__ = ["average_precision", "precision_recall", "voc_map", "INTERPOLATIONS"]

INTERPOLATIONS = ("11point", "all")


def average_precision(recall: np.ndarray, precision: np.ndarray, interpolation: str = "11point") -> float:
    """AP from a precision/recall curve (points in ranking order).

    Args:
        recall: ``[K]`` recall after each ranked detection (non-decreasing).
        precision: ``[K]`` precision after each ranked detection.
        interpolation: ``"11point"`` (VOC2007) or ``"all"`` (VOC2010+).

    Returns:
        AP in ``[0, 1]`` (0 for an empty curve).

    Raises:
        ValueError: Unknown interpolation.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {list(INTERPOLATIONS)}, got {interpolation!r}")
    recall, precision = np.asarray(recall, float), np.asarray(precision, float)
    if recall.size == 0:
        return 0.0
    if interpolation == "11point":
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):  # the devkit's thresholds, floats as np.arange makes them
            reach = recall >= t
            ap += (precision[reach].max() if reach.any() else 0.0) / 11.0
        return float(ap)
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]  # precision envelope
    steps = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def precision_recall(detections: Sequence[dict], targets, cls: int, iou_threshold: float = 0.5,
                     offset: float = 0.0) -> tuple[np.ndarray, np.ndarray, int]:
    """Precision/recall curve of one class over a test set (VOC matching rules).

    Args:
        detections: Per image ``{"boxes" [K, 4], "scores" [K], "labels" [K]}``.
        targets: Per image ground truth: a :class:`~alstudy.detection.boxes.BoxTargets` or a
            sequence of ``(boxes [G, 4], labels [G], difficult [G])``.
        cls: Class index.
        iou_threshold: A match needs IoU strictly above this (VOC: 0.5).
        offset: ``1`` for the devkit's inclusive pixel areas (boxes in pixels), else 0.

    Returns:
        ``(recall [K], precision [K], n_pos)`` over the ranked detections of class ``cls``
        that are not ignored (``n_pos`` = non-difficult objects of the class).
    """
    scores, flags = [], []  # per image: scores of the class's detections and their outcome
    n_pos = 0
    for i, det in enumerate(detections):
        g_boxes, g_labels, g_diff = targets[i]
        keep = g_labels == cls
        g_boxes, g_diff = g_boxes[keep].double(), g_diff[keep].bool().numpy()
        n_pos += int((~g_diff).sum())
        sel = det["labels"] == cls
        sc = det["scores"][sel].double().cpu().numpy()
        if sc.size == 0:
            continue
        order = np.argsort(-sc, kind="stable")  # an image's detections never interact with
        sc = sc[order]                            # another image's: claim objects image by image
        outcome = np.ones(sc.size, dtype=np.int8)  # 1 = FP, 2 = TP, 0 = ignored
        if g_boxes.shape[0]:
            ov = iou(det["boxes"][sel].double().cpu()[torch.from_numpy(order)], g_boxes, offset).numpy()
            best, best_ov = ov.argmax(1), ov.max(1)
            claimed = np.zeros(g_boxes.shape[0], dtype=bool)
            for j in range(sc.size):
                if best_ov[j] > iou_threshold:
                    g = best[j]
                    if g_diff[g]:
                        outcome[j] = 0
                    elif not claimed[g]:
                        claimed[g] = True
                        outcome[j] = 2
        scores.append(sc)
        flags.append(outcome)
    if scores:
        sc, outcome = np.concatenate(scores), np.concatenate(flags)
        rank = np.argsort(-sc, kind="stable")  # ties keep image order
        outcome = outcome[rank]
        outcome = outcome[outcome > 0]
    else:
        outcome = np.zeros(0, dtype=np.int8)
    tp, fp = (outcome == 2).astype(float), (outcome == 1).astype(float)
    tp_c, fp_c = np.cumsum(tp), np.cumsum(fp)
    recall = tp_c / max(n_pos, 1)
    precision = tp_c / np.maximum(tp_c + fp_c, np.finfo(float).eps)
    return recall, precision, n_pos


def voc_map(detections: Sequence[dict], targets, num_classes: int, *, iou_threshold: float = 0.5,
            interpolation: str = "11point", offset: float = 0.0) -> dict:
    """VOC mAP of a detector's output on a test set.

    Args:
        detections: Per image ``{"boxes", "scores", "labels"}`` (same coordinates as targets).
        targets: Ground truth (:class:`~alstudy.detection.boxes.BoxTargets` or per-image
            ``(boxes, labels, difficult)``).
        num_classes: Number of object classes C.
        iou_threshold: VOC: 0.5.
        interpolation: ``"11point"`` or ``"all"``.
        offset: ``1`` for pixel boxes with the devkit's inclusive areas.

    Returns:
        ``{"map": float, "ap": [C] list (NaN for classes without non-difficult objects)}``.

    Raises:
        ValueError: Detections and targets of different lengths, or unknown interpolation.
    """
    if len(detections) != len(targets):
        raise ValueError(f"{len(detections)} detection lists for {len(targets)} images")
    aps = []
    for c in range(num_classes):
        rec, prec, n_pos = precision_recall(detections, targets, c, iou_threshold, offset)
        aps.append(average_precision(rec, prec, interpolation) if n_pos else float("nan"))
    valid = [a for a in aps if not np.isnan(a)]
    return {"map": float(np.mean(valid)) if valid else float("nan"), "ap": aps}
