"""SSD, the Single Shot MultiBox Detector (Liu et al., ECCV 2016), in plain torch.

The network is written as ``T = g ∘ f`` like every model of the study:

* ``features(x)`` – f: the backbone plus the extra feature layers, returning the list of
  source feature maps ``[[B, C_s, H_s, W_s]]`` (coarser and coarser),
* ``head`` – g: one 3×3 convolution per source for the box offsets (``A_s · 4`` channels) and
  one for the class scores (``A_s · (C + 1)`` channels, index 0 = background),
* ``forward(x) = head(features(x)) = (loc [B, P, 4], conf [B, P, C + 1])``, with P the number
  of default boxes ``model.priors`` ``[P, 4]`` (cxcywh, relative coordinates).

Backbones:

* ``vgg16`` – SSD300's VGG16-reduced: VGG16's convolutions with pool5 as 3×3/1, the dilated
  conv6 (1024, dilation 6) and the 1×1 conv7 of the reference implementation, conv4_3
  normalised by a learnable L2Norm (initial scale 20), the extra layers conv8–conv11.
  The layers are kept in the reference implementation's order, so its converted ImageNet
  weights (``vgg16_reducedfc.pth``) load with ``backbone_weights``. Inputs are shifted by the
  Caffe means in BGR order as those weights expect.
* ``narrow`` – a small CPU backbone: stride-2 3×3 convolutions with batch norm (``width``,
  ``2·width``, ``4·width`` channels) down to 1/8 of the input, then extra stride-2 layers
  until the map is 1×1. Inputs are scaled to ``[-1, 1]``.

Inputs are raw pixel values (uint8 or float in ``[0, 255]``); normalisation happens inside
the model, so images can be stored as uint8.

Default boxes (SSD §2.2, "Choosing scales and aspect ratios for default boxes"): map k of m
has scale ``s_k = s_min + (s_max − s_min)(k − 1)/(m − 1)`` (Eq. 4; ``vgg16`` follows the
reference code: conv4_3 at 0.1 and the integer-percent steps 20, 37, 54, 71, 88), boxes of
aspect ratio 1 at ``s_k`` and ``sqrt(s_k s_{k+1})``, and ratios ``a`` and ``1/a`` of width
``s_k sqrt(a)`` and height ``s_k / sqrt(a)``, centred at ``((j + 0.5)/|f_k|, (i + 0.5)/|f_k|)``
(the paper's centres; the reference code uses ``image_size / step`` instead of ``|f_k|``),
clipped to ``[0, 1]``.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .boxes import VARIANCES, decode, nms_batched

__all__ = ["SSD", "L2Norm", "prior_boxes", "ssd_scales", "detect", "BACKBONES"]

BACKBONES = ("narrow", "vgg16")

#: SSD300's aspect ratios per source map (besides 1).
_VGG_ASPECTS = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))
#: Caffe BGR means of the converted VGG16 weights.
_CAFFE_BGR_MEAN = (104.0, 117.0, 123.0)


def ssd_scales(n_maps: int, s_min: float = 0.2, s_max: float = 0.9,
               first: float | None = None) -> list[float]:
    """Scales ``s_1 .. s_{m+1}`` of the default boxes (``s_{m+1}`` feeds ``sqrt(s_m s_{m+1})``).

    Args:
        n_maps: Number m of source maps.
        s_min: Smallest scale of the regular maps (SSD: 0.2).
        s_max: Largest scale (SSD: 0.9).
        first: ``None`` = SSD Eq. 4 over all m maps; a number = the reference code's layout,
            the first map at ``first`` (SSD300: 0.1) and the other ``m − 1`` at integer-percent
            steps ``floor(100 (s_max − s_min) / (m − 2))`` from ``s_min``.

    Returns:
        ``m + 1`` scales.
    """
    if n_maps < 1:
        raise ValueError(f"n_maps must be >= 1, got {n_maps}")
    if first is None:
        if n_maps == 1:
            return [s_min, s_max]
        step = (s_max - s_min) / (n_maps - 1)
        return [s_min + step * k for k in range(n_maps + 1)]
    lo, hi = round(100 * s_min), round(100 * s_max)
    step = (hi - lo) // max(n_maps - 2, 1)
    return [first] + [(lo + step * k) / 100 for k in range(n_maps)]


def prior_boxes(feature_sizes: Sequence[tuple[int, int]], scales: Sequence[float],
                aspect_ratios: Sequence[Sequence[float]], clip: bool = True) -> torch.Tensor:
    """Default boxes of all source maps, in the order the heads emit them.

    Order: map by map; within a map row i, column j; within a cell: ``s_k``, ``sqrt(s_k s_{k+1})``,
    then ``(a, 1/a)`` for each aspect ratio a.

    Args:
        feature_sizes: ``(H_k, W_k)`` of each source map.
        scales: ``m + 1`` scales (see :func:`ssd_scales`).
        aspect_ratios: Ratios ``a > 1`` per map (each adds the boxes a and 1/a).
        clip: Clip the boxes' ``(c_x, c_y, w, h)`` to ``[0, 1]`` as the reference code does.

    Returns:
        Priors ``[P, 4]`` (cxcywh) with ``P = Σ_k H_k W_k (2 + 2 |aspect_ratios_k|)``.
    """
    if len(scales) != len(feature_sizes) + 1 or len(aspect_ratios) != len(feature_sizes):
        raise ValueError(f"need {len(feature_sizes) + 1} scales and {len(feature_sizes)} aspect-ratio "
                         f"lists, got {len(scales)} and {len(aspect_ratios)}")
    out = []
    for k, (h, w) in enumerate(feature_sizes):
        s, s_next = scales[k], scales[k + 1]
        shapes = [(s, s), (math.sqrt(s * s_next),) * 2]
        for a in aspect_ratios[k]:
            r = math.sqrt(a)
            shapes += [(s * r, s / r), (s / r, s * r)]
        wh = torch.tensor(shapes, dtype=torch.float32)  # [A, 2]
        cy, cx = torch.meshgrid((torch.arange(h, dtype=torch.float32) + 0.5) / h,
                                (torch.arange(w, dtype=torch.float32) + 0.5) / w, indexing="ij")
        centres = torch.stack([cx, cy], -1).reshape(-1, 1, 2).expand(-1, wh.shape[0], 2)  # [HW, A, 2]
        out.append(torch.cat([centres, wh.expand(h * w, -1, -1)], -1).reshape(-1, 4))
    priors = torch.cat(out)
    return priors.clamp(0.0, 1.0) if clip else priors


class L2Norm(nn.Module):
    """Channel-wise L2 normalisation with a learnable per-channel scale (ParseNet; SSD conv4_3)."""

    def __init__(self, channels: int, scale: float = 20.0, eps: float = 1e-10):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = x.pow(2).sum(1, keepdim=True).sqrt() + self.eps  # [B, 1, H, W]
        return self.weight.view(1, -1, 1, 1) * x / norm


def _vgg16_reduced(c_in: int) -> nn.ModuleList:
    """VGG16-reduced in the reference implementation's layer order (conv4_3's ReLU is index 22)."""
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "C", 512, 512, 512, "M", 512, 512, 512]
    layers: list[nn.Module] = []
    c = c_in
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        elif v == "C":
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
            c = v
    layers += [nn.MaxPool2d(3, 1, 1), nn.Conv2d(512, 1024, 3, padding=6, dilation=6),
               nn.ReLU(inplace=True), nn.Conv2d(1024, 1024, 1), nn.ReLU(inplace=True)]
    return nn.ModuleList(layers)


def _vgg_extras() -> nn.ModuleList:
    """SSD300's extra layers conv8_1 .. conv11_2 (each followed by a ReLU in forward)."""
    return nn.ModuleList([
        nn.Conv2d(1024, 256, 1), nn.Conv2d(256, 512, 3, 2, 1),
        nn.Conv2d(512, 128, 1), nn.Conv2d(128, 256, 3, 2, 1),
        nn.Conv2d(256, 128, 1), nn.Conv2d(128, 256, 3),
        nn.Conv2d(256, 128, 1), nn.Conv2d(128, 256, 3)])


def _conv_bn(c_in: int, c_out: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class _Head(nn.Module):
    """g: per-source 3×3 convolutions for offsets and class scores, flattened prior by prior."""

    def __init__(self, channels: Sequence[int], anchors: Sequence[int], num_classes: int):
        super().__init__()
        self.num_classes = num_classes  # C + 1, background included
        self.loc = nn.ModuleList(nn.Conv2d(c, a * 4, 3, padding=1) for c, a in zip(channels, anchors))
        self.conf = nn.ModuleList(nn.Conv2d(c, a * num_classes, 3, padding=1)
                                  for c, a in zip(channels, anchors))

    def forward(self, sources: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        b = sources[0].shape[0]
        loc = [l(s).permute(0, 2, 3, 1).reshape(b, -1, 4) for l, s in zip(self.loc, sources)]
        conf = [c(s).permute(0, 2, 3, 1).reshape(b, -1, self.num_classes)
                for c, s in zip(self.conf, sources)]
        return torch.cat(loc, 1), torch.cat(conf, 1)  # [B, P, 4], [B, P, C+1]


class SSD(nn.Module):
    """SSD detector with a ``vgg16`` (SSD300) or ``narrow`` (CPU) backbone.

    Args:
        input_shape: ``(C, H, W)`` of the (already resized) input images.
        num_outputs: Number of object classes C (the background class is added).
        backbone: ``"vgg16"`` or ``"narrow"``.
        width: Channels of the narrow backbone's first layer (ignored by ``vgg16``).
        s_min: Smallest default-box scale (SSD: 0.2).
        s_max: Largest default-box scale (SSD: 0.9).
        aspect_ratios: Ratios per source map besides 1 (``None`` = SSD300's
            ``[[2], [2, 3], [2, 3], [2, 3], [2], [2]]``, ``[2, 3]`` for any further map).
        backbone_weights: Path of a state dict for the VGG layers (the reference
            implementation's ``vgg16_reducedfc.pth``); ``None`` = random initialisation.
    """

    task = "detection"

    def __init__(self, input_shape: Sequence[int], num_outputs: int, backbone: str = "narrow",
                 width: int = 16, s_min: float = 0.2, s_max: float = 0.9,
                 aspect_ratios: list | None = None, backbone_weights: str | None = None):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"SSD option 'backbone' = {backbone!r}; allowed: {list(BACKBONES)}")
        if not (isinstance(width, int) and width >= 1):
            raise ValueError(f"SSD option 'width' = {width!r}; allowed: integer >= 1")
        c, h, w = input_shape
        self.backbone = backbone
        self.num_classes = int(num_outputs)
        if backbone == "vgg16":
            if c != 3:
                raise ValueError(f"SSD backbone 'vgg16' needs 3-channel images, got input shape {tuple(input_shape)}")
            self.vgg = _vgg16_reduced(c)
            self.l2norm = L2Norm(512)
            self.extras = _vgg_extras()
            self.register_buffer("pixel_mean", torch.tensor(_CAFFE_BGR_MEAN).view(1, 3, 1, 1),
                                 persistent=False)
            if backbone_weights:
                path = Path(backbone_weights).expanduser()
                if not path.is_file():
                    raise ValueError(f"SSD option 'backbone_weights' = {backbone_weights!r}: no such file "
                                     "(expected the reference SSD implementation's converted ImageNet "
                                     "VGG16, vgg16_reducedfc.pth)")
                self.vgg.load_state_dict(torch.load(path, map_location="cpu"))
        else:
            if backbone_weights:
                raise ValueError("SSD option 'backbone_weights' applies to backbone 'vgg16' only")
            self.stem = nn.Sequential(_conv_bn(c, width, 2), _conv_bn(width, 2 * width, 2),
                                      _conv_bn(2 * width, 2 * width), _conv_bn(2 * width, 4 * width, 2),
                                      _conv_bn(4 * width, 4 * width))
            extras, size = [], (max(1, math.ceil(h / 8)), max(1, math.ceil(w / 8)))
            while max(size) > 1:
                extras.append(nn.Sequential(_conv_bn(4 * width, 2 * width, kernel=1),
                                            _conv_bn(2 * width, 4 * width, 2)))
                size = (math.ceil(size[0] / 2), math.ceil(size[1] / 2))
            self.extras = nn.ModuleList(extras)
        with torch.no_grad():  # shapes only: a parameter-free copy on the meta device
            probe = copy.deepcopy(self).to("meta").eval()
            maps = probe._sources(torch.zeros(1, c, h, w, device="meta"))
            del probe
        sizes = [tuple(m.shape[2:]) for m in maps]
        if aspect_ratios is None:
            aspect_ratios = [list(_VGG_ASPECTS[k]) if k < len(_VGG_ASPECTS) else [2, 3]
                             for k in range(len(sizes))]
        if len(aspect_ratios) != len(sizes):
            raise ValueError(f"SSD option 'aspect_ratios' needs one list per source map "
                             f"({len(sizes)} maps: {sizes}), got {len(aspect_ratios)}")
        first = 0.1 if backbone == "vgg16" else None
        scales = ssd_scales(len(sizes), s_min, s_max, first)
        self.register_buffer("priors", prior_boxes(sizes, scales, aspect_ratios), persistent=False)
        self.feature_sizes = sizes
        anchors = [2 + 2 * len(a) for a in aspect_ratios]
        self.head = _Head([m.shape[1] for m in maps], anchors, self.num_classes + 1)
        self._init_weights(backbone_weights)

    def _init_weights(self, loaded: str | None) -> None:
        """Xavier-uniform weights and zero biases for every convolution not loaded from a file
        (the reference implementation's initialisation of the extras and heads)."""
        skip = set(self.vgg.modules()) if (self.backbone == "vgg16" and loaded) else set()
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m not in skip:
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.backbone == "vgg16":
            return x.flip(1) - self.pixel_mean  # RGB -> BGR, Caffe means, 0-255 range
        return x / 127.5 - 1.0

    def _sources(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self._normalise(x)
        sources = []
        if self.backbone == "vgg16":
            for k in range(23):
                x = self.vgg[k](x)
            sources.append(self.l2norm(x))  # conv4_3, 38×38 for 300×300 inputs
            for k in range(23, len(self.vgg)):
                x = self.vgg[k](x)
            sources.append(x)  # conv7, 19×19
            for k, layer in enumerate(self.extras):
                x = F.relu(layer(x))
                if k % 2 == 1:
                    sources.append(x)  # conv8_2 .. conv11_2: 10, 5, 3, 1
            return sources
        x = self.stem(x)
        sources.append(x)
        for layer in self.extras:
            x = layer(x)
            sources.append(x)
        return sources

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """f: the source feature maps ``[[B, C_s, H_s, W_s]]``."""
        return self._sources(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loc [B, P, 4], conf [B, P, C + 1])`` for raw-pixel images ``[B, C, H, W]``."""
        return self.head(self._sources(x))

    def intermediates(self, x: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor], list[torch.Tensor]]:
        """``(output, source maps)``: the blocks a loss-prediction module reads (LL4AL)."""
        sources = self._sources(x)
        return self.head(sources), sources

    @torch.no_grad()
    def detect(self, x: torch.Tensor, **options) -> list[dict[str, torch.Tensor]]:
        """Detections of raw-pixel images ``x`` (see :func:`detect`)."""
        loc, conf = self(x)
        return detect(loc, conf, self.priors, **options)


def detect(loc: torch.Tensor, conf: torch.Tensor, priors: torch.Tensor, *,
           conf_threshold: float = 0.01, nms_threshold: float = 0.45, top_k: int = 200,
           max_detections: int = 200, variances: Sequence[float] = VARIANCES,
           row_chunk: int = 256) -> list[dict[str, torch.Tensor]]:
    """SSD inference: decode, per-class NMS, keep the best detections of every image (SSD §3).

    For every image and class c: the ``top_k`` priors by softmax score of c with score
    ``> conf_threshold`` go through greedy NMS at IoU ``nms_threshold``; the survivors of all
    classes are ranked by score and the first ``max_detections`` kept (SSD: threshold 0.01,
    NMS 0.45, 200 per image). Boxes are clipped to the image ``[0, 1]``.

    Args:
        loc: Offsets ``[B, P, 4]``.
        conf: Class logits ``[B, P, C + 1]`` (index 0 = background).
        priors: Default boxes ``[P, 4]`` (cxcywh).
        conf_threshold: Minimum class probability of a candidate.
        nms_threshold: IoU above which NMS suppresses the lower-scored box of a class.
        top_k: Candidates per class entering NMS.
        max_detections: Detections kept per image.
        variances: Encoding variances.
        row_chunk: (image, class) rows per NMS call (bounds the ``[rows, k, k]`` IoU memory).

    Returns:
        Per image ``{"boxes" [K, 4], "scores" [K], "labels" [K] (0 .. C-1), "priors" [K]}``
        (the index of the default box each detection comes from), sorted by score.
    """
    b, p, c1 = conf.shape
    n_cls = c1 - 1
    probs = torch.softmax(conf.float(), -1)[..., 1:].transpose(1, 2)  # [B, C, P]
    boxes = decode(loc.float(), priors).clamp(0.0, 1.0)  # [B, P, 4]
    k = min(top_k, p)
    scores, idx = probs.topk(k, dim=2)  # [B, C, k]
    cand = boxes[torch.arange(b, device=loc.device)[:, None, None], idx]  # [B, C, k, 4]
    valid = scores > conf_threshold
    rows = b * n_cls
    keep = torch.zeros(rows, k, dtype=torch.bool, device=loc.device)
    flat_boxes, flat_scores, flat_valid = cand.reshape(rows, k, 4), scores.reshape(rows, k), valid.reshape(rows, k)
    by_count = flat_valid.sum(1).argsort()  # rows with similar candidate counts share a chunk
    for s in range(0, rows, row_chunk):
        r = by_count[s:s + row_chunk]
        keep[r] = nms_batched(flat_boxes[r], flat_scores[r], flat_valid[r], nms_threshold)
    keep = keep.view(b, n_cls, k)
    labels = torch.arange(n_cls, device=loc.device)[None, :, None].expand(b, n_cls, k)
    out = []
    for i in range(b):
        m = keep[i]  # [C, k]
        sc, order = scores[i][m].sort(descending=True)
        order = order[:max_detections]
        out.append({"boxes": cand[i][m][order], "scores": sc[:max_detections],
                    "labels": labels[i][m][order], "priors": idx[i][m][order]})
    return out
