"""SAAL: sharpness-aware active learning (Kim et al., ICML 2023).

Acquisition score of an unlabeled ``x`` (SAAL Eq 6), with the pseudo label
``ŷ = argmax_c σ(f_θ(x))_c``:

    f_acq(x) = max_{‖ε‖ ≤ ρ} ℓ(x, ŷ; θ + ε)  ≈  ℓ(x, ŷ; θ + ε*),   ε* = ρ g / ‖g‖,
    g = ∇_θ ℓ(x, ŷ; θ)

(SAM's first-order inner step, SAAL Eq 3 with p = q = 2), computed per candidate over all
parameters in eval mode. Each cycle scores a random subset of 2,000 unlabeled candidates and
labels the top ``b`` (SAAL §4).

Paper vs the authors' code (``variant: official`` presets the code's choices):

==================  =======================================  ====================================
choice              paper                                    official code
==================  =======================================  ====================================
perturbation        ``sam``: ε = ρ g/‖g‖                     ``asam``: e = ρ p² g / ‖ |p| g ‖ over
                                                             all parameters, BatchNorm and biases
                                                             included, no η (``eta = 0``)
diversity           "following the same practice from        ``kmeans_scores``: k-means++ seeding
                    BADGE ... k-means++ seeding algorithm    on the 1-D array of scores, first
                    with the acquisition score as input"     centre = largest score
==================  =======================================  ====================================

The paper's sentence is ambiguous: BADGE seeds on gradient *embeddings*, while "with the
acquisition score as input" is what the code does (seeding on scalars, so "diversity" means a
spread of score values). ``kmeans_gradients`` is the BADGE-like reading: k-means++ seeding on
the last-layer gradient embeddings ``(σ(f(x)) − e_ŷ) ⊗ z`` (``z`` = input of the model's last
linear layer, BADGE's embedding), each rescaled to have norm equal to the SAAL score, so the
first centre is the highest-scoring candidate and the D² sampling favours high scores in
directions far from the chosen ones. Negative scores (possible with ``score: diff``) count as 0.

Options beyond the paper: ``score: diff`` ranks by ``ℓ(θ+ε*) − ℓ(θ)`` (the sharpness term,
the code's ``Diff`` mode); ``ascent_steps > 1`` replaces the single SAM step by projected
gradient ascent inside the ρ-ball (a tighter estimate of the maximum; see
:mod:`alstudy.persample`); ``method`` picks the batched implementation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models import predict
from ..persample import METHODS, PERTURBATIONS, PerturbedLosses, perturbed_losses
from ..selection import finite_first, kmeanspp, kmeanspp_from_sqdist, topk
from .base import (Strategy, candidates_option, check_budget, choice, integer, number,
                   register)

__all__ = ["SAAL", "saal_scores", "gradient_embedding_factors", "SCORES", "DIVERSITY"]

SCORES = ("max", "diff")
DIVERSITY = ("none", "kmeans_scores", "kmeans_gradients")


def saal_scores(model: nn.Module, x: torch.Tensor, *, rho: float = 0.05,
                perturbation: str = "sam", score: str = "max", eta: float = 0.0,
                ascent_steps: int = 1, method: str = "auto", chunk_size: int | None = None,
                return_details: bool = False) -> torch.Tensor | tuple[torch.Tensor, PerturbedLosses]:
    """SAAL acquisition scores (Eq 6) of the inputs ``x`` under ``model``.

    ``max``: ``ℓ(x, ŷ; θ + ε*)``; ``diff``: ``ℓ(x, ŷ; θ + ε*) − ℓ(x, ŷ; θ)``, with the pseudo
    label ``ŷ = argmax f_θ(x)`` and ``ε* = ρ g/‖g‖`` (SAM) or ``ρ T² g/‖T g‖``,
    ``T = |θ| + η`` (ASAM), one perturbation per sample, batched (see
    :func:`alstudy.persample.perturbed_losses`).

    Args:
        model: Classifier returning logits ``[N, C]``; scored in eval mode, left unchanged.
        x: Candidate inputs ``[N, ...]``.
        rho: Radius ρ >= 0 (paper: 0.05).
        perturbation: ``"sam"`` (paper) or ``"asam"`` (authors' code).
        score: ``"max"`` (Eq 6) or ``"diff"`` (perturbed minus clean loss).
        eta: ASAM's η >= 0 (authors' code: 0).
        ascent_steps: 1 = first-order step (paper); k > 1 = projected gradient ascent.
        method: ``"auto"``, ``"fast"`` or ``"functorch"``.
        chunk_size: Candidates per batched chunk (``None`` = automatic).
        return_details: Also return the :class:`~alstudy.persample.PerturbedLosses`
            (clean loss, gradient norm, pseudo labels, perturbed predictions).

    Returns:
        Scores ``[N]`` (CPU), or ``(scores, details)`` when ``return_details``.

    Raises:
        ValueError: An option out of range (the message names it and its allowed values).
    """
    if score not in SCORES:
        raise ValueError(f"score must be one of {list(SCORES)}, got {score!r}")
    res = perturbed_losses(model, x, None, rho=rho, perturbation=perturbation, eta=eta,
                           ascent_steps=ascent_steps, method=method, chunk_size=chunk_size)
    s = res.perturbed if score == "max" else res.perturbed - res.clean  # [N]
    return (s, res) if return_details else s


def _last_linear(model: nn.Module) -> nn.Linear:
    head = getattr(model, "head", model)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("diversity='kmeans_gradients' needs an nn.Linear in the model's head "
                         "(BADGE's last-layer gradient embedding)")
    return linears[-1]


@torch.no_grad()
def gradient_embedding_factors(model: nn.Module, x: torch.Tensor, labels: torch.Tensor,
                               batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Factors of BADGE's last-layer gradient embedding ``∇_W ℓ(x, y) = (σ(f(x)) − e_y) ⊗ z``.

    Args:
        model: Classifier in eval mode whose head ends with an ``nn.Linear`` (input ``z``).
        x: Inputs ``[N, ...]``.
        labels: Labels ``[N]`` (SAAL: the pseudo labels).
        batch_size: Inference batch size.

    Returns:
        ``(delta, z)``: ``[N, C]`` output gradients ``σ(f(x)) − e_y`` and ``[N, d]`` inputs of the
        last linear layer; the embedding of sample i is the outer product ``delta_i ⊗ z_i``.

    Raises:
        ValueError: The head has no linear layer.
    """
    last = _last_linear(model)
    store: list[torch.Tensor] = []
    handle = last.register_forward_hook(lambda m, inp, out: store.append(inp[0].reshape(inp[0].shape[0], -1)))
    try:
        logits = predict(model, x, batch_size)  # [N, C]
    finally:
        handle.remove()
    z = torch.cat([s.cpu() for s in store]).double()  # [N, d]
    delta = torch.softmax(logits.double(), 1) - F.one_hot(labels, logits.shape[1]).double()  # [N, C]
    return delta, z


def _kmeanspp_scaled_embeddings(delta: torch.Tensor, z: torch.Tensor, scores: torch.Tensor,
                                budget: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding on ``e_i = s_i (δ_i ⊗ z_i) / (‖δ_i‖ ‖z_i‖)`` without forming ``e``.

    ``‖e_i − e_j‖² = s_i² + s_j² − 2 s_i s_j (δ̂_i·δ̂_j)(ẑ_i·ẑ_j)``; first centre = largest ``s``.
    """
    s = scores.double().clamp_min(0).nan_to_num(0.0)  # [N]
    dh = delta / delta.norm(dim=1, keepdim=True).clamp_min(1e-300)  # [N, C]
    zh = z / z.norm(dim=1, keepdim=True).clamp_min(1e-300)  # [N, d]
    sq = s * s

    def sq_dist_to(i: int) -> torch.Tensor:
        cos = (dh @ dh[i]) * (zh @ zh[i])  # [N]
        return sq + sq[i] - 2 * s * s[i] * cos

    return kmeanspp_from_sqdist(sq_dist_to, s.numel(), budget, generator,
                                first_index=int(torch.argmax(s)))


@register
class SAAL(Strategy):
    """Sharpness-aware active learning: rank candidates by their maximally perturbed loss
    with pseudo labels (SAAL Eq 6), optionally with k-means++ seeding for diversity."""

    name = "saal"
    tasks = ("classification",)
    options = {
        "candidates": candidates_option(2000),
        "rho": number(0.05, 0.0, help="perturbation radius ρ (SAAL Eq 6)"),
        "perturbation": choice("sam", PERTURBATIONS, "sam: ρ g/‖g‖ (paper); asam: ρ T²g/‖Tg‖ (code)"),
        "eta": number(0.0, 0.0, help="ASAM's η in T = |θ| + η (code: 0)"),
        "score": choice("max", SCORES, "max: perturbed loss (Eq 6); diff: minus the clean loss"),
        "diversity": choice("none", DIVERSITY, "top-b, k-means++ on scores (code) or on "
                            "score-scaled last-layer gradient embeddings"),
        "ascent_steps": integer(1, 1, 100, help="1 = SAM step; >1 = projected gradient ascent"),
        "method": choice("auto", METHODS, "batched implementation"),
        "chunk_size": integer(None, 1, allow_none=True, help="candidates per batched chunk"),
    }
    variants = {"official": {"perturbation": "asam", "eta": 0.0, "diversity": "kmeans_scores"}}

    def _score_kwargs(self) -> dict:
        o = self.opts
        return dict(rho=o["rho"], perturbation=o["perturbation"], score=o["score"], eta=o["eta"],
                    ascent_steps=o["ascent_steps"], method=o["method"], chunk_size=o["chunk_size"])

    def score(self, model, x, *, generator=None) -> torch.Tensor:
        """SAAL scores ``[M]`` of the inputs (see :func:`saal_scores`)."""
        return saal_scores(model, x, **self._score_kwargs())

    def select(self, model, data, pool, budget, generator, context=None) -> torch.Tensor:
        """Score the cycle's candidates and pick ``budget`` of them (top-b or k-means++).

        Args:
            model: The trained classifier.
            data: The :class:`alstudy.data.Dataset`.
            pool: The :class:`alstudy.pool.Pool`.
            budget: Number of examples to select.
            generator: Seeded CPU generator (candidate subset and k-means++ draws).
            context: Unused.

        Returns:
            LongTensor ``[budget]`` of distinct unlabeled training indices.

        Raises:
            ValueError: Unsupported task or a budget larger than the candidate set.
        """
        self.check_task(data.task)
        cands = self.candidate_indices(pool, generator)  # [M]
        check_budget(budget, cands.numel())
        model.eval()
        x = data.x_train[cands]
        scores, details = saal_scores(model, x, return_details=True, **self._score_kwargs())  # [M]
        diversity = self.opts["diversity"]
        # non-finite scores (a NaN loss): warned about, ranked last (selection.finite_first)
        if diversity == "none":
            pick = topk(scores, budget, label=self.label)
        elif diversity == "kmeans_scores":
            s = scores.double()  # [M]
            pick = finite_first(s, budget, lambda keep, k: kmeanspp(
                s[keep][:, None], k, generator, first="max_norm"), label=self.label)  # [budget]
        else:
            delta, z = gradient_embedding_factors(model, x, details.labels)
            pick = finite_first(
                (scores, delta, z), budget,
                lambda keep, k: _kmeanspp_scaled_embeddings(delta[keep], z[keep], scores[keep],
                                                            k, generator),
                label=self.label, what="scores or gradient embeddings")
        return cands[pick]
