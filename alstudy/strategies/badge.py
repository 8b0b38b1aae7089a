"""BADGE: Batch Active learning by Diverse Gradient Embeddings (Ash et al., ICLR 2020).

For a candidate x with last-layer input z(x) ∈ R^d, softmax output p(x) ∈ R^C and pseudo label
ŷ = argmax_c p_c, the gradient of the cross-entropy ℓ(x, ŷ) with respect to the weight W of
the last linear layer has rows (BADGE Eq. 1; NoiseStability Eq. 9)

    g_x[c] = (p_c − 1[ŷ = c]) · z(x),   i.e.  g_x = (p − e_ŷ) ⊗ z ∈ R^{C·d}.

BADGE picks the batch by k-means++ seeding (Arthur & Vassilvitskii, 2007) on {g_x}: each next
point is drawn with probability ∝ D(x)², the squared distance to its nearest chosen point.

The C·d-dimensional embedding is never materialised (by default): with a = p − e_ŷ,

    ‖g_i‖² = ‖a_i‖² ‖z_i‖²,   ⟨g_i, g_j⟩ = ⟨a_i, a_j⟩ ⟨z_i, z_j⟩,

so ‖g_i − g_j‖² = ‖g_i‖² + ‖g_j‖² − 2⟨a_i, a_j⟩⟨z_i, z_j⟩ costs O(C + d) per pair and the
seeding runs through :func:`alstudy.selection.kmeanspp_from_sqdist` with O(N(C + d)) memory
instead of O(N·C·d).

Choices, each an option:

* ``first``: the paper's k-means++ starts from a uniformly random point; the authors' code
  starts from the largest-norm embedding (``variant: official`` sets ``first: max_norm``).
* ``bias``: BADGE embeds the gradient of the last layer's weight only (default ``false``);
  ``true`` appends the bias gradient p − e_ŷ, i.e. uses z ↦ [z, 1] in the factorisation.
* ``embedding``: ``factorised`` (default) or ``explicit`` (materialise the N × C·d matrix and
  call :func:`alstudy.selection.kmeanspp`; same distribution, for checks and benchmarks).

The embedding is taken at the input of the head's last ``nn.Linear`` (the features z = f(x)
for every model here, whose heads are ``Linear`` or ``Sequential(Dropout/Identity, Linear)``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models import predict
from ..selection import finite_first, kmeanspp, kmeanspp_from_sqdist
from .base import Strategy, boolean, check_budget, choice, integer, register

__all__ = ["last_linear", "gradient_factors", "gradient_embedding", "badge_sqdist_oracle",
           "BADGE"]


def last_linear(head: nn.Module) -> nn.Linear:
    """The ``nn.Linear`` that produces the head's output.

    Args:
        head: ``nn.Linear`` or ``nn.Sequential`` whose last module other than
            ``nn.Identity``/``nn.Dropout`` is an ``nn.Linear``.

    Returns:
        That linear layer.

    Raises:
        ValueError: If the head does not end in a linear layer.
    """
    if isinstance(head, nn.Linear):
        return head
    if isinstance(head, nn.Sequential):
        mods = [m for m in head if not isinstance(m, (nn.Identity, nn.Dropout))]
        if mods and isinstance(mods[-1], nn.Linear):
            return mods[-1]
        if mods and isinstance(mods[-1], nn.Sequential):
            return last_linear(mods[-1])
    raise ValueError(f"BADGE needs a model head ending in nn.Linear, got {type(head).__name__}: "
                     f"{head}")


@torch.no_grad()
def gradient_factors(model, x: torch.Tensor, batch_size: int = 1024,
                     bias: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The two factors of BADGE's gradient embedding g = (p − e_ŷ) ⊗ z (BADGE Eq. 1).

    Args:
        model: Classifier whose head ends in an ``nn.Linear`` (eval mode is the caller's).
        x: Inputs ``[M, ...]``.
        batch_size: Inference batch size.
        bias: Append a constant 1 to z (adds the bias gradient p − e_ŷ to the embedding).

    Returns:
        ``(a, z)``: ``a = p − e_ŷ`` ``[M, C]`` and ``z`` ``[M, d]`` (``[M, d+1]`` with bias),
        both float64 on the CPU; rows of inputs with non-finite outputs or features are
        non-finite too (the caller ranks them last).

    Raises:
        ValueError: If the head's last linear layer does not produce the model output.
    """
    lin = last_linear(model.head)
    seen: dict[str, torch.Tensor] = {}

    def hook(module, inputs, out):
        seen["z"], seen["out"] = inputs[0], out

    def fn(m, b):
        logits = m(b)  # [B, C]
        out = seen["out"]
        # equal entries, NaN matching NaN: a non-finite output is not a different head
        if out.shape != logits.shape or not bool(
                ((out == logits) | (out.isnan() & logits.isnan())).all()):
            raise ValueError("BADGE: the head's last nn.Linear does not produce the model output; "
                             "the last-layer gradient (p - e) ⊗ z does not apply to this head")
        return torch.cat([logits, seen["z"].flatten(1)], 1)  # [B, C + d]

    handle = lin.register_forward_hook(hook)
    try:
        both = predict(model, x, batch_size, fn=fn).double()  # [M, C + d]
    finally:
        handle.remove()
    C = lin.out_features
    p = torch.softmax(both[:, :C], 1)  # [M, C]
    a = p - F.one_hot(p.argmax(1), C).double()  # [M, C]
    z = both[:, C:]  # [M, d]
    if bias:
        z = torch.cat([z, z.new_ones(z.shape[0], 1)], 1)  # [M, d+1]
    return a, z


def gradient_embedding(a: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Explicit gradient embeddings g_i = a_i ⊗ z_i, row-major (block c is a_ic · z_i).

    Args:
        a: ``[M, C]`` factors p − e_ŷ.
        z: ``[M, d]`` last-layer inputs.

    Returns:
        ``[M, C*d]`` embeddings (memory M·C·d elements).
    """
    return (a[:, :, None] * z[:, None, :]).reshape(a.shape[0], -1)  # [M, C*d]


def badge_sqdist_oracle(a: torch.Tensor, z: torch.Tensor):
    """Squared distances between gradient embeddings from their factors.

    ‖g_i − g_j‖² = ‖a_i‖²‖z_i‖² + ‖a_j‖²‖z_j‖² − 2⟨a_i, a_j⟩⟨z_i, z_j⟩.

    Args:
        a: ``[M, C]`` factors p − e_ŷ.
        z: ``[M, d]`` last-layer inputs.

    Returns:
        ``(sq_dist_to, sq_norms)``: ``sq_dist_to(i) -> [M]`` squared distances from point i to
        all points (O(M(C + d)) time and memory) and ``sq_norms`` ``[M]`` = ‖g_i‖².
    """
    # vector_norm reduces row by row: no [M, d] temporary, so the oracle adds O(M) memory
    sq_norms = (torch.linalg.vector_norm(a, dim=1) * torch.linalg.vector_norm(z, dim=1)).square()  # [M]

    def sq_dist_to(i: int) -> torch.Tensor:
        return sq_norms + sq_norms[i] - 2.0 * (a @ a[i]) * (z @ z[i])  # [M]

    return sq_dist_to, sq_norms


@register
class BADGE(Strategy):
    """k-means++ seeding on last-layer gradient embeddings with pseudo labels (Ash et al. 2020)."""

    name = "badge"
    tasks = ("classification",)
    options = {
        "first": choice("random", ("random", "max_norm"),
                        help="first k-means++ centre: uniform (paper) or largest norm (code)"),
        "bias": boolean(False, help="include the last layer's bias gradient in the embedding"),
        "embedding": choice("factorised", ("factorised", "explicit"),
                            help="distances from the factors (O(N(C+d)) memory) or from the "
                                 "materialised N x C*d matrix"),
        "batch_size": integer(1024, 1, help="inference batch size"),
    }
    variants = {"official": {"first": "max_norm"}}

    def select(self, model, data, pool, budget, generator, context=None) -> torch.Tensor:
        """Pick ``budget`` candidates by k-means++ seeding on gradient embeddings.

        Args:
            model: Trained classifier.
            data: The dataset.
            pool: Labeled / unlabeled bookkeeping.
            budget: Number of examples to select.
            generator: CPU generator (candidate subset and D² sampling).
            context: Unused.

        Returns:
            LongTensor ``[budget]`` of training-set indices, in pick order.

        Raises:
            ValueError: Regression data, a head without a final linear layer, or a budget
                above the number of candidates.
        """
        self.check_task(data.task)
        cands = self.candidate_indices(pool, generator)  # [M]
        check_budget(budget, cands.numel())
        model.eval()
        a, z = gradient_factors(model, data.x_train[cands], self.opts["batch_size"],
                                self.opts["bias"])  # [M, C], [M, d]
        # candidates with a non-finite output or feature: warned about, ranked last
        pick = finite_first((a, z), budget, lambda keep, k: self.seed_from_factors(
            a[keep], z[keep], k, generator), label=self.label, what="gradient embeddings")
        return cands[pick]

    def seed_from_factors(self, a: torch.Tensor, z: torch.Tensor, budget: int,
                          generator: torch.Generator) -> torch.Tensor:
        """k-means++ seeding on the embeddings a_i ⊗ z_i.

        Args:
            a: ``[M, C]`` factors p − e_ŷ.
            z: ``[M, d]`` last-layer inputs.
            budget: Number of picks.
            generator: CPU generator.

        Returns:
            LongTensor ``[budget]`` of row indices, in pick order.
        """
        if self.opts["embedding"] == "explicit":
            g = gradient_embedding(a.float(), z.float())  # [M, C*d]
            return kmeanspp(g, budget, generator, first=self.opts["first"])
        sq_dist_to, sq_norms = badge_sqdist_oracle(a, z)
        first = int(torch.argmax(sq_norms)) if self.opts["first"] == "max_norm" else None
        return kmeanspp_from_sqdist(sq_dist_to, a.shape[0], budget, generator, first_index=first)
