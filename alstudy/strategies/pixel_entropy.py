"""Mean pixel entropy: the standard uncertainty baseline for image-level AL in segmentation.

Each image x is scored by the average, over its H·W output pixels, of the predictive entropy
of the per-pixel softmax p(y_u | x) (Shannon, 1948; the image-level aggregation used e.g. by
Mackowiak et al., "CEREALS", 2018, and Sinha et al., VAAL, 2019, for their entropy baselines):

    s(x) = (1 / HW) Σ_u −Σ_c p_c(u) log p_c(u).

Scores are computed batch by batch from the model's upsampled logits ``[B, C, H, W]``; only
the ``[M]`` scores are kept.
"""

from __future__ import annotations

import torch

from ..models import predict
from .base import Strategy, integer, register
from .uncertainty import entropy

__all__ = ["mean_pixel_entropy", "PixelEntropy"]


def mean_pixel_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean over pixels of the per-pixel softmax entropy.

    Args:
        logits: Class scores ``[B, C, H, W]``.

    Returns:
        float64 scores ``[B]`` in nats.
    """
    p = torch.softmax(logits.double(), dim=1).movedim(1, -1)  # [B, H, W, C]
    return entropy(p).flatten(1).mean(1)  # [B]


@register
class PixelEntropy(Strategy):
    """Rank images by their mean pixel entropy (higher = label first)."""

    name = "pixel_entropy"
    tasks = ("segmentation",)
    options = {"batch_size": integer(64, 1, help="inference batch size")}

    def score(self, model, x, *, generator=None) -> torch.Tensor:
        """Mean pixel entropy of each image.

        Args:
            model: Trained segmentation model in eval mode (logits ``[B, C, H, W]``).
            x: Candidate images ``[M, C_in, H, W]``.
            generator: Unused (the score is deterministic).

        Returns:
            Scores ``[M]`` (float64).
        """
        return predict(model, x, self.opts["batch_size"],
                       fn=lambda m, b: mean_pixel_entropy(m(b)))  # [M]
