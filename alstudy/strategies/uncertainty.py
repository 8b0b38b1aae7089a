"""Single-pass uncertainty scores on the softmax output p = softmax(T(x)).

* ``entropy``: H(p) = −Σ_c p_c log p_c (Shannon, 1948; Settles' survey Eq 2.3).
* ``margin``: −(p_(1) − p_(2)), the negated gap between the two largest probabilities.
* ``least_confidence``: 1 − max_c p_c.
"""

from __future__ import annotations

import torch

from ..models import predict
from .base import Strategy, integer, register


def softmax_probs(model, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Predictive probabilities ``[M, C]`` in float64 (eval mode, batched, no grad)."""
    return torch.softmax(predict(model, x, batch_size).double(), dim=1)


def entropy(p: torch.Tensor) -> torch.Tensor:
    """Shannon entropy of each row of ``p`` ``[M, C] -> [M]`` (0 log 0 = 0)."""
    return -(p * torch.log(p.clamp_min(1e-300))).sum(1)


class _SoftmaxScore(Strategy):
    tasks = ("classification",)
    options = {"batch_size": integer(1024, 1, help="inference batch size")}

    def score(self, model, x, *, generator=None) -> torch.Tensor:
        return self.from_probs(softmax_probs(model, x, self.opts["batch_size"]))

    @staticmethod
    def from_probs(p: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


@register
class Entropy(_SoftmaxScore):
    """Predictive entropy H(p(y|x))."""

    name = "entropy"

    @staticmethod
    def from_probs(p: torch.Tensor) -> torch.Tensor:
        return entropy(p)
