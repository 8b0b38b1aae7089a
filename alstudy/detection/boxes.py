"""Box geometry for SSD (Liu et al., ECCV 2016): IoU, matching, encoding, NMS, box-list targets.

Conventions: boxes are ``(x_min, y_min, x_max, y_max)`` in coordinates relative to the image
(``[0, 1]``) unless a function says otherwise; default boxes ("priors") are
``(c_x, c_y, w, h)``. Class labels of objects are ``0 .. C-1``; in matched per-prior targets
``0`` is the background and object class ``c`` becomes ``c + 1``.

* :func:`iou` – Jaccard overlap of every pair of boxes.
* :func:`match` – SSD's matching strategy (SSD §2.2): every ground-truth box takes its best
  prior, then every prior takes the ground truth it overlaps most if that IoU is >= 0.5.
* :func:`encode` / :func:`decode` – the offsets regressed by SSD with the "variances"
  ``(0.1, 0.2)`` of the authors' Caffe code:
  ``g_cx = (c_x − p_cx) / (v_0 p_w)``, ``g_w = log(w / p_w) / v_1`` (and the same for y, h).
* :func:`nms_batched` – greedy non-maximum suppression, independently for every (image, class)
  row of a batch, in one tensor program.
* :class:`BoxTargets` – the per-image lists of boxes, labels and VOC ``difficult`` flags of a
  whole data set in flat tensors, indexable like a tensor (``targets[index_tensor]``).
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["VARIANCES", "xyxy_to_cxcywh", "cxcywh_to_xyxy", "box_area", "iou", "encode", "decode",
           "match", "nms_batched", "BoxTargets"]

#: The encoding variances of SSD's reference implementation (centre, size).
VARIANCES = (0.1, 0.2)


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """``(x0, y0, x1, y1)`` -> ``(c_x, c_y, w, h)`` over the last dimension ``[..., 4]``."""
    xy0, xy1 = boxes[..., :2], boxes[..., 2:]
    return torch.cat([(xy0 + xy1) / 2, xy1 - xy0], -1)


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """``(c_x, c_y, w, h)`` -> ``(x0, y0, x1, y1)`` over the last dimension ``[..., 4]``."""
    c, wh = boxes[..., :2], boxes[..., 2:]
    return torch.cat([c - wh / 2, c + wh / 2], -1)


def box_area(boxes: torch.Tensor, offset: float = 0.0) -> torch.Tensor:
    """Areas ``[...]`` of boxes ``[..., 4]`` (xyxy); ``offset = 1`` counts pixels inclusively
    (the VOC devkit's convention for integer pixel coordinates)."""
    wh = (boxes[..., 2:] - boxes[..., :2] + offset).clamp_min(0)
    return wh[..., 0] * wh[..., 1]


def iou(a: torch.Tensor, b: torch.Tensor, offset: float = 0.0) -> torch.Tensor:
    """Jaccard overlap |a ∩ b| / |a ∪ b| of every pair (SSD Eq. "jaccard overlap").

    Args:
        a: Boxes ``[N, 4]`` (xyxy).
        b: Boxes ``[M, 4]`` (xyxy).
        offset: ``1`` for the VOC devkit's inclusive pixel convention (``w = x1 − x0 + 1``).

    Returns:
        IoU ``[N, M]`` (0 where the union is empty).
    """
    lo = torch.maximum(a[:, None, :2], b[None, :, :2])  # [N, M, 2]
    hi = torch.minimum(a[:, None, 2:], b[None, :, 2:])  # [N, M, 2]
    wh = (hi - lo + offset).clamp_min(0)
    inter = wh[..., 0] * wh[..., 1]  # [N, M]
    union = box_area(a, offset)[:, None] + box_area(b, offset)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-12), torch.zeros_like(inter))


def encode(boxes: torch.Tensor, priors: torch.Tensor,
           variances: Sequence[float] = VARIANCES) -> torch.Tensor:
    """Regression targets of ``boxes`` (xyxy) relative to ``priors`` (cxcywh), ``[..., P, 4]``.

    ``(c_x − p_cx) / (v_0 p_w)``, ``(c_y − p_cy) / (v_0 p_h)``, ``log(w / p_w) / v_1``,
    ``log(h / p_h) / v_1`` (SSD Eq. 2 with the reference code's variances).
    """
    g = xyxy_to_cxcywh(boxes)
    centre = (g[..., :2] - priors[..., :2]) / (variances[0] * priors[..., 2:])
    size = torch.log(g[..., 2:].clamp_min(1e-12) / priors[..., 2:]) / variances[1]
    return torch.cat([centre, size], -1)


def decode(loc: torch.Tensor, priors: torch.Tensor,
           variances: Sequence[float] = VARIANCES) -> torch.Tensor:
    """Inverse of :func:`encode`: predicted offsets ``[..., P, 4]`` -> boxes (xyxy)."""
    centre = priors[..., :2] + loc[..., :2] * variances[0] * priors[..., 2:]
    size = priors[..., 2:] * torch.exp(loc[..., 2:] * variances[1])
    return cxcywh_to_xyxy(torch.cat([centre, size], -1))


def match(boxes: torch.Tensor, labels: torch.Tensor, priors: torch.Tensor,
          threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SSD's matching of one image's ground truth to the default boxes (SSD §2.2).

    Each ground-truth box is matched to the prior with the best IoU (so every object has at
    least one prior, whatever its overlap); then each remaining prior is matched to the
    ground truth it overlaps most when that IoU is >= ``threshold``. When two objects share a
    best prior, the later object keeps it (as in the reference implementation).

    Args:
        boxes: Ground truth ``[G, 4]`` (xyxy, relative coordinates).
        labels: Classes ``[G]`` in ``0 .. C-1``.
        priors: Default boxes ``[P, 4]`` (cxcywh).
        threshold: IoU needed for a prior to become positive (SSD: 0.5).

    Returns:
        ``(matched, target, index)``: ``[P, 4]`` the matched ground-truth box of every prior
        (xyxy; meaningless where ``target == 0``), ``[P]`` target classes with 0 = background
        and ``c + 1`` for class ``c``, and ``[P]`` the matched object's index (-1 = none).
    """
    n_priors = priors.shape[0]
    if boxes.shape[0] == 0:
        return (priors.new_zeros(n_priors, 4), torch.zeros(n_priors, dtype=torch.long, device=priors.device),
                torch.full((n_priors,), -1, dtype=torch.long, device=priors.device))
    overlap = iou(boxes, cxcywh_to_xyxy(priors))  # [G, P]
    best_prior = overlap.argmax(1)  # [G]
    best_overlap, best_truth = overlap.max(0)  # [P], [P]
    best_overlap = best_overlap.index_fill(0, best_prior, 2.0)  # forced matches always pass
    for j in range(boxes.shape[0]):  # G is small; later objects win shared priors
        best_truth[best_prior[j]] = j
    target = labels[best_truth] + 1  # [P]
    positive = best_overlap >= threshold
    target = torch.where(positive, target, torch.zeros_like(target))
    index = torch.where(positive, best_truth, torch.full_like(best_truth, -1))
    return boxes[best_truth], target, index


def nms_batched(boxes: torch.Tensor, scores: torch.Tensor, valid: torch.Tensor,
                threshold: float) -> torch.Tensor:
    """Greedy NMS run independently on every row of a batch of candidate lists.

    In each row, candidates are visited by decreasing score; a candidate is kept unless a kept
    candidate of the same row overlaps it with IoU > ``threshold``.

    Args:
        boxes: ``[R, K, 4]`` (xyxy) candidates of R independent rows (e.g. image × class).
        scores: ``[R, K]`` scores.
        valid: ``[R, K]`` which candidates take part.
        threshold: IoU above which the lower-scored box is suppressed (SSD: 0.45).

    Returns:
        ``[R, K]`` boolean mask of the kept candidates (in the input order).
    """
    r, k = scores.shape
    keep = torch.zeros_like(valid)
    n_valid = int(valid.sum(1).max()) if r else 0
    if n_valid == 0:
        return keep
    order = scores.masked_fill(~valid, -torch.inf).argsort(1, descending=True)[:, :n_valid]  # [R, K']
    b = boxes.gather(1, order[..., None].expand(-1, -1, 4))  # sorted, valid first [R, K', 4]
    v = valid.gather(1, order)
    x0, y0, x1, y1 = b.unbind(-1)  # [R, K'] each
    iw = (torch.minimum(x1[:, :, None], x1[:, None, :]) - torch.maximum(x0[:, :, None], x0[:, None, :])).clamp_min_(0)
    ih = (torch.minimum(y1[:, :, None], y1[:, None, :]) - torch.maximum(y0[:, :, None], y0[:, None, :])).clamp_min_(0)
    inter = iw.mul_(ih)  # [R, K', K']
    area = (x1 - x0).clamp_min(0) * (y1 - y0).clamp_min(0)
    union = area[:, :, None] + area[:, None, :] - inter
    over = inter > union.mul_(threshold)  # IoU > threshold, without dividing by an empty union
    suppressed = ~v
    keep_sorted = torch.zeros_like(v)
    for i in range(n_valid):  # greedy: only kept boxes suppress
        keep_i = ~suppressed[:, i]
        keep_sorted[:, i] = keep_i
        suppressed |= keep_i[:, None] & over[:, i, :]
    keep.scatter_(1, order, keep_sorted)
    return keep


class BoxTargets:
    """Per-image boxes, labels and difficult flags of N images, stored flat.

    Indexing mirrors a tensor's first dimension, so the AL loop's ``y_train[labeled]`` works:
    ``targets[i]`` (an int) gives ``(boxes [G_i, 4], labels [G_i], difficult [G_i])``;
    ``targets[index]`` with a tensor, list or slice gives a new :class:`BoxTargets`.

    Args:
        boxes: ``[M, 4]`` float boxes of all images (xyxy, relative coordinates).
        labels: ``[M]`` int64 classes ``0 .. C-1``.
        difficult: ``[M]`` bool VOC ``difficult`` flags.
        counts: ``[N]`` int64 number of objects per image.
        sizes: Optional ``[N, 2]`` original ``(width, height)`` in pixels (VOC images).
    """

    def __init__(self, boxes: torch.Tensor, labels: torch.Tensor, difficult: torch.Tensor,
                 counts: torch.Tensor, sizes: torch.Tensor | None = None):
        counts = torch.as_tensor(counts, dtype=torch.long)
        m = int(counts.sum())
        if not (boxes.shape == (m, 4) and labels.shape == (m,) and difficult.shape == (m,)):
            raise ValueError(f"BoxTargets: counts sum to {m} objects but boxes {tuple(boxes.shape)}, "
                             f"labels {tuple(labels.shape)}, difficult {tuple(difficult.shape)}")
        if sizes is not None and tuple(sizes.shape) != (counts.numel(), 2):
            raise ValueError(f"BoxTargets: sizes must be [{counts.numel()}, 2], got {tuple(sizes.shape)}")
        self.boxes = boxes.float()
        self.labels = labels.long()
        self.difficult = difficult.bool()
        self.counts = counts
        self.offsets = torch.cat([counts.new_zeros(1), counts.cumsum(0)])  # [N+1]
        self.sizes = sizes

    @classmethod
    def from_lists(cls, boxes: Sequence[torch.Tensor], labels: Sequence[torch.Tensor],
                   difficult: Sequence[torch.Tensor] | None = None,
                   sizes: torch.Tensor | None = None) -> "BoxTargets":
        """Build from per-image ``[G_i, 4]`` boxes, ``[G_i]`` labels (and difficult flags)."""
        boxes = [torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4) for b in boxes]
        labels = [torch.as_tensor(l, dtype=torch.long).reshape(-1) for l in labels]
        if difficult is None:
            difficult = [torch.zeros(l.numel(), dtype=torch.bool) for l in labels]
        difficult = [torch.as_tensor(d, dtype=torch.bool).reshape(-1) for d in difficult]
        counts = torch.tensor([b.shape[0] for b in boxes], dtype=torch.long)
        cat = lambda xs, shape, dt: torch.cat(xs) if xs else torch.zeros(shape, dtype=dt)
        return cls(cat(boxes, (0, 4), torch.float32), cat(labels, (0,), torch.long),
                   cat(difficult, (0,), torch.bool), counts, sizes)

    def __len__(self) -> int:
        return int(self.counts.numel())

    @property
    def shape(self) -> torch.Size:
        """``(N,)``, so code that reads ``y.shape[0]`` sees the number of images."""
        return torch.Size([len(self)])

    def __getitem__(self, index):
        if isinstance(index, int) or (torch.is_tensor(index) and index.dim() == 0):
            i = int(index)
            if i < 0:
                i += len(self)
            if not 0 <= i < len(self):
                raise IndexError(f"image index {int(index)} out of range for {len(self)} images")
            s, e = int(self.offsets[i]), int(self.offsets[i + 1])
            return self.boxes[s:e], self.labels[s:e], self.difficult[s:e]
        if isinstance(index, slice):
            index = torch.arange(len(self))[index]
        index = torch.as_tensor(index)
        if index.dtype == torch.bool:
            index = index.nonzero().flatten()
        index = index.long().reshape(-1)
        counts = self.counts[index]  # [n]
        starts = self.offsets[index]  # [n]
        flat = torch.repeat_interleave(starts - torch.cat([counts.new_zeros(1), counts.cumsum(0)[:-1]]),
                                       counts) + torch.arange(int(counts.sum()))  # [m]
        sizes = None if self.sizes is None else self.sizes[index]
        return BoxTargets(self.boxes[flat], self.labels[flat], self.difficult[flat], counts, sizes)

    def image(self, i: int) -> dict[str, torch.Tensor]:
        """``{"boxes", "labels", "difficult"}`` of image ``i``."""
        b, l, d = self[i]
        return {"boxes": b, "labels": l, "difficult": d}

    def lists(self, keep_difficult: bool = True, device: torch.device | str | None = None
              ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-image ``(boxes, labels)`` pairs (optionally without difficult objects)."""
        out = []
        for i in range(len(self)):
            b, l, d = self[i]
            if not keep_difficult:
                b, l = b[~d], l[~d]
            out.append((b.to(device) if device else b, l.to(device) if device else l))
        return out

    @property
    def num_objects(self) -> int:
        """Total number of objects."""
        return int(self.counts.sum())

    def __repr__(self) -> str:
        return (f"BoxTargets({len(self)} images, {self.num_objects} objects, "
                f"{int(self.difficult.sum())} difficult)")
