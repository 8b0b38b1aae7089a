"""SSD's MultiBox loss (Liu et al., ECCV 2016, §2.2 "Training objective", Eq. 1–3).

    L(x, c, l, g) = (L_conf(x, c) + α L_loc(x, l, g)) / N,    α = 1,

with N the number of positive (matched) default boxes: ``L_loc`` is the smooth L1 loss between
the predicted offsets and the encoded matched ground truth over the positives (Eq. 2);
``L_conf`` is the softmax cross-entropy over the positives and the hardest negatives — the
negatives with the largest background loss, at most three per positive (hard negative mining,
§2.2), and never more than the image has.

:func:`match_targets` turns per-image box lists into per-prior targets (``match``,
``encode``); :func:`hard_negatives` is the mining step on its own, so it can be tested.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from .boxes import VARIANCES, encode, match

__all__ = ["match_targets", "hard_negatives", "MultiBoxLosses", "multibox_loss",
           "multibox_loss_matched"]


def match_targets(targets: Sequence[tuple[torch.Tensor, torch.Tensor]], priors: torch.Tensor,
                  threshold: float = 0.5, variances: Sequence[float] = VARIANCES
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-prior regression and class targets of a batch.

    Args:
        targets: Per image ``(boxes [G, 4] xyxy, labels [G] in 0 .. C-1)``.
        priors: Default boxes ``[P, 4]`` (cxcywh).
        threshold: Matching IoU (SSD: 0.5).
        variances: Encoding variances.

    Returns:
        ``(loc_t [B, P, 4], conf_t [B, P])`` with ``conf_t`` 0 = background, ``c + 1`` = class c.
    """
    locs, confs = [], []
    for boxes, labels in targets:
        matched, conf, _ = match(boxes.to(priors.device), labels.to(priors.device), priors, threshold)
        locs.append(encode(matched, priors, variances))
        confs.append(conf)
    return torch.stack(locs), torch.stack(confs)


def hard_negatives(background_loss: torch.Tensor, positive: torch.Tensor,
                   neg_pos_ratio: float = 3.0) -> torch.Tensor:
    """Hard negative mining: per image the ``min(ratio · n_pos, n_neg)`` negatives with the
    largest background loss.

    Args:
        background_loss: ``[B, P]`` cross-entropy of each prior against the background class.
        positive: ``[B, P]`` matched priors.
        neg_pos_ratio: Negatives per positive (SSD: 3).

    Returns:
        ``[B, P]`` boolean mask of the selected negatives (disjoint from ``positive``).
    """
    loss = background_loss.detach().masked_fill(positive, -torch.inf)  # positives rank last
    n_pos = positive.sum(1, keepdim=True)  # [B, 1]
    n_neg = torch.minimum((neg_pos_ratio * n_pos).long(), (~positive).sum(1, keepdim=True))
    rank = loss.argsort(1, descending=True).argsort(1)  # [B, P] rank of each prior
    return rank < n_neg


@dataclass
class MultiBoxLosses:
    """Parts of the MultiBox loss of a batch.

    Attributes:
        total: Scalar ``(L_conf + α L_loc) / N`` with N the positives of the whole batch.
        per_image: ``[B]`` each image's ``(L_conf + α L_loc) / max(N_i, 1)`` (for learning loss).
        loc: Scalar ``L_loc / N``.
        conf: Scalar ``L_conf / N``.
        num_pos: ``[B]`` positives per image.
    """

    total: torch.Tensor
    per_image: torch.Tensor
    loc: torch.Tensor
    conf: torch.Tensor
    num_pos: torch.Tensor


def multibox_loss(loc: torch.Tensor, conf: torch.Tensor,
                  targets: Sequence[tuple[torch.Tensor, torch.Tensor]], priors: torch.Tensor, *,
                  threshold: float = 0.5, neg_pos_ratio: float = 3.0, alpha: float = 1.0,
                  variances: Sequence[float] = VARIANCES) -> MultiBoxLosses:
    """SSD's MultiBox loss (Eq. 1) with hard negative mining.

    Args:
        loc: Predicted offsets ``[B, P, 4]``.
        conf: Class logits ``[B, P, C + 1]``.
        targets: Per image ``(boxes [G, 4], labels [G])``.
        priors: Default boxes ``[P, 4]`` (cxcywh).
        threshold: Matching IoU.
        neg_pos_ratio: Negatives per positive.
        alpha: Weight α of the localisation term (SSD: 1).
        variances: Encoding variances.

    Returns:
        A :class:`MultiBoxLosses`. A batch without any positive gives zero losses.
    """
    loc_t, conf_t = match_targets(targets, priors, threshold, variances)  # [B, P, 4], [B, P]
    return multibox_loss_matched(loc, conf, loc_t, conf_t, neg_pos_ratio=neg_pos_ratio, alpha=alpha)


def multibox_loss_matched(loc: torch.Tensor, conf: torch.Tensor, loc_t: torch.Tensor,
                          conf_t: torch.Tensor, *, neg_pos_ratio: float = 3.0,
                          alpha: float = 1.0) -> MultiBoxLosses:
    """:func:`multibox_loss` from per-prior targets already matched (:func:`match_targets`).

    Args:
        loc: Predicted offsets ``[B, P, 4]``.
        conf: Class logits ``[B, P, C + 1]``.
        loc_t: Encoded matched boxes ``[B, P, 4]``.
        conf_t: Target classes ``[B, P]`` (0 = background).
        neg_pos_ratio: Negatives per positive.
        alpha: Weight α of the localisation term.

    Returns:
        A :class:`MultiBoxLosses`.
    """
    positive = conf_t > 0
    ce = F.cross_entropy(conf.flatten(0, 1), conf_t.flatten(), reduction="none").view(conf_t.shape)  # [B, P]
    negative = hard_negatives(ce, positive, neg_pos_ratio)  # at non-positives ce is the background loss
    conf_i = (ce * (positive | negative)).sum(1)  # [B]
    loc_i = (F.smooth_l1_loss(loc, loc_t, reduction="none").sum(2) * positive).sum(1)  # [B]
    num_pos = positive.sum(1)
    n = num_pos.sum().clamp_min(1).to(loc.dtype)
    per_image = (conf_i + alpha * loc_i) / num_pos.clamp_min(1).to(loc.dtype)
    return MultiBoxLosses(total=(conf_i.sum() + alpha * loc_i.sum()) / n, per_image=per_image,
                          loc=loc_i.sum() / n, conf=conf_i.sum() / n, num_pos=num_pos)
