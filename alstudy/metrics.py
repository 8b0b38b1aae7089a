"""Dense-prediction metrics from an accumulated confusion matrix: mIoU and pixel accuracy.

The confusion matrix ``M[t, p]`` counts pixels of true class t predicted as p, summed over a
test set batch by batch (memory ``C x C``, never the stacked predictions). Pixels whose target
is the ignore index (255, Cityscapes' "void") are left out. From it (Cordts et al., CVPR 2016,
Sec. 3.2; Long et al., CVPR 2015, Sec. 5):

* ``IoU_c = M[c, c] / (Σ_p M[c, p] + Σ_t M[t, c] − M[c, c])`` (TP / (TP + FP + FN)),
* ``mIoU = mean of IoU_c`` over the classes whose union is non-zero (a class absent from
  both targets and predictions has no IoU and is skipped, as in the Cityscapes scripts'
  ``nanmean``),
* ``pixel accuracy = Σ_c M[c, c] / Σ M``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["IGNORE_INDEX", "confusion_matrix", "iou_per_class", "mean_iou", "pixel_accuracy",
           "segmentation_scores"]

#: Target value of pixels that are not scored (Cityscapes' void / trainId 255).
IGNORE_INDEX = 255


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Confusion matrix of predicted vs true labels, ignore pixels excluded.

    Args:
        pred: Predicted class per pixel, any shape (e.g. ``[N, H, W]``), integer.
        target: True class per pixel, same shape; ``ignore_index`` marks unscored pixels.
        num_classes: Number of classes C.
        ignore_index: Target value left out.

    Returns:
        int64 CPU tensor ``[C, C]``, rows = true class, columns = predicted class.

    Raises:
        ValueError: Shapes differ, or a scored target / prediction lies outside ``[0, C)``.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    t = target.reshape(-1).long().cpu()
    p = pred.reshape(-1).long().cpu()
    keep = t != ignore_index
    t, p = t[keep], p[keep]
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise ValueError(f"target values must be in [0, {num_classes}) or {ignore_index}; "
                         f"found {int(t.min())}..{int(t.max())}")
    if p.numel() and (int(p.min()) < 0 or int(p.max()) >= num_classes):
        raise ValueError(f"predictions must be in [0, {num_classes}); found {int(p.min())}..{int(p.max())}")
    return torch.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes,
                                                                                 num_classes)


def iou_per_class(cm: torch.Tensor) -> torch.Tensor:
    """IoU of every class, ``TP / (TP + FP + FN)``; NaN where the union is empty.

    Args:
        cm: Confusion matrix ``[C, C]`` (rows true, columns predicted).

    Returns:
        float64 tensor ``[C]``.
    """
    cm = cm.double()
    tp = cm.diagonal()
    union = cm.sum(0) + cm.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, math.nan))


def mean_iou(cm: torch.Tensor) -> float:
    """Mean IoU over the classes with a non-empty union (NaN if there is none)."""
    iou = iou_per_class(cm)
    valid = ~torch.isnan(iou)
    return float(iou[valid].mean()) if bool(valid.any()) else math.nan


def pixel_accuracy(cm: torch.Tensor) -> float:
    """Fraction of scored pixels predicted correctly (NaN for an empty matrix)."""
    total = float(cm.sum())
    return float(cm.diagonal().sum()) / total if total > 0 else math.nan


def segmentation_scores(cm: torch.Tensor) -> dict[str, float]:
    """``{"miou", "pixel_accuracy"}`` of an accumulated confusion matrix."""
    return {"miou": mean_iou(cm), "pixel_accuracy": pixel_accuracy(cm)}
