"""Single-pass uncertainty scores on the softmax output p = softmax(T(x)).

Each score is "higher = more uncertain = label first" (Settles, *Active Learning Literature
Survey*, 2009, Section 3.1):

* ``entropy``: H(p) = −Σ_c p_c log p_c (Shannon, 1948; survey Eq 2.3; SAAL §2 f_acq^Ent).
* ``margin``: −(p_(1) − p_(2)), the negated gap between the two largest probabilities
  (Scheffer et al., 2001; survey Eq 2.2).
* ``least_confidence``: 1 − max_c p_c (Lewis & Gale, 1994; survey Eq 2.1; the SAAL paper calls
  it "variation ratio" f_acq^Var, not to be confused with the MC-dropout variation ratio).

Entropy uses the natural logarithm; SAAL writes log₂, which only rescales the score and
leaves the ranking unchanged.
"""

from __future__ import annotations

import torch

from ..models import predict
from .base import Strategy, integer, register

__all__ = ["softmax_probs", "entropy", "margin", "least_confidence", "Entropy", "Margin",
           "LeastConfidence"]


def softmax_probs(model, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Predictive probabilities of a classifier, in float64.

    Args:
        model: A classification model returning logits ``[M, C]`` (eval mode is the caller's).
        x: Inputs ``[M, ...]``.
        batch_size: Inference batch size.

    Returns:
        ``softmax(model(x))`` as a float64 CPU tensor ``[M, C]``.
    """
    return torch.softmax(predict(model, x, batch_size).double(), dim=1)  # [M, C]


def entropy(p: torch.Tensor) -> torch.Tensor:
    """Shannon entropy of each row, H(p) = −Σ_c p_c log p_c, with 0 log 0 = 0.

    Args:
        p: Probabilities ``[..., C]`` (rows sum to 1).

    Returns:
        Entropies ``[...]`` in nats.
    """
    return -(p * torch.log(p.clamp_min(1e-300))).sum(-1)


def margin(p: torch.Tensor) -> torch.Tensor:
    """Negated best-vs-second-best margin −(p_(1) − p_(2)) of each row.

    Args:
        p: Probabilities ``[M, C]`` with ``C >= 2``.

    Returns:
        Scores ``[M]`` in ``[-1, 0]`` (0 = a tie between the two most likely classes).

    Raises:
        ValueError: If ``p`` has fewer than two classes.
    """
    if p.shape[-1] < 2:
        raise ValueError(f"margin needs at least 2 classes, got probabilities of shape {tuple(p.shape)}")
    top2 = p.topk(2, dim=-1).values  # [M, 2]
    return -(top2[..., 0] - top2[..., 1])


def least_confidence(p: torch.Tensor) -> torch.Tensor:
    """Least confidence 1 − max_c p_c of each row.

    Args:
        p: Probabilities ``[M, C]``.

    Returns:
        Scores ``[M]`` in ``[0, 1 − 1/C]``.
    """
    return 1.0 - p.max(dim=-1).values


class _SoftmaxScore(Strategy):
    """Shared scoring path of the single-pass softmax uncertainties."""

    tasks = ("classification",)
    options = {"batch_size": integer(1024, 1, help="inference batch size")}

    def score(self, model, x, *, generator=None) -> torch.Tensor:
        """Uncertainty of each input (higher = label first).

        Args:
            model: Trained classifier in eval mode.
            x: Candidate inputs ``[M, ...]``.
            generator: Unused (the score is deterministic).

        Returns:
            Scores ``[M]`` (float64).
        """
        return self.from_probs(softmax_probs(model, x, self.opts["batch_size"]))

    @staticmethod
    def from_probs(p: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Score ``[M]`` from probabilities ``[M, C]``."""
        raise NotImplementedError


@register
class Entropy(_SoftmaxScore):
    """Predictive entropy H(p(y|x)) of the softmax output (Shannon, 1948)."""

    name = "entropy"

    @staticmethod
    def from_probs(p: torch.Tensor) -> torch.Tensor:
        """H(p) per row, see :func:`entropy`."""
        return entropy(p)


@register
class Margin(_SoftmaxScore):
    """Smallest margin between the two most probable classes (Scheffer et al., 2001)."""

    name = "margin"

    @staticmethod
    def from_probs(p: torch.Tensor) -> torch.Tensor:
        """−(p_(1) − p_(2)) per row, see :func:`margin`."""
        return margin(p)


@register
class LeastConfidence(_SoftmaxScore):
    """Lowest probability of the predicted class (Lewis & Gale, 1994)."""

    name = "least_confidence"

    @staticmethod
    def from_probs(p: torch.Tensor) -> torch.Tensor:
        """1 − max_c p_c per row, see :func:`least_confidence`."""
        return least_confidence(p)
