"""Core-set selection (Sener & Savarese, "Active Learning for Convolutional Neural Networks:
A Core-Set Approach", ICLR 2018).

The paper bounds the core-set loss by the covering radius δ of the labeled set and chooses the
batch that minimises it, max_i min_{j ∈ s} Δ(x_i, x_j) (its Eq. 5, the k-Center problem),
with Δ the Euclidean distance between penultimate-layer activations. Its Algorithm 1
(k-Center-Greedy, a 2-approximation) starts from the labeled set s⁰ and repeatedly adds
u = argmax_i min_{j ∈ s} Δ(x_i, x_j). That greedy algorithm is implemented here on
``z = model.features(x)`` through :func:`alstudy.selection.kcenter_greedy` with the labeled
embeddings as initial centres. The paper's robust refinement (a mixed-integer program with
outlier tolerance, its Algorithm 2) needs a MIP solver and is not included.

The embedding never uses labels, so core-set applies to regression as well.
"""

from __future__ import annotations

import torch

from ..models import predict
from ..selection import finite_centers, finite_first, kcenter_greedy
from .base import Strategy, check_budget, choice, integer, register

__all__ = ["embed_features", "CoreSet"]


def embed_features(model, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Penultimate features z = f(x) of the ``g ∘ f`` model, batched and without gradients.

    Args:
        model: An :class:`alstudy.models.ALModel` (eval mode is the caller's).
        x: Inputs ``[M, ...]``.
        batch_size: Inference batch size.

    Returns:
        Features ``[M, d]`` on the CPU.
    """
    return predict(model, x, batch_size, fn=lambda m, b: m.features(b))  # [M, d]


@register
class CoreSet(Strategy):
    """Greedy k-center on penultimate features with the labeled set as initial centres."""

    name = "coreset"
    options = {
        "batch_size": integer(1024, 1, help="inference batch size"),
        "start": choice("labeled", ("labeled", "origin"),
                        help="initial centres: the labeled embeddings (Sener & Savarese, "
                             "Algorithm 1) or the origin (largest-norm point first)"),
    }

    def select(self, model, data, pool, budget, generator, context=None) -> torch.Tensor:
        """Pick ``budget`` candidates by k-Center-Greedy (Sener & Savarese, Algorithm 1).

        Args:
            model: Trained task model.
            data: The dataset (classification or regression).
            pool: Labeled / unlabeled bookkeeping.
            budget: Number of examples to select.
            generator: CPU generator (used only to draw the candidate subset).
            context: Unused.

        Returns:
            LongTensor ``[budget]`` of training-set indices, in pick order.

        Raises:
            ValueError: If ``budget`` exceeds the number of candidates.
        """
        self.check_task(data.task)
        cands = self.candidate_indices(pool, generator)  # [M]
        check_budget(budget, cands.numel())
        model.eval()
        bs = self.opts["batch_size"]
        z = embed_features(model, data.x_train[cands], bs)  # [M, d]
        centers = None
        if self.opts["start"] == "labeled":
            labeled = pool.labeled
            centers = embed_features(model, data.x_train[labeled], bs) if labeled.numel() else \
                z.new_zeros(0, z.shape[1])  # [L, d]
            centers = finite_centers(centers, label=self.label, what="features")
        # candidates with non-finite features: warned about, ranked last
        pick = finite_first(z, budget, lambda keep, k: kcenter_greedy(z[keep], k, centers=centers),
                            label=self.label, what="features")
        return cands[pick]
