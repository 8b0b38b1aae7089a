"""Variational adversarial active learning, VAAL (Sinha, Ebrahimi & Darrell, ICCV 2019).

A β-VAE (encoder q_φ(z|x), decoder p_θ(x|z)) learns one latent space for labeled (L) and
unlabeled (U) data while a discriminator D tells their latent codes apart. Each cycle both are
trained from scratch by alternating

* VAE steps on L_VAE = λ₁ L_trd + λ₂ L_adv (paper Eq. 3), with the ELBO terms
  L_trd = E[log p_θ(x|z)] − β KL(q_φ(z|x) ‖ p(z)) for x_L and x_U (Eq. 1; reconstruction as
  mean squared error, KL summed over latent dimensions and averaged over the batch) and
  L_adv = −E[log D(q_φ(z_L|x_L))] − E[log D(q_φ(z_U|x_U))] (Eq. 2: the encoder tries to make
  unlabeled codes look labeled);
* discriminator steps on L_D = −E[log D(q_φ(z_L|x_L))] − E[log(1 − D(q_φ(z_U|x_U)))] (Eq. 4).

Selection (paper Algorithm 1): the candidates with the **lowest** probability D(μ_φ(x)) of
being labeled. As in the authors' code, the discriminator reads the latent mean μ, each
iteration takes ``vae_steps`` = 2 VAE steps and ``adv_steps`` = 1 discriminator step, with Adam
(lr 5e-4), λ₁ = λ₂ = β = 1, latent dimension 32 and a 512-512 discriminator. The authors' code
draws a new labeled and unlabeled batch for the second VAE step (and trains D on it),
``fresh_batches: true``; the default runs the iteration's updates on one batch. The authors'
VAE is a 4-layer, 128–1024-channel conv net trained for as long as the task model; here the
networks are small (two stride-2 conv layers of ``width`` and 2·``width`` channels for images
whose sides are multiples of 4, e.g. 28×28 and 32×32; an MLP for vectors or other sizes) and
``steps`` (150) is kept small so a cycle runs on a CPU: one iteration of the defaults on
28×28 batches of 64 unlabeled and 60 labeled images is ~6.6 GFLOP (~0.13 s on one core,
``benchmarks/bench_baselines.py``), so a cycle costs ``steps`` × that; the NoiseStability
authors' MNIST setting corresponds to ~1,150 iterations at batch 96.
The authors' KL term is summed over the batch rather than averaged.

All randomness (initialisation, batches, reparameterisation noise) derives from one seed drawn
from the selection generator.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..models import model_device
from ..selection import topk
from ._seeding import draw_seed, seeded
from .base import Strategy, boolean, check_budget, choice, integer, number, register

__all__ = ["VAE", "Discriminator", "train_adversarial", "train_vaal", "VAAL"]


def _conv_ok(shape: Sequence[int]) -> bool:
    return len(shape) == 3 and shape[1] % 4 == 0 and shape[2] % 4 == 0 and min(shape[1:]) >= 4


class VAE(nn.Module):
    """Small VAE: conv encoder/decoder for ``[C, H, W]`` inputs with H, W multiples of 4,
    otherwise an MLP on the flattened input.

    Args:
        input_shape: Shape of one input.
        latent_dim: Dimension of z.
        architecture: ``conv`` or ``mlp``.
        width: Channels of the first conv layer (conv) or hidden units (mlp).
        decode_dims: Leading latent dimensions the decoder reads (``None`` = all; SRAAL
            reconstructs from the first half of z).
    """

    def __init__(self, input_shape: Sequence[int], latent_dim: int = 32,
                 architecture: str = "conv", width: int = 32, decode_dims: int | None = None):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.decode_dims = latent_dim if decode_dims is None else int(decode_dims)
        if not 1 <= self.decode_dims <= latent_dim:
            raise ValueError(f"VAE decode_dims must be in [1, latent_dim={latent_dim}], "
                             f"got {decode_dims!r}")
        if architecture == "conv":
            if not _conv_ok(self.input_shape):
                raise ValueError(f"VAAL architecture 'conv' needs [C, H, W] inputs with H and W "
                                 f"multiples of 4, got {self.input_shape}; use 'mlp'")
            c, h, w = self.input_shape
            inner = (2 * width, h // 4, w // 4)
            flat = math.prod(inner)
            self.encoder = nn.Sequential(
                nn.Conv2d(c, width, 4, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),
                nn.Conv2d(width, 2 * width, 4, 2, 1), nn.BatchNorm2d(2 * width), nn.ReLU(),
                nn.Flatten())
            self.decoder = nn.Sequential(
                nn.Linear(self.decode_dims, flat), nn.Unflatten(1, inner), nn.ReLU(),
                nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),
                nn.ConvTranspose2d(width, c, 4, 2, 1))
        elif architecture == "mlp":
            d = math.prod(self.input_shape)
            flat = width
            self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(d, width), nn.ReLU(),
                                         nn.Linear(width, width), nn.ReLU())
            self.decoder = nn.Sequential(nn.Linear(self.decode_dims, width), nn.ReLU(),
                                         nn.Linear(width, width), nn.ReLU(), nn.Linear(width, d),
                                         nn.Unflatten(1, self.input_shape))
        else:
            raise ValueError(f"unknown VAAL architecture {architecture!r}; allowed: ['conv', 'mlp']")
        self.mu = nn.Linear(flat, latent_dim)
        self.logvar = nn.Linear(flat, latent_dim)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters ``(μ, log σ²)``, each ``[B, latent_dim]``."""
        h = self.encoder(x)  # [B, flat]
        return self.mu(h), self.logvar(h)

    @staticmethod
    def sample(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Reparameterised draw z = μ + σ·ε ``[B, latent_dim]`` (ε from the global RNG)."""
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``[B, ...]`` from the first ``decode_dims`` coordinates of z."""
        return self.decoder(z[:, : self.decode_dims])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction ``[B, ...]`` from z = μ + σ·ε (ε from the global RNG), μ and log σ²."""
        mu, logvar = self.encode(x)
        return self.decode(self.sample(mu, logvar)), mu, logvar


class Discriminator(nn.Module):
    """MLP on latent codes: latent → hidden (× ``layers``) → 1 logit (VAAL's D; SRAAL's state
    discriminator with ``layers=4``).

    Args:
        latent_dim: Dimension of z.
        hidden: Hidden units (512 in the authors' code).
        layers: Hidden layers (2 in VAAL's code, 4 in SRAAL's).
    """

    def __init__(self, latent_dim: int = 32, hidden: int = 512, layers: int = 2):
        super().__init__()
        if layers < 1:
            raise ValueError(f"Discriminator layers must be >= 1, got {layers!r}")
        body: list[nn.Module] = [nn.Linear(latent_dim, hidden), nn.ReLU()]
        for _ in range(layers - 1):
            body += [nn.Linear(hidden, hidden), nn.ReLU()]
        self.net = nn.Sequential(*body, nn.Linear(hidden, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Logits ``[B]`` of P(labeled | z)."""
        return self.net(z).squeeze(1)


def _elbo_terms(x, recon, mu, logvar) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean squared reconstruction error, KL(q ‖ N(0, I)) summed over z, mean over batch)."""
    mse = F.mse_loss(recon, x)
    kl = (-0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(1)).mean()
    return mse, kl


class _Cycler:
    """Endless mini-batches of indices: a fresh permutation per pass (batches never straddle
    two passes, so each batch has distinct indices)."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        self.n, self.bs, self.gen = n, min(batch_size, n), generator
        self.order, self.pos = torch.randperm(n, generator=generator), 0

    def next(self) -> torch.Tensor:
        if self.pos + self.bs > self.n:
            self.order, self.pos = torch.randperm(self.n, generator=self.gen), 0
        idx = self.order[self.pos : self.pos + self.bs]
        self.pos += self.bs
        return idx


def _vae_pass(vae: VAE, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Encode, draw and decode x: ``(z, μ, MSE, KL)``, z and μ ``[B, latent_dim]``."""
    mu, logvar = vae.encode(x)
    z = vae.sample(mu, logvar)
    mse, kl = _elbo_terms(x, vae.decode(z), mu, logvar)
    return z, mu, mse, kl


def train_adversarial(vae: VAE, disc: Discriminator, x_lab: torch.Tensor, x_unl: torch.Tensor, *,
                      steps: int, batch_size: int = 64, vae_steps: int = 2, adv_steps: int = 1,
                      lr: float = 5e-4, beta: float = 1.0, adversary_weight: float = 1.0,
                      reconstruction_weight: float = 1.0, labeled_state: float = 1.0,
                      state_unl: torch.Tensor | None = None, classifier: nn.Module | None = None,
                      y_lab: torch.Tensor | None = None, label_weight: float = 1.0,
                      lr_decay: float = 1.0, lr_decays: int = 0, fresh_batches: bool = False,
                      generator: torch.Generator, device: torch.device | str = "cpu"
                      ) -> dict[str, list[float]]:
    """Alternate generator and discriminator updates of VAAL (Eqs. 3-4) and SRAAL.

    Generator step on a labeled batch x_L and an unlabeled batch x_U:
    L_G = w_rec (MSE_L + MSE_U) + β (KL_L + KL_U) [+ w_lab CE(classifier(z_L), y_L)]
    + λ_adv [BCE(D(μ_L), 1) + BCE(D(μ_U), 1)]; discriminator step on
    L_D = BCE(D(μ_L), s_L) + BCE(D(μ_U), s_U), with labeled state s_L = ``labeled_state`` and
    unlabeled states s_U from ``state_unl`` (default 1 − s_L).

    Args:
        vae: The VAE (trained in place).
        disc: The discriminator on μ (trained in place).
        x_lab: Labeled inputs ``[L, ...]``.
        x_unl: Unlabeled inputs ``[U, ...]``.
        steps: Iterations (each: ``vae_steps`` generator updates, ``adv_steps`` D updates).
        batch_size: Labeled and unlabeled batch size.
        vae_steps: Generator updates per iteration.
        adv_steps: Discriminator updates per iteration.
        lr: Initial Adam learning rate of both optimisers.
        beta: β, KL weight.
        adversary_weight: λ_adv, weight of the adversarial term.
        reconstruction_weight: w_rec, weight of the reconstruction MSE.
        labeled_state: Discriminator target of labeled codes.
        state_unl: Discriminator targets ``[U]`` of the unlabeled codes (``None``: 1 − s_L).
        classifier: Optional target learner on the latent coordinates after the decoder's
            ``decode_dims``, trained with the generator on the labeled labels.
        y_lab: Labels ``[L]`` (with ``classifier``).
        label_weight: w_lab, weight of the classifier's cross-entropy.
        lr_decay: Factor applied to both learning rates at each decay point.
        lr_decays: Decay points, every ``max(1, steps // lr_decays)`` iterations (0 = none).
        fresh_batches: Draw a new batch for every update after the first of an iteration (the
            last batch also trains D); ``False`` runs all updates of an iteration on one batch.
        generator: CPU generator for the batches (the reparameterisation noise uses the global
            RNG, seeded by the caller).
        device: Where to train.

    Returns:
        Per-iteration means: ``{"reconstruction", "kl", ["label",] "adversarial",
        "discriminator"}``.
    """
    device = torch.device(device)
    trained = [vae] + ([] if classifier is None else [classifier])  # by the generator loss
    nets = trained + [disc]
    for net in nets:
        net.to(device).train()
    opt_g = torch.optim.Adam([p for net in trained for p in net.parameters()], lr=lr)
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr)
    lab, unl = _Cycler(len(x_lab), batch_size, generator), _Cycler(len(x_unl), batch_size, generator)
    period = max(1, steps // lr_decays) if lr_decays else 0
    terms = ["reconstruction", "kl"] + ([] if classifier is None else ["label"]) + ["adversarial"]
    hist: dict[str, list[float]] = {k: [] for k in terms + ["discriminator"]}

    def draw():
        il, iu = lab.next(), unl.next()
        yl = None if classifier is None else y_lab[il].to(device)
        su = None if state_unl is None else state_unl[iu].to(device, torch.float32)
        return x_lab[il].to(device), yl, x_unl[iu].to(device), su  # [b, ...], [b], [b', ...], [b']

    for it in range(steps):
        if period and it and it % period == 0:
            for opt in (opt_g, opt_d):
                for group in opt.param_groups:
                    group["lr"] *= lr_decay
        xl, yl, xu, su = draw()
        acc = dict.fromkeys(terms, 0.0)
        for k in range(vae_steps):
            if k and fresh_batches:
                xl, yl, xu, su = draw()
            z_l, mu_l, mse_l, kl_l = _vae_pass(vae, xl)
            _, mu_u, mse_u, kl_u = _vae_pass(vae, xu)
            step = {"reconstruction": mse_l + mse_u, "kl": kl_l + kl_u}
            loss = reconstruction_weight * step["reconstruction"] + beta * step["kl"]
            if classifier is not None:
                step["label"] = F.cross_entropy(classifier(z_l[:, vae.decode_dims :]), yl)
                loss = loss + label_weight * step["label"]
            d_l, d_u = disc(mu_l), disc(mu_u)
            step["adversarial"] = (F.binary_cross_entropy_with_logits(d_l, torch.ones_like(d_l))
                                   + F.binary_cross_entropy_with_logits(d_u, torch.ones_like(d_u)))
            loss = loss + adversary_weight * step["adversarial"]
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            opt_g.step()
            for key in terms:
                acc[key] += float(step[key].detach()) / vae_steps
        dsc = 0.0
        for k in range(adv_steps):
            if k and fresh_batches:
                xl, yl, xu, su = draw()
            with torch.no_grad():
                mu_l, mu_u = vae.encode(xl)[0], vae.encode(xu)[0]
            d_l, d_u = disc(mu_l), disc(mu_u)
            t_u = torch.full_like(d_u, 1.0 - labeled_state) if su is None else su
            l_d = (F.binary_cross_entropy_with_logits(d_l, torch.full_like(d_l, labeled_state))
                   + F.binary_cross_entropy_with_logits(d_u, t_u))
            opt_d.zero_grad(set_to_none=True)
            l_d.backward()
            opt_d.step()
            dsc += float(l_d.detach()) / adv_steps
        for key, val in zip(hist, list(acc.values()) + [dsc]):
            hist[key].append(val)
    for net in nets:
        net.eval()
    return hist


def train_vaal(vae: VAE, disc: Discriminator, x_lab: torch.Tensor, x_unl: torch.Tensor, *,
               steps: int, batch_size: int = 64, vae_steps: int = 2, adv_steps: int = 1,
               lr: float = 5e-4, beta: float = 1.0, adversary_weight: float = 1.0,
               fresh_batches: bool = False, generator: torch.Generator,
               device: torch.device | str = "cpu") -> dict[str, list[float]]:
    """Alternate VAE (Eq. 3) and discriminator (Eq. 4) updates of VAAL.

    Args:
        vae: The VAE (trained in place).
        disc: The discriminator (trained in place).
        x_lab: Labeled inputs ``[L, ...]``.
        x_unl: Unlabeled inputs ``[U, ...]``.
        steps: Iterations (each: ``vae_steps`` VAE updates, ``adv_steps`` D updates).
        batch_size: Labeled and unlabeled batch size.
        vae_steps: VAE updates per iteration.
        adv_steps: Discriminator updates per iteration.
        lr: Adam learning rate of both networks.
        beta: β, weight of the KL term (λ₁ = 1).
        adversary_weight: λ₂, weight of the adversarial term.
        fresh_batches: Draw a new labeled and unlabeled batch for every update after the first
            of an iteration, as the authors' code does (D then trains on the last VAE batch);
            ``False`` runs all updates of an iteration on one batch.
        generator: CPU generator for the batches (the reparameterisation noise uses the global
            RNG, seeded by the caller).
        device: Where to train.

    Returns:
        Per-iteration means: ``{"reconstruction", "kl", "adversarial", "discriminator"}``.
    """
    return train_adversarial(vae, disc, x_lab, x_unl, steps=steps, batch_size=batch_size,
                             vae_steps=vae_steps, adv_steps=adv_steps, lr=lr, beta=beta,
                             adversary_weight=adversary_weight, fresh_batches=fresh_batches,
                             generator=generator, device=device)


class _AdversarialStrategy(Strategy):
    """Shared part of VAAL and SRAAL: architecture choice, scoring by D(μ(x)) and selection
    (subclasses define :meth:`_train` and the sign of :meth:`score`)."""

    def _architecture(self, input_shape) -> str:
        arch = self.opts["architecture"]
        if arch == "auto":
            return "conv" if _conv_ok(input_shape) else "mlp"
        return arch

    def _train(self, model, data, labeled: torch.Tensor, unlabeled: torch.Tensor,
               generator: torch.Generator, device: torch.device | str) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def _state_probability(self, x: torch.Tensor) -> torch.Tensor:
        """D(μ(x)) ``[M]`` in batches of ``batch_size``.

        Raises:
            ValueError: If the VAE and discriminator have not been trained.
        """
        if self.vae is None or self.discriminator is None:
            raise ValueError(f"strategy {self.name!r} must train its VAE and discriminator "
                             f"first (select() does, or call train_networks())")
        device = model_device(self.vae)
        self.vae.eval()
        self.discriminator.eval()
        bs = self.opts["batch_size"]
        out = [torch.sigmoid(self.discriminator(self.vae.encode(x[s : s + bs].to(device))[0])).cpu()
               for s in range(0, x.shape[0], bs)]  # [B] each
        return torch.cat(out)  # [M]

    def select(self, model, data, pool, budget, generator, context=None) -> torch.Tensor:
        """Train the networks on the pool and pick the candidates of highest :meth:`score`.

        Args:
            model: Task model (its device is used when no context is given).
            data: The dataset.
            pool: Labeled / unlabeled bookkeeping (all unlabeled data trains the networks).
            budget: Number of examples to select.
            generator: CPU generator (candidate subset, then the training seed).
            context: Optional; its ``device`` is used for training.

        Returns:
            LongTensor ``[budget]`` of training-set indices, best first.

        Raises:
            ValueError: An unsupported task, an empty labeled or unlabeled set, or a budget
                above the number of candidates.
        """
        self.check_task(data.task)
        labeled, unlabeled = pool.labeled, pool.unlabeled
        if labeled.numel() == 0 or unlabeled.numel() == 0:
            raise ValueError(f"strategy {self.name!r} needs both labeled and unlabeled examples "
                             f"to train its discriminator; set initial_size >= 1")
        cands = self.candidate_indices(pool, generator)  # [M]
        check_budget(budget, cands.numel())
        device = context.device if context is not None else model_device(model)
        self._train(model, data, labeled, unlabeled, generator, device)
        return cands[topk(self.score(model, data.x_train[cands]), budget, label=self.label)]


@register
class VAAL(_AdversarialStrategy):
    """Pick the candidates a VAE + discriminator judge least likely to be labeled."""

    name = "vaal"
    tasks = ("classification", "segmentation")  # image-level: the VAE sees the input only
    options = {
        "latent_dim": integer(32, 1, help="VAE latent dimension"),
        "architecture": choice("auto", ("auto", "conv", "mlp"),
                               help="VAE: conv for images with sides multiple of 4, else mlp"),
        "width": integer(32, 1, help="first conv layer channels (conv) / hidden units (mlp)"),
        "disc_hidden": integer(512, 1, help="discriminator hidden units"),
        "steps": integer(150, 1, help="training iterations per cycle"),
        "train_batch_size": integer(64, 1, help="labeled and unlabeled batch size"),
        "vae_steps": integer(2, 1, help="VAE updates per iteration"),
        "adv_steps": integer(1, 1, help="discriminator updates per iteration"),
        "fresh_batches": boolean(False, help="new batch for each update after the first of an "
                                             "iteration (authors' code); false: one batch"),
        "lr": number(5e-4, 0.0, low_open=True, help="Adam learning rate"),
        "beta": number(1.0, 0.0, help="β, KL weight"),
        "adversary_weight": number(1.0, 0.0, help="λ₂, adversarial-loss weight"),
        "batch_size": integer(1024, 1, help="inference batch size"),
    }

    def __init__(self, **opts):
        super().__init__(**opts)
        self.vae: VAE | None = None
        self.discriminator: Discriminator | None = None
        self.history: dict[str, list[float]] = {}

    def train_networks(self, data, labeled: torch.Tensor, unlabeled: torch.Tensor,
            generator: torch.Generator, device: torch.device | str = "cpu") -> dict[str, list[float]]:
        """Train a fresh VAE and discriminator on the labeled and unlabeled inputs.

        Args:
            data: The dataset.
            labeled: Labeled indices ``[L]`` (L >= 1).
            unlabeled: Unlabeled indices ``[U]`` (U >= 1).
            generator: CPU generator; one seed is drawn from it.
            device: Where to train.

        Returns:
            The training history (see :func:`train_vaal`), also kept in ``self.history``.
        """
        seed = draw_seed(generator)
        with seeded(seed, device):
            self.vae = VAE(data.input_shape, self.opts["latent_dim"],
                           self._architecture(data.input_shape), self.opts["width"])
            self.discriminator = Discriminator(self.opts["latent_dim"], self.opts["disc_hidden"])
            self.history = train_vaal(
                self.vae, self.discriminator, data.x_train[labeled], data.x_train[unlabeled],
                steps=self.opts["steps"], batch_size=self.opts["train_batch_size"],
                vae_steps=self.opts["vae_steps"], adv_steps=self.opts["adv_steps"],
                lr=self.opts["lr"], beta=self.opts["beta"],
                adversary_weight=self.opts["adversary_weight"],
                fresh_batches=self.opts["fresh_batches"],
                generator=torch.Generator().manual_seed(seed), device=device)
        return self.history

    @torch.no_grad()
    def score(self, model, x, *, generator=None) -> torch.Tensor:
        """Negated discriminator probability −D(μ(x)) (higher = looks less labeled).

        Args:
            model: Unused (VAAL is task-agnostic).
            x: Candidate inputs ``[M, ...]``.
            generator: Unused.

        Returns:
            Scores ``[M]`` in ``[-1, 0]``.

        Raises:
            ValueError: If the VAE and discriminator have not been trained.
        """
        return -self._state_probability(x).double()  # [M]

    def _train(self, model, data, labeled, unlabeled, generator, device) -> None:
        self.train_networks(data, labeled, unlabeled, generator, device)
