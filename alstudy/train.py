"""Fit and evaluate task models: Adam, SGD, SAM and ASAM; step schedules; crop/flip augmentation.

A strategy may contribute an auxiliary module and loss (e.g. learning-loss's loss predictor)
through :class:`TrainingHook`; the hook's parameters are optimised jointly with the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .metrics import IGNORE_INDEX, confusion_matrix, segmentation_scores
from .optim import SAM

__all__ = ["TrainConfig", "TrainingHook", "fit", "train_epochs", "evaluate", "resolve_device",
           "crop_flip", "OPTIMIZERS"]

OPTIMIZERS = ("adam", "sgd", "sam", "asam")
AUGMENTATIONS = ("none", "crop_flip", "ssd")  # ssd: detection only


@dataclass
class TrainConfig:
    """Training hyper-parameters (one AL cycle).

    Attributes:
        epochs: Passes over the labeled set.
        batch_size: Mini-batch size.
        batch_split: ``last_partial`` (the paper's loaders: full batches and one smaller last
            batch, e.g. 100 = 96 + 4) or ``equal`` (``ceil(N / batch_size)`` batches of nearly
            equal size, e.g. 100 = 50 + 50), so no labeled-set size ends on a tiny last step.
        optimizer: ``adam``, ``sgd``, ``sam`` or ``asam`` (SAM/ASAM wrap ``sam_base``).
        lr: Learning rate.
        momentum: SGD momentum.
        weight_decay: L2 weight decay.
        lr_milestones: Epochs at which the learning rate is multiplied by ``lr_gamma``.
        lr_gamma: Decay factor.
        augment: ``none``, ``crop_flip`` (pad-4 random crop + horizontal flip, images only) or
            ``ssd`` (SSD's zoom-out / crop / flip of images and boxes, detection only).
        sam_rho: SAM/ASAM neighbourhood radius ρ.
        sam_base: Base optimizer of SAM/ASAM: ``sgd`` or ``adam``.
        progress: Show a per-epoch progress bar.
    """

    epochs: int = 50
    batch_size: int = 96
    batch_split: str = "last_partial"
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_milestones: list[int] = field(default_factory=list)
    lr_gamma: float = 0.1
    augment: str = "none"
    sam_rho: float = 0.05
    sam_base: str = "adam"
    progress: bool = False


class TrainingHook(Protocol):
    """Auxiliary module and loss a strategy adds to training (e.g. learning loss).

    ``loss`` receives the model output, its inner blocks (``model.intermediates``), the
    per-sample task losses ``[B]`` and the epoch, and returns a scalar added to the task loss.
    A hook may also define ``setup(cfg)``; :func:`fit` calls it once with the
    :class:`TrainConfig` before training (e.g. to read the number of epochs).
    """

    module: nn.Module

    def loss(self, out: torch.Tensor, blocks: list[torch.Tensor], y: torch.Tensor,
             per_sample_loss: torch.Tensor, epoch: int) -> torch.Tensor: ...


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU; anything else is passed to ``torch.device``.

    Raises:
        alstudy.params.ParamError: A CUDA device that this machine or torch build does not have.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        from .params import ParamError

        if not torch.cuda.is_available():
            build = "a CPU-only torch build" if torch.version.cuda is None else "no usable GPU"
            raise ParamError(f"parameter 'device' = {device!r}: this machine has {build} "
                             f"(torch {torch.__version__}); use 'auto' or 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ParamError(f"parameter 'device' = {device!r}: this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s); allowed: 'cuda:0' to "
                             f"'cuda:{torch.cuda.device_count() - 1}'")
    return dev


def crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random ``pad``-pixel crop (zero padding) and horizontal flip of a batch ``[B, C, H, W]``."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))  # [B, C, H+2p, W+2p]
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)  # [B, H]
    cols = dx[:, None] + torch.arange(w, device=x.device)  # [B, W]
    flip = torch.rand(b, generator=generator).to(x.device) < 0.5
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    out = padded[torch.arange(b, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()  # [B, H, W, C] -> [B, C, H, W]


def _task_loss(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """Per-sample loss ``[B]``: cross-entropy for classification, squared error for regression,
    and for segmentation each image's per-pixel cross-entropy averaged over its scored pixels
    (target 255 = ignore; an image without scored pixels has loss 0)."""
    if task == "regression":
        return (out - y) ** 2
    if task == "segmentation":
        per_pixel = F.cross_entropy(out, y, reduction="none", ignore_index=IGNORE_INDEX)  # [B, H, W]
        valid = (y != IGNORE_INDEX).flatten(1).sum(1).clamp_min(1)  # [B]
        return per_pixel.flatten(1).sum(1) / valid
    return F.cross_entropy(out, y, reduction="none")


def _make_optimizer(params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    base = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}
    kwargs: dict = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if cfg.optimizer in ("adam", "sgd"):
        if cfg.optimizer == "sgd":
            kwargs["momentum"] = cfg.momentum
        return base[cfg.optimizer](params, **kwargs)
    if cfg.optimizer in ("sam", "asam"):
        if cfg.sam_base == "sgd":
            kwargs["momentum"] = cfg.momentum
        return SAM(params, base[cfg.sam_base], rho=cfg.sam_rho, adaptive=cfg.optimizer == "asam",
                   **kwargs)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; allowed: {list(OPTIMIZERS)}")


def batches(order: torch.Tensor, batch_size: int, split: str = "last_partial") -> list[torch.Tensor]:
    """Split a permutation ``[N]`` into mini-batches of indices.

    Args:
        order: Shuffled indices.
        batch_size: Largest batch.
        split: ``last_partial`` (full batches, then the remainder) or ``equal``
            (``ceil(N / batch_size)`` batches whose sizes differ by at most one).

    Returns:
        The batches, in order; together they hold every index once.

    Raises:
        ValueError: Unknown ``split``.
    """
    if split == "last_partial":
        return list(order.split(batch_size))
    if split == "equal":
        k = max(1, -(-order.numel() // batch_size))
        return [b for b in torch.tensor_split(order, k) if b.numel()]
    raise ValueError(f"batch_split = {split!r} is invalid; allowed: 'last_partial', 'equal'")


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, *,
        task: str = "classification", generator: torch.Generator | None = None,
        device: torch.device | str = "cpu", hook: TrainingHook | None = None) -> dict:
    """Train ``model`` on ``(x, y)`` in place.

    Args:
        model: An :class:`alstudy.models.ALModel` (moved to ``device``).
        x: Inputs ``[N, ...]`` (CPU or device).
        y: Targets ``[N]``.
        cfg: Hyper-parameters.
        task: ``classification``, ``regression``, ``segmentation`` or ``detection`` (targets: box lists).
        generator: CPU generator for shuffling and augmentation (seeded by the caller).
        device: Where to train.
        hook: Optional auxiliary module and loss (see :class:`TrainingHook`).

    Returns:
        ``{"loss": [mean task loss per epoch], "aux_loss": [...]}``.
    """
    if task == "detection":  # box-list targets, MultiBox loss: alstudy.detection.train
        from .detection.train import fit_detector
        return fit_detector(model, x, y, cfg, generator=generator, device=device, hook=hook)
    device = torch.device(device)
    generator = generator or torch.Generator().manual_seed(0)
    augment = cfg.augment == "crop_flip" and x.dim() == 4
    if augment and task == "segmentation":
        raise ValueError("parameter 'augment' = 'crop_flip' shifts images only; segmentation "
                         "needs the same transform on the targets: use augment 'none'")

    def load(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xb, yb = x[idx].to(device, non_blocking=True), y[idx].to(device, non_blocking=True)
        return (crop_flip(xb, generator) if augment else xb), yb

    def batch_loss(batch: tuple[torch.Tensor, torch.Tensor], epoch: int):
        xb, yb = batch
        if hook is None:
            per = _task_loss(model(xb), yb, task)
            return per.mean(), per.detach().sum(), torch.zeros((), device=device), len(xb)
        out, blocks = model.intermediates(xb)
        per = _task_loss(out, yb, task)
        aux = hook.loss(out, blocks, yb, per, epoch)
        return per.mean() + aux, per.detach().sum(), aux.detach(), len(xb)

    return train_epochs(model, x.shape[0], cfg, load, batch_loss, generator=generator,
                        device=device, hook=hook)


def train_epochs(model: nn.Module, n: int, cfg: TrainConfig,
                 load: Callable[[torch.Tensor], Any],
                 batch_loss: Callable[[Any, int], tuple],
                 *, generator: torch.Generator, device: torch.device,
                 hook: TrainingHook | None = None, split: str | None = None) -> dict:
    """The epoch / mini-batch loop of :func:`fit` (and of the detection trainer), in place.

    Sets up the optimizer (model and hook parameters) and step schedule of ``cfg``; each epoch
    shuffles the ``n`` examples with ``generator``, splits them by ``split`` (default
    ``cfg.batch_split``) and takes one update per batch (two steps for SAM/ASAM).

    Args:
        model: The model (moved to ``device``, trained, left in eval mode).
        n: Number of training examples.
        cfg: Hyper-parameters.
        load: Batch indices ``[b]`` -> the batch on ``device`` (augmented there if needed).
        batch_loss: ``(batch, epoch)`` -> ``(loss to minimise, recorded task loss summed over
            the batch's weight, auxiliary loss per unit of weight, weight)``.
        generator: CPU generator for shuffling.
        device: Where to train.
        hook: Optional auxiliary module (see :class:`TrainingHook`), optimised with the model.
        split: Batch split (``None`` = ``cfg.batch_split``; see :func:`batches`).

    Returns:
        ``{"loss": [task loss per unit of weight, per epoch], "aux_loss": [...]}``.
    """
    model.to(device).train()
    params = list(model.parameters())
    if hook is not None:
        if hasattr(hook, "setup"):
            hook.setup(cfg)
        hook.module.to(device).train()
        params += list(hook.module.parameters())
    opt = _make_optimizer(params, cfg)
    sched_opt = opt.base_optimizer if isinstance(opt, SAM) else opt
    sched = torch.optim.lr_scheduler.MultiStepLR(sched_opt, list(cfg.lr_milestones), cfg.lr_gamma)
    history: dict[str, list[float]] = {"loss": [], "aux_loss": []}
    for epoch in tqdm(range(cfg.epochs), desc="train", leave=False, disable=not cfg.progress):
        order = torch.randperm(n, generator=generator)
        tot, tot_aux, seen = 0.0, 0.0, 0
        for idx in batches(order, cfg.batch_size, split or cfg.batch_split):
            batch = load(idx)
            loss, recorded, aux, weight = batch_loss(batch, epoch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if isinstance(opt, SAM):
                opt.first_step(zero_grad=True)
                batch_loss(batch, epoch)[0].backward()
                opt.second_step(zero_grad=True)
            else:
                opt.step()
            tot += float(recorded)
            tot_aux += float(aux) * weight
            seen += weight
        sched.step()
        history["loss"].append(tot / max(seen, 1))
        history["aux_loss"].append(tot_aux / max(seen, 1))
    model.eval()
    return history


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, task: str = "classification",
             batch_size: int = 1024, device: torch.device | str = "cpu",
             target_scale: float = 1.0) -> dict[str, float]:
    """Test metrics: ``{"accuracy"}`` for classification, ``{"mae"}`` (original units) for
    regression, ``{"miou", "pixel_accuracy"}`` for segmentation (one confusion matrix
    accumulated batch by batch, target 255 ignored; :mod:`alstudy.metrics`), ``{"map50",
    "map50_all"}`` (VOC mAP, 11-point and all-point) for detection."""
    if task == "detection":
        from .detection.train import evaluate_detector
        return evaluate_detector(model, x, y, batch_size=batch_size, device=device)
    model.to(device).eval()
    if task == "segmentation":
        cm = None
        for i in range(0, x.shape[0], batch_size):
            out = model(x[i : i + batch_size].to(device))  # [B, C, H, W]
            batch = confusion_matrix(out.argmax(1), y[i : i + batch_size], out.shape[1])
            cm = batch if cm is None else cm + batch
        return segmentation_scores(cm) if cm is not None else {"miou": math.nan,
                                                               "pixel_accuracy": math.nan}
    outs = [model(x[i : i + batch_size].to(device)).cpu() for i in range(0, x.shape[0], batch_size)]
    out = torch.cat(outs) if outs else torch.empty(0)
    if task == "regression":
        return {"mae": float((out - y).abs().mean()) * target_scale}
    acc = float((out.argmax(1) == y).float().mean()) if len(y) else math.nan
    return {"accuracy": acc}
