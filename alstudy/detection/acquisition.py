"""Acquisition scores of detection images: pseudo boxes, SAAL's perturbed loss, box entropies and
gradient embeddings, batched over images with ``torch.func`` (plus a per-image reference loop).

**Pseudo boxes.** SAAL's pseudo label ``ŷ`` (Eq 6) becomes, for a detector, the current
model's own detections: SSD inference (per-class NMS 0.45) keeps the detections with class
probability >= ``confidence``; an image with fewer than ``min_boxes`` of them keeps its
``min_boxes`` best detections whatever their score (and, if SSD returns none at all, the
default box with the largest object probability), so no image is scored on an empty set.

**Corresponding default boxes** (which priors the loss of a pseudo box is read at):

* ``source`` – the default box each detection was decoded from (one prior per pseudo box);
* ``matched`` – every default box that SSD's training-time matching assigns to a pseudo box
  (best prior per box plus IoU >= 0.5), i.e. the positives the image would have if its pseudo
  boxes were its labels.

**Pseudo-box classification loss** of image x: ``ℓ(x, ŷ; θ) = Σ_{corresponding priors j}
CE(conf_j(x; θ), ŷ_j)`` (a sum, not a mean, over the corresponding boxes).

**SAAL score** (§4.2): "we perturb the parameters to maximize the classification loss; and use
the summation of the perturbed loss from every corresponding detection box in the image x as
the acquisition score for x": ``ℓ(x, ŷ; θ + ε_x)`` with ``ε_x = ρ g_x / ‖g_x‖``,
``g_x = ∇_θ ℓ(x, ŷ; θ)`` over every trainable parameter (SAM's first-order step, Eq 3), one
perturbation per image, ``ŷ`` and the corresponding priors held fixed.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .boxes import decode, match

__all__ = ["CORRESPONDING", "PseudoTargets", "pseudo_boxes", "pseudo_targets", "pseudo_box_loss",
           "perturbed_detection_losses", "perturbed_detection_losses_loop", "box_entropies",
           "conf_head_gradients", "count_sketch"]

CORRESPONDING = ("source", "matched")
_NORM_EPS = 1e-12
#: Gradient entries per vmap chunk (chunk x parameters): about 64 MiB on the CPU, 512 MiB on a GPU.
_CHUNK_ELEMENTS = {"cpu": 1 << 24, "cuda": 1 << 27}


def _chunk(n_params: int, device: torch.device) -> int:
    budget = _CHUNK_ELEMENTS.get(device.type, _CHUNK_ELEMENTS["cuda"])
    return max(1, min(256, budget // max(n_params, 1)))


@torch.no_grad()
def pseudo_boxes(model: nn.Module, x: torch.Tensor, *, confidence: float = 0.5, min_boxes: int = 1,
                 nms_threshold: float = 0.45, batch_size: int = 64) -> list[dict[str, torch.Tensor]]:
    """The current model's detections used as pseudo labels (see the module docstring).

    Args:
        model: An SSD (eval mode is set here).
        x: Raw-pixel images ``[N, C, H, W]``.
        confidence: Smallest class probability of a pseudo box.
        min_boxes: Detections every image keeps at least (best first).
        nms_threshold: Per-class NMS IoU.
        batch_size: Images per forward pass.

    Returns:
        Per image ``{"boxes" [K, 4], "labels" [K], "scores" [K], "priors" [K]}`` (CPU).
    """
    from .ssd import detect

    was = model.training
    model.eval()
    try:
        return _pseudo_boxes(model, x, detect, confidence, min_boxes, nms_threshold, batch_size)
    finally:
        model.train(was)


def _pseudo_boxes(model, x, detect, confidence, min_boxes, nms_threshold, batch_size):
    device = next(model.parameters()).device
    out = []
    for s in range(0, x.shape[0], batch_size):
        loc, conf = model(x[s:s + batch_size].to(device))
        dets = detect(loc, conf, model.priors, conf_threshold=min(0.01, confidence),
                      nms_threshold=nms_threshold)
        probs = torch.softmax(conf.float(), -1)[..., 1:]  # [B, P, C]
        for i, d in enumerate(dets):
            keep = d["scores"] >= confidence
            if int(keep.sum()) < min_boxes:
                keep = torch.arange(d["scores"].numel(), device=keep.device) < min_boxes
            d = {k: v[keep] for k, v in d.items()}
            if d["scores"].numel() == 0 and min_boxes > 0:  # nothing above SSD's 0.01 floor
                best, j = probs[i].max(1).values.max(0)
                cls = probs[i, j].argmax()
                box = decode(loc[i, j][None].float(), model.priors[j][None]).clamp(0, 1)
                d = {"boxes": box, "scores": best[None], "labels": cls[None], "priors": j[None]}
            out.append({k: v.cpu() for k, v in d.items()})
    return out


class PseudoTargets:
    """Per-image corresponding priors and their pseudo classes, padded to a common length.

    Attributes:
        priors: ``[N, K]`` prior indices (0 where padded).
        classes: ``[N, K]`` target classes with background 0 and class c as ``c + 1``.
        weight: ``[N, K]`` 1 for a corresponding prior, 0 for padding.
    """

    def __init__(self, priors: torch.Tensor, classes: torch.Tensor, weight: torch.Tensor):
        self.priors, self.classes, self.weight = priors, classes, weight

    def __len__(self) -> int:
        return int(self.priors.shape[0])

    def slice(self, s: int, e: int, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rows ``s:e`` as ``(priors, classes, weight)`` on ``device``."""
        return tuple(t[s:e].to(device) for t in (self.priors, self.classes, self.weight))


def pseudo_targets(dets: Sequence[dict[str, torch.Tensor]], priors: torch.Tensor,
                   corresponding: str = "source", threshold: float = 0.5) -> PseudoTargets:
    """Which default boxes carry each image's pseudo-box loss, and with which class.

    Args:
        dets: Pseudo boxes per image (:func:`pseudo_boxes`).
        priors: Default boxes ``[P, 4]`` (cxcywh).
        corresponding: ``"source"`` or ``"matched"`` (see the module docstring).
        threshold: Matching IoU for ``"matched"`` (SSD: 0.5).

    Returns:
        A :class:`PseudoTargets` (CPU).

    Raises:
        ValueError: Unknown ``corresponding``.
    """
    if corresponding not in CORRESPONDING:
        raise ValueError(f"corresponding must be one of {list(CORRESPONDING)}, got {corresponding!r}")
    rows = []
    cpu_priors = priors.cpu()
    for d in dets:
        if corresponding == "source":
            rows.append((d["priors"].long(), d["labels"].long() + 1))
        else:
            _, target, _ = match(d["boxes"].float(), d["labels"].long(), cpu_priors, threshold)
            pos = (target > 0).nonzero().flatten()
            rows.append((pos, target[pos]))
    k = max([1] + [r[0].numel() for r in rows])
    n = len(rows)
    idx = torch.zeros(n, k, dtype=torch.long)
    cls = torch.zeros(n, k, dtype=torch.long)
    w = torch.zeros(n, k)
    for i, (p, c) in enumerate(rows):
        idx[i, :p.numel()], cls[i, :p.numel()], w[i, :p.numel()] = p, c, 1.0
    return PseudoTargets(idx, cls, w)


def pseudo_box_loss(conf: torch.Tensor, priors: torch.Tensor, classes: torch.Tensor,
                    weight: torch.Tensor) -> torch.Tensor:
    """Summed classification loss of the corresponding priors, per image.

    Args:
        conf: Class logits ``[B, P, C + 1]``.
        priors: ``[B, K]`` corresponding prior indices.
        classes: ``[B, K]`` pseudo classes (``c + 1``).
        weight: ``[B, K]`` 1 = counts, 0 = padding.

    Returns:
        ``[B]`` ``Σ_j weight_j · CE(conf[prior_j], class_j)``.
    """
    logits = conf.gather(1, priors[..., None].expand(-1, -1, conf.shape[-1]))  # [B, K, C+1]
    ce = F.cross_entropy(logits.flatten(0, 1).float(), classes.flatten(), reduction="none")
    return (ce.view(priors.shape) * weight).sum(1)


def _split_params(model: nn.Module, names: set[str] | None = None):
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad and (names is None or n in names)}
    frozen = {n: p.detach() for n, p in model.named_parameters() if n not in params}
    frozen.update(dict(model.named_buffers()))
    return params, frozen


def perturbed_detection_losses(model: nn.Module, x: torch.Tensor, targets: PseudoTargets, *,
                               rho: float = 0.05, chunk_size: int | None = None
                               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SAAL's detection score, batched: ``ℓ(x, ŷ; θ + ρ g_x/‖g_x‖)`` per image (module docstring).

    ``torch.func.vmap`` over images of the per-image gradient and of the forward pass at the
    image's own perturbed parameters (BatchNorm uses its running statistics: eval mode).

    Args:
        model: An SSD; scored in eval mode, parameters untouched, mode restored.
        x: Raw-pixel images ``[N, C, H, W]``.
        targets: Corresponding priors and pseudo classes (:func:`pseudo_targets`).
        rho: Radius ρ >= 0 (SAAL: 0.05).
        chunk_size: Images per vmap chunk (``None``: about 2^24 gradient entries per chunk on
            the CPU, 2^27 on a GPU).

    Returns:
        ``(perturbed [N], clean [N], grad_norm [N])`` on the CPU.
    """
    from torch.func import functional_call, grad_and_value, vmap

    if not (isinstance(rho, (int, float)) and rho >= 0):
        raise ValueError(f"rho must be a number >= 0, got {rho!r}")
    params, frozen = _split_params(model)
    device = next(iter(params.values())).device
    chunk = chunk_size or _chunk(sum(p.numel() for p in params.values()), device)
    was = model.training
    model.eval()

    def loss(p, xi, pri, cls, w):
        _, conf = functional_call(model, (p, frozen), (xi[None],))
        return pseudo_box_loss(conf, pri[None], cls[None], w[None])[0]

    gv = grad_and_value(loss)

    def one(xi, pri, cls, w):
        g, clean = gv(params, xi, pri, cls, w)
        norm = torch.sqrt(sum(v.square().sum() for v in g.values()))
        scale = rho / (norm + _NORM_EPS)
        pert = {k: params[k] + scale * g[k] for k in params}
        return loss(pert, xi, pri, cls, w), clean, norm

    outs = []
    try:
        for s in range(0, x.shape[0], chunk):
            pri, cls, w = targets.slice(s, s + chunk, device)
            outs.append([t.detach().cpu() for t in vmap(one)(x[s:s + chunk].to(device), pri, cls, w)])
    finally:
        model.train(was)
    if not outs:
        return torch.empty(0), torch.empty(0), torch.empty(0)
    return tuple(torch.cat([o[i] for o in outs]) for i in range(3))


def perturbed_detection_losses_loop(model: nn.Module, x: torch.Tensor, targets: PseudoTargets, *,
                                    rho: float = 0.05) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reference for :func:`perturbed_detection_losses`: one deep copy of the model per image.

    For each image (batch size 1): copy the model, compute the pseudo-box loss, back-propagate,
    move every parameter by ``ρ g/‖g‖``, compute the loss again. Slow by construction.

    Returns:
        ``(perturbed [N], clean [N], grad_norm [N])`` on the CPU.
    """
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(x.shape[0]):
        net = copy.deepcopy(model)
        xi = x[i:i + 1].to(device)
        pri, cls, w = targets.slice(i, i + 1, device)
        loss = pseudo_box_loss(net(xi)[1], pri, cls, w)[0]
        params = [p for p in net.parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
        norm = torch.sqrt(sum(g.square().sum() for g in grads))
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.add_(g * (rho / (norm + _NORM_EPS)))
            out.append((float(pseudo_box_loss(net(xi)[1], pri, cls, w)[0]), float(loss), float(norm)))
    model.train(was)
    t = torch.tensor(out, dtype=torch.float64).reshape(-1, 3)
    return t[:, 0], t[:, 1], t[:, 2]


@torch.no_grad()
def box_entropies(model: nn.Module, x: torch.Tensor, targets: PseudoTargets,
                  batch_size: int = 64) -> torch.Tensor:
    """Entropy of the (C + 1)-way class distribution at every corresponding prior.

    Args:
        model: An SSD (eval mode is set here).
        x: Raw-pixel images ``[N, C, H, W]``.
        targets: Corresponding priors (:func:`pseudo_targets`).
        batch_size: Images per forward pass.

    Returns:
        ``[N, K]`` entropies in nats (0 at padding; see ``targets.weight``).
    """
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    try:
        for s in range(0, x.shape[0], batch_size):
            pri, _, w = targets.slice(s, s + batch_size, device)
            _, conf = model(x[s:s + batch_size].to(device))
            p = torch.softmax(conf.double(), -1).gather(1, pri[..., None].expand(-1, -1, conf.shape[-1]))
            h = -(p * torch.log(p.clamp_min(1e-300))).sum(-1)  # [B, K]
            out.append((h * w).cpu())
    finally:
        model.train(was)
    return torch.cat(out) if out else torch.empty(0, 1, dtype=torch.float64)


def conf_head_gradients(model: nn.Module, x: torch.Tensor, targets: PseudoTargets, *,
                        chunk_size: int | None = None, sketch: torch.Tensor | None = None,
                        sketch_sign: torch.Tensor | None = None, sketch_dim: int | None = None
                        ) -> torch.Tensor:
    """Per-image gradients of the pseudo-box loss w.r.t. SSD's class-score convolutions.

    The class-score convolutions (``model.head.conf``) are the detector's last classification
    layer: BADGE's "gradient embedding w.r.t. the parameter of the last layer" with the pseudo
    boxes as pseudo labels. The feature maps are computed once; the per-image gradients of the
    head are batched with ``torch.func.vmap``.

    Args:
        model: An SSD (eval mode is set here, restored after).
        x: Raw-pixel images ``[N, C, H, W]``.
        targets: Corresponding priors and pseudo classes.
        chunk_size: Images per vmap chunk.
        sketch: Optional ``[D]`` bucket of every gradient entry (CountSketch).
        sketch_sign: ``[D]`` ±1 sign of every gradient entry.
        sketch_dim: Number of buckets (with ``sketch``).

    Returns:
        ``[N, D]`` gradients (D = number of class-score parameters), or ``[N, sketch_dim]``
        sketched embeddings (float64, CPU).
    """
    from torch.func import functional_call, grad, vmap

    head = model.head
    names = {f"conf.{n}" for n, _ in head.conf.named_parameters()}
    params, frozen = _split_params(head, names)
    order = sorted(params)
    n_params = sum(params[k].numel() for k in order)
    device = next(model.parameters()).device
    chunk = chunk_size or _chunk(n_params, device)
    was = model.training
    model.eval()

    def loss(p, sources, pri, cls, w):
        _, conf = functional_call(head, (p, frozen), ([s[None] for s in sources],))
        return pseudo_box_loss(conf, pri[None], cls[None], w[None])[0]

    g_fn = vmap(grad(loss), in_dims=(None, 0, 0, 0, 0))
    outs = []
    try:
        for s in range(0, x.shape[0], chunk):
            with torch.no_grad():
                sources = model.features(x[s:s + chunk].to(device))
            pri, cls, w = targets.slice(s, s + chunk, device)
            g = g_fn(params, sources, pri, cls, w)
            flat = torch.cat([g[k].flatten(1) for k in order], 1).double()  # [B, D]
            if sketch is not None:
                flat = count_sketch(flat, sketch.to(flat.device), sketch_sign.to(flat.device), sketch_dim)
            outs.append(flat.cpu())
    finally:
        model.train(was)
    return torch.cat(outs) if outs else torch.empty(0, sketch_dim or n_params, dtype=torch.float64)


def count_sketch(v: torch.Tensor, bucket: torch.Tensor, sign: torch.Tensor, dim: int) -> torch.Tensor:
    """CountSketch of the rows of ``v`` (Charikar et al., 2002): ``out[:, h(j)] += s(j) v[:, j]``.

    Inner products and squared distances of sketched rows equal the originals in expectation.

    Args:
        v: ``[B, D]``.
        bucket: ``[D]`` bucket indices in ``[0, dim)``.
        sign: ``[D]`` ±1.
        dim: Sketch dimension.

    Returns:
        ``[B, dim]``.
    """
    out = v.new_zeros(v.shape[0], dim)
    return out.index_add_(1, bucket, v * sign)
