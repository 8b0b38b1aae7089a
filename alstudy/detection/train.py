"""Training and evaluating SSD detectors: MultiBox loss, SSD augmentation, VOC mAP.

:func:`fit_detector` and :func:`evaluate_detector` are what :func:`alstudy.train.fit` and
:func:`alstudy.train.evaluate` run for ``task == "detection"``: the same
:class:`~alstudy.train.TrainConfig` (Adam, SGD, SAM/ASAM, step schedule), targets given as a
:class:`~alstudy.detection.boxes.BoxTargets`. Objects marked ``difficult`` are left out of
training (as in the reference SSD implementation) and ignored by the mAP.

``augment = "ssd"`` is SSD's geometric augmentation (SSD §3, "Data augmentation"), done in
torch on the stored fixed-size images: zoom out (p = 0.5, the image shrunk by a factor in
[1, 4] onto a mean-filled canvas), a random crop (the whole image or a patch of 0.3–1 of
each side, aspect in [1/2, 2], whose IoU with some object is at least one of 0.1, 0.3, 0.7,
0.9 or anything; objects kept when their centre lies in the patch) resized back, and a
horizontal flip (p = 0.5). The photometric distortions of the reference code are left out.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from .boxes import BoxTargets, iou
from .loss import match_targets, multibox_loss_matched
from .map import voc_map

__all__ = ["fit_detector", "evaluate_detector", "predict_detections", "ssd_augment",
           "DETECTION_AUGMENTATIONS"]

DETECTION_AUGMENTATIONS = ("none", "ssd")
_CROP_MIN_IOU = (None, 0.1, 0.3, 0.7, 0.9, -math.inf)  # None = keep the whole image


def _crop(img: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, g: torch.Generator
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SSD's random crop (relative coordinates); returns the resized crop and its objects."""
    _, h, w = img.shape
    if boxes.shape[0] == 0:
        return img, boxes, labels
    while True:
        mode = _CROP_MIN_IOU[int(torch.randint(len(_CROP_MIN_IOU), (1,), generator=g))]
        if mode is None:
            return img, boxes, labels
        for _ in range(50):
            cw, ch = (0.3 + 0.7 * torch.rand(2, generator=g)).tolist()
            if not 0.5 <= ch / cw <= 2.0:
                continue
            x0, y0 = float(torch.rand(1, generator=g)) * (1 - cw), float(torch.rand(1, generator=g)) * (1 - ch)
            rect = torch.tensor([[x0, y0, x0 + cw, y0 + ch]])
            if float(iou(rect, boxes).max()) < mode:
                continue
            centre = (boxes[:, :2] + boxes[:, 2:]) / 2
            inside = ((centre > rect[0, :2]) & (centre < rect[0, 2:])).all(1)
            if not inside.any():
                continue
            kept = boxes[inside].clone()
            kept[:, :2] = torch.maximum(kept[:, :2], rect[0, :2])
            kept[:, 2:] = torch.minimum(kept[:, 2:], rect[0, 2:])
            kept = (kept - rect[0, :2].repeat(2)) / torch.tensor([cw, ch, cw, ch])
            px0, py0 = int(x0 * w), int(y0 * h)
            px1, py1 = max(px0 + 1, int(math.ceil((x0 + cw) * w))), max(py0 + 1, int(math.ceil((y0 + ch) * h)))
            patch = img[None, :, py0:py1, px0:px1].float()
            out = F.interpolate(patch, size=(h, w), mode="bilinear", align_corners=False)[0]
            return out.round().clamp(0, 255).to(img.dtype), kept, labels[inside]


def ssd_augment(images: torch.Tensor, targets: Sequence[tuple[torch.Tensor, torch.Tensor]],
                generator: torch.Generator) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """SSD's geometric augmentation of a batch (zoom out, random crop, flip); see the module doc.

    Args:
        images: ``[B, C, H, W]`` raw-pixel images (CPU).
        targets: Per image ``(boxes [G, 4] relative xyxy, labels [G])``.
        generator: CPU generator (all randomness).

    Returns:
        ``(images [B, C, H, W], targets)`` of the same sizes and dtype.
    """
    out_imgs, out_t = [], []
    for img, (boxes, labels) in zip(images, targets):
        c, h, w = img.shape
        boxes, labels = boxes.cpu().float(), labels.cpu()
        if float(torch.rand(1, generator=generator)) < 0.5:  # zoom out
            r = 1.0 + 3.0 * float(torch.rand(1, generator=generator))
            sh, sw = max(1, int(h / r)), max(1, int(w / r))
            small = F.interpolate(img[None].float(), size=(sh, sw), mode="bilinear", align_corners=False)[0]
            oy = int(torch.randint(h - sh + 1, (1,), generator=generator))
            ox = int(torch.randint(w - sw + 1, (1,), generator=generator))
            canvas = img.float().mean((1, 2), keepdim=True).expand(c, h, w).clone()
            canvas[:, oy:oy + sh, ox:ox + sw] = small
            img = canvas.round().clamp(0, 255).to(images.dtype)
            scale = torch.tensor([sw / w, sh / h, sw / w, sh / h])
            boxes = boxes * scale + torch.tensor([ox / w, oy / h, ox / w, oy / h])
        img, boxes, labels = _crop(img, boxes, labels, generator)
        if float(torch.rand(1, generator=generator)) < 0.5:  # horizontal flip
            img = img.flip(-1)
            boxes = torch.stack([1 - boxes[:, 2], boxes[:, 1], 1 - boxes[:, 0], boxes[:, 3]], 1)
        out_imgs.append(img)
        out_t.append((boxes, labels))
    return torch.stack(out_imgs), out_t


def fit_detector(model: torch.nn.Module, x: torch.Tensor, y: BoxTargets, cfg, *,
                 generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                 hook=None) -> dict:
    """Train an SSD in place with the MultiBox loss (SSD Eq. 1).

    Args:
        model: An :class:`~alstudy.detection.ssd.SSD`.
        x: Raw-pixel images ``[N, C, H, W]``.
        y: Their ground truth (difficult objects are dropped for training).
        cfg: A :class:`alstudy.train.TrainConfig` (``augment``: ``none`` or ``ssd``).
        generator: CPU generator for shuffling and augmentation.
        device: Where to train.
        hook: Optional :class:`alstudy.train.TrainingHook` (e.g. learning loss); it receives
            the per-image MultiBox losses.

    Returns:
        ``{"loss": [mean batch loss per epoch], "aux_loss": [...]}``.

    Raises:
        ValueError: An augmentation other than ``none``/``ssd``.
    """
    from ..train import train_epochs

    if cfg.augment not in DETECTION_AUGMENTATIONS:
        raise ValueError(f"augment = {cfg.augment!r} does not apply to detection; allowed: "
                         f"{list(DETECTION_AUGMENTATIONS)}")
    device = torch.device(device)
    generator = generator or torch.Generator().manual_seed(0)
    priors = model.priors
    lists = y.lists(keep_difficult=False)
    augment = cfg.augment == "ssd"
    matched = None
    if not augment:  # fixed targets: match once
        matched = [t.cpu() for t in match_targets(lists, priors.cpu())]  # [N, P, 4], [N, P]

    def load(idx):
        if augment:
            xb, tb = ssd_augment(x[idx], [lists[int(i)] for i in idx], generator)
            loc_t, conf_t = match_targets(tb, priors.cpu())
        else:
            xb, loc_t, conf_t = x[idx], matched[0][idx], matched[1][idx]
        return xb.to(device), loc_t.to(device), conf_t.to(device)

    def batch_loss(batch, epoch):  # recorded per batch: the batch's mean loss, weight 1
        xb, loc_t, conf_t = batch
        if hook is None:
            loc, conf = model(xb)
            res = multibox_loss_matched(loc, conf, loc_t, conf_t)
            return res.total, res.total.detach(), torch.zeros((), device=device), 1
        out, blocks = model.intermediates(xb)
        res = multibox_loss_matched(out[0], out[1], loc_t, conf_t)
        aux = hook.loss(out, blocks, None, res.per_image, epoch)
        loss = res.total + aux
        return loss, loss.detach(), aux.detach(), 1

    # full batches, then the remainder (the detection loop does not apply cfg.batch_split)
    return train_epochs(model, x.shape[0], cfg, load, batch_loss, generator=generator,
                        device=device, hook=hook, split="last_partial")


@torch.no_grad()
def predict_detections(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 64,
                       **options) -> list[dict[str, torch.Tensor]]:
    """Detections (SSD inference, :func:`alstudy.detection.ssd.detect`) of ``x`` in batches, on
    the model's device, returned on the CPU.

    Args:
        model: An SSD (put in eval mode here).
        x: Raw-pixel images ``[N, C, H, W]``.
        batch_size: Images per forward pass.
        **options: Options of :func:`~alstudy.detection.ssd.detect`.

    Returns:
        Per image ``{"boxes", "scores", "labels", "priors"}`` (relative coordinates).
    """
    from .ssd import detect

    model.eval()
    device = next(model.parameters()).device
    out = []
    for s in range(0, x.shape[0], batch_size):
        loc, conf = model(x[s:s + batch_size].to(device))
        out += [{k: v.cpu() for k, v in d.items()} for d in detect(loc, conf, model.priors, **options)]
    return out


def evaluate_detector(model: torch.nn.Module, x: torch.Tensor, y: BoxTargets, *,
                      batch_size: int = 64, device: torch.device | str = "cpu") -> dict[str, float]:
    """VOC mAP at IoU 0.5 of a detector on a test set.

    Detections follow SSD's test protocol (threshold 0.01, per-class NMS 0.45, 200 per image).
    When the targets carry the original image sizes (VOC), boxes are compared in pixels with
    the devkit's inclusive areas; otherwise in relative coordinates.

    Args:
        model: An SSD.
        x: Raw-pixel test images ``[N, C, H, W]``.
        y: Test ground truth.
        batch_size: Images per forward pass.
        device: Where to run the model.

    Returns:
        ``{"map50": VOC2007 11-point mAP, "map50_all": all-point mAP}``.
    """
    model.to(device)
    dets = predict_detections(model, x, min(batch_size, 256))
    offset = 0.0
    targets = y
    if y.sizes is not None:  # pixel coordinates, as the VOC devkit evaluates
        scale = y.sizes.repeat(1, 2)  # [N, 4] (w, h, w, h)
        dets = [{**d, "boxes": d["boxes"] * scale[i]} for i, d in enumerate(dets)]
        per_obj = torch.repeat_interleave(scale, y.counts, 0)
        targets = BoxTargets(y.boxes * per_obj, y.labels, y.difficult, y.counts)
        offset = 1.0
    num_classes = int(model.num_classes)
    return {"map50": voc_map(dets, targets, num_classes, interpolation="11point", offset=offset)["map"],
            "map50_all": voc_map(dets, targets, num_classes, interpolation="all", offset=offset)["map"]}
