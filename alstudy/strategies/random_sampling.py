"""Uniform random sampling: the baseline every AL method must beat."""

from __future__ import annotations

import torch

from .base import Strategy, register


@register
class RandomSampling(Strategy):
    """Score every candidate with an independent uniform draw (= a uniformly random subset)."""

    name = "random"
    tasks = ("classification", "regression", "segmentation", "detection")

    def score(self, model, x, *, generator=None) -> torch.Tensor:
        return torch.rand(x.shape[0], generator=generator)  # [M]
