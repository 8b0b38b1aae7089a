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
iteration takes ``vae_steps`` = 2 VAE steps and ``adv_steps`` = 1 discriminator step on one
labeled and one unlabeled batch, with Adam (lr 5e-4), λ₁ = λ₂ = β = 1, latent dimension 32 and
a 512-512 discriminator. The authors' VAE is a 4-layer, 128–1024-channel conv net trained for
as long as the task model; here the networks are small (two stride-2 conv layers of
``width`` and 2·``width`` channels for images whose sides are multiples of 4, e.g. 28×28 and
32×32; an MLP for vectors or other sizes) and ``steps`` is kept small so a cycle runs on a CPU.
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
from .base import Strategy, check_budget, choice, integer, number, register

__all__ = ["VAE", "Discriminator", "train_vaal", "VAAL"]


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
    """

    def __init__(self, input_shape: Sequence[int], latent_dim: int = 32,
                 architecture: str = "conv", width: int = 32):
        super().__init__()
        self.input_shape = tuple(input_shape)
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
                nn.Linear(latent_dim, flat), nn.Unflatten(1, inner), nn.ReLU(),
                nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),
                nn.ConvTranspose2d(width, c, 4, 2, 1))
        elif architecture == "mlp":
            d = math.prod(self.input_shape)
            flat = width
            self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(d, width), nn.ReLU(),
                                         nn.Linear(width, width), nn.ReLU())
            self.decoder = nn.Sequential(nn.Linear(latent_dim, width), nn.ReLU(),
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

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction ``[B, ...]`` from z = μ + σ·ε (ε from the global RNG), μ and log σ²."""
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # [B, latent]
        return self.decoder(z), mu, logvar


class Discriminator(nn.Module):
    """MLP on latent codes: latent → hidden → hidden → 1 logit of "labeled" (VAAL's D).

    Args:
        latent_dim: Dimension of z.
        hidden: Hidden units (512 in the authors' code).
    """

    def __init__(self, latent_dim: int = 32, hidden: int = 512):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

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


def train_vaal(vae: VAE, disc: Discriminator, x_lab: torch.Tensor, x_unl: torch.Tensor, *,
               steps: int, batch_size: int = 64, vae_steps: int = 2, adv_steps: int = 1,
               lr: float = 5e-4, beta: float = 1.0, adversary_weight: float = 1.0,
               generator: torch.Generator, device: torch.device | str = "cpu"
               ) -> dict[str, list[float]]:
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
        generator: CPU generator for the batches (the reparameterisation noise uses the global
            RNG, seeded by the caller).
        device: Where to train.

    Returns:
        Per-iteration means: ``{"reconstruction", "kl", "adversarial", "discriminator"}``.
    """
    device = torch.device(device)
    vae.to(device).train()
    disc.to(device).train()
    opt_v = torch.optim.Adam(vae.parameters(), lr=lr)
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr)
    lab, unl = _Cycler(len(x_lab), batch_size, generator), _Cycler(len(x_unl), batch_size, generator)
    hist: dict[str, list[float]] = {"reconstruction": [], "kl": [], "adversarial": [],
                                    "discriminator": []}
    for _ in range(steps):
        xl = x_lab[lab.next()].to(device)  # [b, ...]
        xu = x_unl[unl.next()].to(device)  # [b', ...]
        rec = kl = adv = 0.0
        for _ in range(vae_steps):
            recon_l, mu_l, logvar_l = vae(xl)
            recon_u, mu_u, logvar_u = vae(xu)
            mse_l, kl_l = _elbo_terms(xl, recon_l, mu_l, logvar_l)
            mse_u, kl_u = _elbo_terms(xu, recon_u, mu_u, logvar_u)
            d_l, d_u = disc(mu_l), disc(mu_u)
            l_adv = (F.binary_cross_entropy_with_logits(d_l, torch.ones_like(d_l))
                     + F.binary_cross_entropy_with_logits(d_u, torch.ones_like(d_u)))
            loss = mse_l + mse_u + beta * (kl_l + kl_u) + adversary_weight * l_adv
            opt_v.zero_grad(set_to_none=True)
            loss.backward()
            opt_v.step()
            rec += float((mse_l + mse_u).detach()) / vae_steps
            kl += float((kl_l + kl_u).detach()) / vae_steps
            adv += float(l_adv.detach()) / vae_steps
        dsc = 0.0
        for _ in range(adv_steps):
            with torch.no_grad():
                mu_l, mu_u = vae.encode(xl)[0], vae.encode(xu)[0]
            d_l, d_u = disc(mu_l), disc(mu_u)
            l_d = (F.binary_cross_entropy_with_logits(d_l, torch.ones_like(d_l))
                   + F.binary_cross_entropy_with_logits(d_u, torch.zeros_like(d_u)))
            opt_d.zero_grad(set_to_none=True)
            l_d.backward()
            opt_d.step()
            dsc += float(l_d.detach()) / adv_steps
        for key, val in zip(hist, (rec, kl, adv, dsc)):
            hist[key].append(val)
    vae.eval()
    disc.eval()
    return hist


@register
class VAAL(Strategy):
    """Pick the candidates a VAE + discriminator judge least likely to be labeled."""

    name = "vaal"
    tasks = ("classification",)
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

    def _architecture(self, input_shape) -> str:
        arch = self.opts["architecture"]
        if arch == "auto":
            return "conv" if _conv_ok(input_shape) else "mlp"
        return arch

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
        if self.vae is None or self.discriminator is None:
            raise ValueError("strategy 'vaal' must train its VAE and discriminator first "
                             "(select() does, or call train_networks())")
        device = model_device(self.vae)
        self.vae.eval()
        self.discriminator.eval()
        bs = self.opts["batch_size"]
        out = [torch.sigmoid(self.discriminator(self.vae.encode(x[s : s + bs].to(device))[0])).cpu()
               for s in range(0, x.shape[0], bs)]  # [B] each
        return -torch.cat(out).double()  # [M]

    def select(self, model, data, pool, budget, generator, context=None) -> torch.Tensor:
        """Train VAAL on the pool and pick the least "labeled-looking" candidates.

        Args:
            model: Task model (only its device is used when no context is given).
            data: The dataset.
            pool: Labeled / unlabeled bookkeeping (all unlabeled data trains the VAE).
            budget: Number of examples to select.
            generator: CPU generator (candidate subset, then the training seed).
            context: Optional; its ``device`` is used for training.

        Returns:
            LongTensor ``[budget]`` of training-set indices, lowest D first.

        Raises:
            ValueError: Regression data, an empty labeled set, or a budget above the number
                of candidates.
        """
        self.check_task(data.task)
        labeled, unlabeled = pool.labeled, pool.unlabeled
        if labeled.numel() == 0 or unlabeled.numel() == 0:
            raise ValueError("strategy 'vaal' needs both labeled and unlabeled examples to train "
                             "its discriminator; set initial_size >= 1")
        cands = self.candidate_indices(pool, generator)  # [M]
        check_budget(budget, cands.numel())
        device = context.device if context is not None else model_device(model)
        self.train_networks(data, labeled, unlabeled, generator, device)
        return cands[topk(self.score(model, data.x_train[cands]), budget, label=self.label)]
