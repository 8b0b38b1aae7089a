"""Fit and evaluate task models: Adam, SGD, SAM and ASAM; step schedules; crop/flip augmentation.

A strategy may contribute an auxiliary module and loss (e.g. learning-loss's loss predictor)
through :class:`TrainingHook`; the hook's parameters are optimised jointly with the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .optim import SAM

__all__ = ["TrainConfig", "TrainingHook", "fit", "evaluate", "resolve_device", "crop_flip",
           "OPTIMIZERS"]

OPTIMIZERS = ("adam", "sgd", "sam", "asam")
AUGMENTATIONS = ("none", "crop_flip")


@dataclass
class TrainConfig:
    """Training hyper-parameters (one AL cycle).

    Attributes:
        epochs: Passes over the labeled set.
        batch_size: Mini-batch size.
        optimizer: ``adam``, ``sgd``, ``sam`` or ``asam`` (SAM/ASAM wrap ``sam_base``).
        lr: Learning rate.
        momentum: SGD momentum.
        weight_decay: L2 weight decay.
        lr_milestones: Epochs at which the learning rate is multiplied by ``lr_gamma``.
        lr_gamma: Decay factor.
        augment: ``none`` or ``crop_flip`` (pad-4 random crop + horizontal flip, images only).
        sam_rho: SAM/ASAM neighbourhood radius ρ.
        sam_base: Base optimizer of SAM/ASAM: ``sgd`` or ``adam``.
        progress: Show a per-epoch progress bar.
    """

    epochs: int = 50
    batch_size: int = 96
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
    """Per-sample loss ``[B]``: cross-entropy for classification, squared error for regression."""
    if task == "regression":
        return (out - y) ** 2
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


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, *,
        task: str = "classification", generator: torch.Generator | None = None,
        device: torch.device | str = "cpu", hook: TrainingHook | None = None) -> dict:
    """Train ``model`` on ``(x, y)`` in place.

    Args:
        model: An :class:`alstudy.models.ALModel` (moved to ``device``).
        x: Inputs ``[N, ...]`` (CPU or device).
        y: Targets ``[N]``.
        cfg: Hyper-parameters.
        task: ``classification`` or ``regression``.
        generator: CPU generator for shuffling and augmentation (seeded by the caller).
        device: Where to train.
        hook: Optional auxiliary module and loss (see :class:`TrainingHook`).

    Returns:
        ``{"loss": [mean task loss per epoch], "aux_loss": [...]}``.
    """
    device = torch.device(device)
    generator = generator or torch.Generator().manual_seed(0)
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
    n = x.shape[0]
    history: dict[str, list[float]] = {"loss": [], "aux_loss": []}
    augment = cfg.augment == "crop_flip" and x.dim() == 4

    def batch_loss(xb: torch.Tensor, yb: torch.Tensor, epoch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if hook is None:
            per = _task_loss(model(xb), yb, task)
            return per.mean(), per.detach(), torch.zeros((), device=device)
        out, blocks = model.intermediates(xb)
        per = _task_loss(out, yb, task)
        aux = hook.loss(out, blocks, yb, per, epoch)
        return per.mean() + aux, per.detach(), aux.detach()

    for epoch in tqdm(range(cfg.epochs), desc="train", leave=False, disable=not cfg.progress):
        order = torch.randperm(n, generator=generator)
        tot, tot_aux = 0.0, 0.0
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            xb, yb = x[idx].to(device, non_blocking=True), y[idx].to(device, non_blocking=True)
            if augment:
                xb = crop_flip(xb, generator)
            if isinstance(opt, SAM):
                loss, per, aux = batch_loss(xb, yb, epoch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.first_step(zero_grad=True)
                batch_loss(xb, yb, epoch)[0].backward()
                opt.second_step(zero_grad=True)
            else:
                loss, per, aux = batch_loss(xb, yb, epoch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            tot += float(per.sum())
            tot_aux += float(aux) * len(idx)
        sched.step()
        history["loss"].append(tot / max(n, 1))
        history["aux_loss"].append(tot_aux / max(n, 1))
    model.eval()
    return history


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, task: str = "classification",
             batch_size: int = 1024, device: torch.device | str = "cpu",
             target_scale: float = 1.0) -> dict[str, float]:
    """Test metrics: ``{"accuracy"}`` for classification, ``{"mae"}`` (original units) for regression."""
    model.to(device).eval()
    outs = [model(x[i : i + batch_size].to(device)).cpu() for i in range(0, x.shape[0], batch_size)]
    out = torch.cat(outs) if outs else torch.empty(0)
    if task == "regression":
        return {"mae": float((out - y).abs().mean()) * target_scale}
    acc = float((out.argmax(1) == y).float().mean()) if len(y) else math.nan
    return {"accuracy": acc}
