"""Monte-Carlo dropout acquisitions (Gal, Islam & Ghahramani, "Deep Bayesian Active Learning
with Image Data", ICML 2017, Section 3).

T stochastic forward passes with dropout active give samples p_t = softmax(model(x; ω_t)),
ω_t ~ q(ω) (Gal & Ghahramani, 2016). With p̄ = (1/T) Σ_t p_t and H the Shannon entropy:

* ``mc_entropy`` (Max Entropy): H(p̄) = −Σ_c p̄_c log p̄_c.
* ``bald`` (Houlsby et al., 2011): the mutual information between the prediction and the
  weights, I[y, ω | x] ≈ H(p̄) − (1/T) Σ_t H(p_t).
* ``variation_ratio`` (Freeman, 1965): 1 − f_m / T, where f_m is the number of passes whose
  arg-max class is the modal class.

The T passes run as **one** batched forward per chunk of inputs, with every module other than
``nn.Dropout`` (batch norm, ...) in eval mode. Everything before the first dropout layer is
deterministic, so by default (``replicate: first_dropout``) the chunk goes through that part
once and the first active ``nn.Dropout`` replicates its input T times (this needs every
later layer to read only the replicated activations, i.e. no skip connection around a dropout
layer; a wrong number of output rows is reported as an error). With ``replicate: input`` the
inputs themselves are replicated (valid for any architecture, T times the compute). Each dropout module applies an independent mask to each replica. Masks are
drawn explicitly from one CPU generator per (dropout module, pass t), consumed in input order,
so the batched passes use exactly the masks of T sequential passes (``batched: false``) and
the result does not depend on the chunk size. A model without an active ``nn.Dropout``
(p > 0) is an error: build it with ``model_options: {dropout: 0.5}``.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..models import model_device
from .base import Strategy, boolean, choice, integer, register
from .uncertainty import entropy

__all__ = ["active_dropout_modules", "mc_dropout_probs", "bald", "mc_entropy",
           "variation_ratio", "BALD", "MCEntropy", "VariationRatio"]


def active_dropout_modules(model: nn.Module) -> list[nn.Dropout]:
    """The ``nn.Dropout`` modules of ``model`` with a drop probability ``p > 0``.

    Args:
        model: Any module.

    Returns:
        The modules in registration (= forward, for the models here) order.
    """
    return [m for m in model.modules() if isinstance(m, nn.Dropout) and m.p > 0]


REPLICATE = ("first_dropout", "input")


@contextlib.contextmanager
def _explicit_masks(model: nn.Module, generators: list[list[torch.Generator]],
                    state: dict) -> Iterator[None]:
    """Put ``model`` in eval mode and make each active dropout module multiply its output by
    masks drawn from ``generators[k][t]`` for the passes ``state["ts"]``, stacked on the batch
    dimension (row ``i * B + b`` = pass ``ts[i]``, input ``b``). While ``state["replicated"]``
    is False, the first dropout module to run replicates its input ``len(ts)`` times first."""
    drops = active_dropout_modules(model)
    was_training = model.training
    model.eval()  # dropout modules are then the identity; the hooks apply the masks

    def make_hook(k: int, p: float):
        scale = 1.0 / (1.0 - p) if p < 1 else 0.0

        def hook(module, inputs, out):
            ts = state["ts"]
            if not state["replicated"]:
                out = out.repeat(len(ts), *([1] * (out.dim() - 1)))  # [T*B, ...], row t*B + b
                state["replicated"] = True
            rows = out.shape[0] // len(ts)
            shape = (rows, *out.shape[1:])
            u = torch.cat([torch.rand(shape, generator=generators[k][t]) for t in ts])  # [T*B, ...]
            keep = (u >= p).to(device=out.device, dtype=out.dtype).mul_(scale)
            return out * keep
        return hook

    handles = [m.register_forward_hook(make_hook(k, float(m.p))) for k, m in enumerate(drops)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)


@torch.no_grad()
def mc_dropout_probs(model: nn.Module, x: torch.Tensor, T: int, generator: torch.Generator, *,
                     batch_size: int = 1024, batched: bool = True,
                     replicate: str = "first_dropout") -> torch.Tensor:
    """Softmax outputs of T dropout passes (MC dropout samples, Gal & Ghahramani 2016).

    Args:
        model: Classifier with at least one active ``nn.Dropout``.
        x: Inputs ``[M, ...]`` (CPU or the model's device).
        T: Number of stochastic passes (>= 1).
        generator: CPU generator; one seed per (dropout module, pass) is drawn from it.
        batch_size: Maximum number of rows after replication: chunks of
            ``max(1, batch_size // T)`` inputs when ``batched``, ``batch_size`` inputs per pass
            otherwise.
        batched: One forward per chunk for all T passes (default) or T sequential passes;
            both use the same masks and give the same probabilities.
        replicate: Where the batched forward replicates the chunk: at the first dropout layer
            (``first_dropout``; everything before it runs once) or at the input (``input``).

    Returns:
        Probabilities ``[T, M, C]`` (float64, CPU).

    Raises:
        ValueError: If the model has no active dropout, an argument is out of range, or the
            model output does not have T rows per input (a dropout layer off the main path;
            use ``replicate="input"``).
    """
    drops = active_dropout_modules(model)
    if not drops:
        raise ValueError(
            "MC dropout needs a model with dropout (an nn.Dropout with p > 0), but this model has "
            "none active; build it with dropout, e.g. params 'model_options: {dropout: 0.5}'")
    if not (isinstance(T, int) and T >= 1):
        raise ValueError(f"T must be an integer >= 1, got {T!r}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if replicate not in REPLICATE:
        raise ValueError(f"replicate must be one of {list(REPLICATE)}, got {replicate!r}")
    seeds = torch.randint(0, 2**62, (len(drops), T), generator=generator)  # [K, T]
    gens = [[torch.Generator().manual_seed(int(s)) for s in row] for row in seeds]
    device = model_device(model)
    state: dict = {"ts": range(T), "replicated": False}
    m = x.shape[0]
    with _explicit_masks(model, gens, state):
        if batched:
            chunk = max(1, batch_size // T)
            outs = []
            for s in range(0, m, chunk):
                xb = x[s : s + chunk].to(device)  # [B, ...]
                b = xb.shape[0]
                state["replicated"] = replicate == "input"
                if replicate == "input":
                    xb = xb.repeat(T, *([1] * (xb.dim() - 1)))  # [T*B, ...], row t*B + b
                logits = model(xb).double()  # [T*B, C]
                if logits.shape[0] != T * b:
                    raise ValueError(
                        f"MC dropout: the model returned {logits.shape[0]} rows for {b} inputs x "
                        f"T={T}; its dropout is not on the path to the output, use "
                        "replicate='input'")
                outs.append(torch.softmax(logits, -1).view(T, b, -1).cpu())  # [T, B, C]
            return torch.cat(outs, dim=1)  # [T, M, C]
        per_pass = []
        for t in range(T):
            state["ts"] = [t]
            outs = []
            for s in range(0, m, batch_size):
                state["replicated"] = True
                outs.append(torch.softmax(model(x[s : s + batch_size].to(device)).double(), -1).cpu())
            per_pass.append(torch.cat(outs))  # [M, C]
        return torch.stack(per_pass)  # [T, M, C]


def mc_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy of the MC-averaged prediction H(p̄) (Gal et al. 2017, "Max Entropy").

    Args:
        probs: MC samples ``[T, M, C]``.

    Returns:
        ``[M]`` entropies in nats.
    """
    return entropy(probs.mean(0))  # [M]


def bald(probs: torch.Tensor) -> torch.Tensor:
    """BALD mutual information H(p̄) − (1/T) Σ_t H(p_t) (Houlsby et al. 2011; Gal et al. 2017).

    Args:
        probs: MC samples ``[T, M, C]``.

    Returns:
        ``[M]`` mutual-information estimates in nats (>= 0 up to rounding).
    """
    return entropy(probs.mean(0)) - entropy(probs).mean(0)  # [M]


def variation_ratio(probs: torch.Tensor) -> torch.Tensor:
    """Variation ratio 1 − f_m / T (Freeman 1965; Gal et al. 2017).

    Args:
        probs: MC samples ``[T, M, C]``; each pass votes for its arg-max class.

    Returns:
        ``[M]`` scores in ``[0, 1 − 1/C]``, where f_m is the vote count of the modal class;
        NaN for an input with a non-finite probability in any pass (its arg-max vote would
        be arbitrary, so the score is left for the ranking's non-finite rule).
    """
    T, _, C = probs.shape
    votes = F.one_hot(probs.argmax(-1), C).sum(0)  # [M, C]
    bad = ~torch.isfinite(probs).all(-1).all(0)  # [M]
    return (1.0 - votes.max(-1).values.double() / T).masked_fill(bad, float("nan"))


class _MCDropoutScore(Strategy):
    """Shared options and scoring path of the MC-dropout acquisitions."""

    tasks = ("classification",)
    options = {
        "T": integer(50, 1, help="number of stochastic dropout passes"),
        "batch_size": integer(1024, 1, help="maximum rows per forward (inputs x T)"),
        "batched": boolean(True, help="one forward over T replicas (false: T sequential passes,"
                                      " same masks)"),
        "replicate": choice("first_dropout", REPLICATE,
                            help="replicate the batch at the first dropout layer (the layers "
                                 "before it run once) or at the input"),
    }

    def score(self, model, x, *, generator=None) -> torch.Tensor:
        """Acquisition score of each input from T dropout passes (higher = label first).

        Args:
            model: Trained classifier with active dropout.
            x: Candidate inputs ``[M, ...]``.
            generator: CPU generator for the dropout masks (seed 0 when omitted).

        Returns:
            Scores ``[M]`` (float64).

        Raises:
            ValueError: If the model has no active dropout (the message names the fix).
        """
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        if not active_dropout_modules(model):
            raise ValueError(
                f"strategy {self.name!r} needs a model with dropout (an nn.Dropout with p > 0) but "
                "the model has none active; set params 'model_options: {dropout: 0.5}'")
        probs = mc_dropout_probs(model, x, self.opts["T"], generator,
                                 batch_size=self.opts["batch_size"], batched=self.opts["batched"],
                                 replicate=self.opts["replicate"])
        return self.from_probs(probs)

    @staticmethod
    def from_probs(probs: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Score ``[M]`` from MC samples ``[T, M, C]``."""
        raise NotImplementedError


@register
class BALD(_MCDropoutScore):
    """Bayesian Active Learning by Disagreement with MC dropout (see :func:`bald`)."""

    name = "bald"

    @staticmethod
    def from_probs(probs: torch.Tensor) -> torch.Tensor:
        """Mutual information, see :func:`bald`."""
        return bald(probs)


@register
class MCEntropy(_MCDropoutScore):
    """Entropy of the MC-dropout predictive distribution (see :func:`mc_entropy`)."""

    name = "mc_entropy"

    @staticmethod
    def from_probs(probs: torch.Tensor) -> torch.Tensor:
        """Predictive entropy, see :func:`mc_entropy`."""
        return mc_entropy(probs)


@register
class VariationRatio(_MCDropoutScore):
    """Variation ratio of the T dropout votes (see :func:`variation_ratio`)."""

    name = "variation_ratio"

    @staticmethod
    def from_probs(probs: torch.Tensor) -> torch.Tensor:
        """1 − modal vote share, see :func:`variation_ratio`."""
        return variation_ratio(probs)
