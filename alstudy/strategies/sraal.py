"""State-relabeling adversarial active learning, SRAAL (Zhang et al., CVPR 2020).

SRAAL extends VAAL (:mod:`alstudy.strategies.vaal`) in two ways.

* **Unified representation generator.** The VAE's latent code z is split in two halves: the
  unsupervised image reconstructor decodes x from the first half, and a supervised target
  learner (an MLP) predicts the labels of labeled examples from the second half, so the label
  information shapes the representation μ(x) the discriminator reads. Generator loss per VAE
  step, on one labeled batch (x_L, y_L) and one unlabeled batch x_U:

      L_G = w_rec (MSE_L + MSE_U) + β (KL_L + KL_U) + w_lab CE(ŷ(z_L), y_L)
            + λ_adv [BCE(D(μ_L), 1) + BCE(D(μ_U), 1)].

* **State discriminator with relabelled unlabeled states.** D predicts the state of a code:
  labeled examples keep state 0 and each unlabeled example's state 1 is relabelled by the
  online uncertainty indicator (OUI) of the task model's prediction p = softmax(T(x)):

      ind(x) = 1 − p_max · V(P_min) / V(p),

  where V is the variance of a probability vector's C entries and
  P_min = (p_max, (1 − p_max)/(C − 1), …) is the vector of least variance among those with
  the same largest probability, so V(P_min) ≤ V(p) and ind ∈ [1 − p_max, 1): a confident
  (one-hot) prediction has ind = 0, uncertain ones approach 1. D is trained on
  L_D = BCE(D(μ_L), 0) + BCE(D(μ_U), ind(x_U)). Selection: the candidates with the **highest**
  D(μ(x)), the most "unlabeled, uncertain" state.

The networks are VAAL's (:class:`~alstudy.strategies.vaal.VAE` with ``decode_dims =
latent_dim // 2``, :class:`~alstudy.strategies.vaal.Discriminator` with 4 hidden layers of
512 as in the SRAAL code); the target learner is latent/2 → ``classifier_hidden`` →
``classifier_hidden // 4`` → C (1024 → 256 in the code). Defaults from the authors' code:
w_rec = 5, w_lab = 5, β = 1, λ_adv = 1, Adam lr 5e-4 for both networks multiplied by 0.85 at
30 evenly spaced points of the run, 2 VAE steps and 1 D step per iteration. As in that code,
the generator's adversarial term pushes every code towards state 1 (VAAL's L_adv with D's
state convention) and the classifier reads the sampled z, the discriminator the mean μ.

Deliberate simplifications, as for VAAL in this project: small networks (``width``,
``latent_dim`` 32 instead of the code's 200) and few iterations (``steps`` 150 instead of
20,000, batch 64 instead of 250). The OUI is the run's task model, already trained on the
labeled set this cycle (the authors train a second copy of the task model for it). The paper's
k-center initial labeled pool is not offered: every strategy of a run shares one initial set
(drawn by :func:`alstudy.pool.initial_indices` from the labels only, so that strategies pair by
seed), and a SRAAL-specific set drawn from a trained representation would break that pairing
and make the pool depend on the strategies.

Variance convention (``indicator_variance``): ``population`` uses the same variance for both
terms (so a one-hot prediction gets exactly 0); ``mixed`` follows the authors' code, which
divides a population variance by an unbiased one and so multiplies the ratio by (C − 1)/C
(``variant: official``). An exactly uniform prediction (V(p) = 0 = V(P_min)) gets the
ratio's limit along P = P_min (1, or (C − 1)/C with ``mixed``). Non-finite predictions get the
original unlabeled state 1 (with a warning).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..models import predict
from ._seeding import draw_seed, seeded
from .base import boolean, choice, integer, number, register
from .vaal import VAE, Discriminator, _AdversarialStrategy, train_adversarial

__all__ = ["uncertainty_indicator", "train_sraal", "SRAAL"]

INDICATOR_VARIANCE = ("population", "mixed")


def uncertainty_indicator(probs: torch.Tensor, variance: str = "population") -> torch.Tensor:
    """SRAAL's online uncertainty indicator ind(p) = 1 − p_max · V(P_min) / V(p).

    Args:
        probs: Predicted class probabilities ``[M, C]`` (rows sum to 1, C >= 2).
        variance: ``population`` (one variance for both terms) or ``mixed`` (authors' code:
            V(P_min) over C, V(p) over C − 1).

    Returns:
        Relabelled states ``[M]`` in float64; rows with non-finite entries get 1.

    Raises:
        ValueError: Not ``[M, C]`` with C >= 2, or an unknown ``variance``.
    """
    if probs.dim() != 2 or probs.shape[1] < 2:
        raise ValueError(f"probs must be [M, C] with C >= 2, got shape {tuple(probs.shape)}")
    if variance not in INDICATOR_VARIANCE:
        raise ValueError(f"unknown indicator variance {variance!r}; allowed: "
                         f"{list(INDICATOR_VARIANCE)}")
    p = probs.double()
    c = p.shape[1]
    pmax = p.max(1).values  # [M]
    rest = (1.0 - pmax) / (c - 1)  # [M], the other entries of P_min
    v_min = ((pmax - 1.0 / c).square() + (c - 1) * (rest - 1.0 / c).square()) / c  # [M]
    v_p = p.var(1, correction=0 if variance == "population" else 1)  # [M]
    uniform = 1.0 if variance == "population" else (c - 1) / c  # ratio's limit at P = P_min
    ratio = torch.where(v_p > 0, v_min / torch.where(v_p > 0, v_p, 1.0),
                        torch.full_like(v_p, uniform))  # [M]
    ind = 1.0 - pmax * ratio  # [M]
    return torch.where(torch.isfinite(p).all(1), ind, torch.ones_like(ind))


def train_sraal(vae: VAE, disc: Discriminator, classifier: nn.Module, x_lab: torch.Tensor,
                y_lab: torch.Tensor, x_unl: torch.Tensor, state_unl: torch.Tensor, *, steps: int,
                batch_size: int = 64, vae_steps: int = 2, adv_steps: int = 1, lr: float = 5e-4,
                beta: float = 1.0, adversary_weight: float = 1.0,
                reconstruction_weight: float = 5.0, label_weight: float = 5.0,
                lr_decay: float = 0.85, lr_decays: int = 30, fresh_batches: bool = True,
                generator: torch.Generator, device: torch.device | str = "cpu"
                ) -> dict[str, list[float]]:
    """Alternate SRAAL's generator (L_G) and state-discriminator (L_D) updates.

    Args:
        vae: VAE whose decoder reads the first ``decode_dims`` latent coordinates.
        disc: State discriminator on μ.
        classifier: Target learner on the remaining latent coordinates.
        x_lab: Labeled inputs ``[L, ...]``.
        y_lab: Their labels ``[L]``.
        x_unl: Unlabeled inputs ``[U, ...]``.
        state_unl: Relabelled states ``[U]`` in [0, 1] (:func:`uncertainty_indicator`).
        steps: Iterations (each: ``vae_steps`` generator updates, ``adv_steps`` D updates).
        batch_size: Labeled and unlabeled batch size.
        vae_steps: Generator updates per iteration.
        adv_steps: Discriminator updates per iteration.
        lr: Initial Adam learning rate of both optimisers.
        beta: β, KL weight.
        adversary_weight: λ_adv.
        reconstruction_weight: w_rec, weight of the reconstruction MSE.
        label_weight: w_lab, weight of the target learner's cross-entropy.
        lr_decay: Factor applied to both learning rates at each decay point.
        lr_decays: Decay points, every ``max(1, steps // lr_decays)`` iterations (0 = none).
        fresh_batches: Draw a new batch for every update after the first of an iteration, as
            the authors' code does (the last batch also trains D); ``False`` reuses one batch.
        generator: CPU generator for the batches (noise and dropout use the global RNG).
        device: Where to train.

    Returns:
        Per-iteration means: ``{"reconstruction", "kl", "label", "adversarial",
        "discriminator"}``.
    """
    return train_adversarial(
        vae, disc, x_lab, x_unl, steps=steps, batch_size=batch_size, vae_steps=vae_steps,
        adv_steps=adv_steps, lr=lr, beta=beta, adversary_weight=adversary_weight,
        reconstruction_weight=reconstruction_weight, labeled_state=0.0, state_unl=state_unl,
        classifier=classifier, y_lab=y_lab, label_weight=label_weight, lr_decay=lr_decay,
        lr_decays=lr_decays, fresh_batches=fresh_batches, generator=generator, device=device)


@register
class SRAAL(_AdversarialStrategy):
    """Pick the candidates a label-aware VAE + state discriminator judge most "unlabeled"."""

    name = "sraal"
    tasks = ("classification",)
    options = {
        "latent_dim": integer(32, 2, help="VAE latent dimension (first half reconstructs, "
                                          "second half feeds the target learner)"),
        "architecture": choice("auto", ("auto", "conv", "mlp"),
                               help="VAE: conv for images with sides multiple of 4, else mlp"),
        "width": integer(32, 1, help="first conv layer channels (conv) / hidden units (mlp)"),
        "disc_hidden": integer(512, 1, help="state discriminator hidden units"),
        "disc_layers": integer(4, 1, help="state discriminator hidden layers"),
        "classifier_hidden": integer(1024, 4, help="target learner's first hidden layer "
                                                   "(the second has a quarter)"),
        "steps": integer(150, 1, help="training iterations per cycle"),
        "train_batch_size": integer(64, 1, help="labeled and unlabeled batch size"),
        "vae_steps": integer(2, 1, help="generator updates per iteration"),
        "adv_steps": integer(1, 1, help="discriminator updates per iteration"),
        "fresh_batches": boolean(True, help="new batch for each update of an iteration "
                                            "(authors' code)"),
        "lr": number(5e-4, 0.0, low_open=True, help="initial Adam learning rate"),
        "lr_decay": number(0.85, 0.0, 1.0, low_open=True, help="learning-rate factor per decay"),
        "lr_decays": integer(30, 0, help="decay points spread over the iterations (0 = none)"),
        "beta": number(1.0, 0.0, help="β, KL weight"),
        "adversary_weight": number(1.0, 0.0, help="λ_adv, adversarial-loss weight"),
        "reconstruction_weight": number(5.0, 0.0, help="w_rec, reconstruction weight"),
        "label_weight": number(5.0, 0.0, help="w_lab, target-learner cross-entropy weight"),
        "indicator_variance": choice("population", INDICATOR_VARIANCE,
                                     help="OUI variances: one convention (population) or the "
                                          "authors' population / unbiased ratio (mixed)"),
        "batch_size": integer(1024, 1, help="inference batch size"),
    }
    variants = {"official": {"indicator_variance": "mixed"}}

    def __init__(self, **opts):
        super().__init__(**opts)
        self.vae: VAE | None = None
        self.discriminator: Discriminator | None = None
        self.classifier: nn.Module | None = None
        self.states: torch.Tensor | None = None
        self.history: dict[str, list[float]] = {}

    def relabel(self, model, x: torch.Tensor) -> torch.Tensor:
        """Relabelled states ind(x) ``[M]`` (float64) from the task model's softmax.

        Args:
            model: Trained classifier (eval mode is set here).
            x: Unlabeled inputs ``[M, ...]``.

        Returns:
            :func:`uncertainty_indicator` of ``softmax(model(x))``.
        """
        model.eval()
        probs = torch.softmax(predict(model, x, self.opts["batch_size"]).double(), 1)  # [M, C]
        bad = int((~torch.isfinite(probs).all(1)).sum())
        if bad:
            warnings.warn(f"sraal: {bad} of {probs.shape[0]} unlabeled predictions are non-finite; "
                          f"their state stays 1 (unlabeled)", RuntimeWarning, stacklevel=2)
        return uncertainty_indicator(probs, self.opts["indicator_variance"])

    def train_networks(self, model, data, labeled: torch.Tensor, unlabeled: torch.Tensor,
                       generator: torch.Generator, device: torch.device | str = "cpu"
                       ) -> dict[str, list[float]]:
        """Relabel the unlabeled states and train a fresh generator, target learner and D.

        Args:
            model: Trained task model (the online uncertainty indicator).
            data: The dataset.
            labeled: Labeled indices ``[L]`` (L >= 1).
            unlabeled: Unlabeled indices ``[U]`` (U >= 1).
            generator: CPU generator; one seed is drawn from it.
            device: Where to train.

        Returns:
            The training history (see :func:`train_sraal`), also kept in ``self.history``.
        """
        o = self.opts
        self.states = self.relabel(model, data.x_train[unlabeled])  # [U]
        seed = draw_seed(generator)
        half = o["latent_dim"] // 2
        with seeded(seed, device):
            self.vae = VAE(data.input_shape, o["latent_dim"], self._architecture(data.input_shape),
                           o["width"], decode_dims=half)
            self.discriminator = Discriminator(o["latent_dim"], o["disc_hidden"], o["disc_layers"])
            h = o["classifier_hidden"]
            self.classifier = nn.Sequential(nn.Linear(o["latent_dim"] - half, h), nn.ReLU(),
                                            nn.Linear(h, h // 4), nn.ReLU(),
                                            nn.Linear(h // 4, data.num_classes))
            self.history = train_sraal(
                self.vae, self.discriminator, self.classifier, data.x_train[labeled],
                data.y_train[labeled], data.x_train[unlabeled], self.states,
                steps=o["steps"], batch_size=o["train_batch_size"], vae_steps=o["vae_steps"],
                adv_steps=o["adv_steps"], lr=o["lr"], beta=o["beta"],
                adversary_weight=o["adversary_weight"],
                reconstruction_weight=o["reconstruction_weight"], label_weight=o["label_weight"],
                lr_decay=o["lr_decay"], lr_decays=o["lr_decays"],
                fresh_batches=o["fresh_batches"], generator=torch.Generator().manual_seed(seed),
                device=device)
        return self.history

    @torch.no_grad()
    def score(self, model, x, *, generator=None) -> torch.Tensor:
        """State probability D(μ(x)) (higher = more "unlabeled", label first).

        Args:
            model: Unused (the networks were trained by :meth:`train_networks`).
            x: Candidate inputs ``[M, ...]``.
            generator: Unused.

        Returns:
            Scores ``[M]`` in ``[0, 1]``.

        Raises:
            ValueError: If the networks have not been trained.
        """
        return self._state_probability(x).double()  # [M]

    def _train(self, model, data, labeled, unlabeled, generator, device) -> None:
        self.train_networks(model, data, labeled, unlabeled, generator, device)
