"""NoiseStability (Li et al., "Deep Active Learning with Noise Stability", AAAI 2024).

The task model is ``T = g ∘ f`` with feature-extractor parameters θ ∈ R^n. NoiseStability draws
K random unit directions u(k) (standard Gaussian, normalised by its own L2 norm over all
perturbed parameters), perturbs θ by ``Δθ(k) = ζ‖θ‖₂ u(k)`` (Algorithm 1, line 5) and
represents every unlabeled x by

* Eq 1: ``Δz(x)(k) = (f(x; θ + Δθ(k)) − f(x; θ)) / (ζ‖θ‖₂)``,
* Eq 2: ``Δẑ(x) = sqrt(n / K) · (Δz(x)(1), …, Δz(x)(K)) ∈ R^{K·d}``,

then selects the budget with Gonzalez's greedy k-center on these vectors (Algorithm 1,
line 10). ``E‖Δẑ(x)‖² = ‖J_θ(x)‖_F²`` as ζ → 0 (Eq 6), so ``‖Δẑ(x)‖`` measures uncertainty
and its direction diversity (Eq 7, 8).

:func:`noise_stability_embedding` computes ``Δẑ`` (usable without a strategy, e.g. by the
theory checks); :class:`NoiseStability` ranks with it. Two ablations of the paper are
registered as subclasses: ``noise_stability_m`` (NS-M, the top-b magnitudes ``‖Δẑ(x)‖``) and
``noise_stability_d`` (NS-D, rows scaled to unit length before k-center). NS-D starts k-center
from the labeled examples' unit Δẑ (``kcenter_start: labeled``, its default in both variants):
from the origin every unit row is at distance 1, so the first pick and later ties would be
decided by float rounding.

Paper vs the authors' code (``variant="official"`` sets the right column at once):

=================  ======================================  =====================================
option             paper (default)                         official code
=================  ======================================  =====================================
``noise_norm``     ``global``: one ζ‖θ‖₂ for all of θ       ``per_tensor``: each weight's noise
                                                           rescaled to ζ‖W‖_F
``perturb``        ``features``: θ of f only                ``all``: the whole network
``include_bias``   ``True`` (θ is every parameter of f)     ``False`` (only ``weight`` tensors,
                                                           batch-norm scales included)
``output``         ``auto``: predictive probabilities for   ``auto`` (same: softmax, or the
                   classification (Sec 3.4), the last       last feature for regression)
                   feature for regression
``row_norm``       ``none``                                 ``clean_output``: each row divided
                                                           by ‖clean output row‖
``selector``       ``kcenter`` from the origin (NS-D:       ``kcenter`` from the origin
                   from the labeled set)
``candidates``     the whole pool (the run's setting)      1,000 random unlabeled per cycle
                                                           (the authors' MNIST setting)
=================  ======================================  =====================================

The authors' code also omits the factors ``1 / (ζ‖θ‖₂)`` of Eq 1 and ``sqrt(n/K)`` of Eq 2;
both multiply every row by the same constant, which changes no k-center, k-means++ or top-k
choice, so they are always applied here.

Numerics (``difference``): Eq 1 is a finite difference, and in float32 it loses most of its
digits to cancellation once ζ is small (θ + Δθ rounds to a few ulps of θ). ``finite64``
evaluates the same difference on a float64 copy of the model; ``jvp`` computes its ζ → 0
limit ``J_θ(x) Δθ / (ζ‖θ‖₂)`` with forward-mode AD (no cancellation at all). On the small
CNN (benchmarks/bench_noise_stability.py) the float32 difference is off from the float64 one
by 52–72% (relative Frobenius norm) at ζ = 1e-6, 6–8% at 1e-5 and 0.06–0.09% at 1e-3; at
1e-3 the float64 difference itself differs from the jvp limit by 0.4–0.6% (curvature).
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any, Iterator

import torch
from torch import nn

from .. import selection
from ..models import feature_parameters, model_device
from .base import Strategy, boolean, check_budget, choice, integer, number, register

__all__ = ["NoiseStability", "NoiseStabilityMagnitude", "NoiseStabilityDirection",
           "noise_stability_embedding", "perturbed_parameters", "resolve_output",
           "NOISE_NORMS", "PERTURB", "OUTPUTS", "ROW_NORMS", "DIFFERENCES", "SELECTORS",
           "KCENTER_STARTS"]

NOISE_NORMS = ("global", "per_tensor")
PERTURB = ("features", "all")
OUTPUTS = ("auto", "logits", "probs", "features")
ROW_NORMS = ("none", "clean_output")
DIFFERENCES = ("finite", "finite64", "jvp")
SELECTORS = ("kcenter", "kmeanspp", "kdpp", "topk_norm")
KCENTER_STARTS = ("origin", "labeled")


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"option {name!r} = {value!r} is invalid; allowed: one of {list(allowed)}")


def perturbed_parameters(model: nn.Module, perturb: str = "features",
                         include_bias: bool = True) -> dict[str, nn.Parameter]:
    """The parameters θ that NoiseStability perturbs, by name, in ``named_parameters`` order.

    Args:
        model: A model following the ``g ∘ f`` contract (``perturb="features"`` needs
            ``model.head``; ``"all"`` works for any module).
        perturb: ``"features"`` (θ of f: every parameter outside ``model.head``, as in Eq 1)
            or ``"all"`` (the whole network, as the authors' code does).
        include_bias: Keep parameters whose name ends in ``bias``; ``False`` keeps only
            ``weight``-like tensors (the authors' code perturbs ``module.weight`` only).

    Returns:
        ``{name: parameter}``; n of Eq 2 is the sum of their element counts.

    Raises:
        ValueError: Unknown ``perturb``, a model without ``head`` for ``"features"``, or no
            parameter left to perturb.
    """
    _check_choice("perturb", perturb, PERTURB)
    if perturb == "features":
        if not isinstance(getattr(model, "head", None), nn.Module):
            raise ValueError("option 'perturb' = 'features' needs a model with a 'head' module "
                             "(the g of T = g∘f); use perturb='all' for other models")
        params = feature_parameters(model)
    else:
        params = dict(model.named_parameters())
    if not include_bias:
        params = {n: p for n, p in params.items() if n.rsplit(".", 1)[-1] != "bias"}
    if not params:
        raise ValueError(f"no parameters to perturb (perturb={perturb!r}, "
                         f"include_bias={include_bias!r})")
    return params


def resolve_output(output: str, task: str) -> str:
    """Resolve ``output="auto"`` by the task, following the paper's implementation tip (Sec 3.4).

    Args:
        output: One of :data:`OUTPUTS`.
        task: ``"classification"`` or ``"regression"``.

    Returns:
        ``"probs"`` (predictive probabilities) for classification and ``"features"`` (the last
        deep feature z = f(x)) for regression when ``output == "auto"``, else ``output``.

    Raises:
        ValueError: Unknown ``output``, or ``"probs"`` for a regression task.
    """
    _check_choice("output", output, OUTPUTS)
    if output == "auto":
        return "probs" if task == "classification" else "features"
    if output == "probs" and task != "classification":
        raise ValueError(f"option 'output' = 'probs' needs a classification task, not {task!r}; "
                         "allowed for regression: 'auto', 'features' or 'logits'")
    return output


class _Readout(nn.Module):
    """``x -> [N, d]``: the model's logits, softmax probabilities or features f(x)."""

    def __init__(self, model: nn.Module, output: str):
        super().__init__()
        self.model = model
        self.output = output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.model.features(x) if self.output == "features" else self.model(x)
        z = z.reshape(z.shape[0], -1)  # [N, d]; a regression output [N] becomes [N, 1]
        return torch.softmax(z, dim=1) if self.output == "probs" else z


def _noise_draws(params: dict[str, torch.Tensor], K: int, zeta: float, noise_norm: str,
                 theta_norm: float, generator: torch.Generator
                 ) -> Iterator[dict[str, torch.Tensor]]:
    """Yield Δθ(1), …, Δθ(K) as float64 CPU tensors (Algorithm 1, line 5).

    ``global``: Δθ = ζ‖θ‖₂ g/‖g‖₂ with one g ~ N(0, I_n) over all perturbed tensors.
    ``per_tensor``: Δθ_W = ζ‖W‖_F g_W/‖g_W‖ for each tensor W; then
    ‖Δθ‖₂ = ζ·sqrt(Σ_W ‖W‖_F²) = ζ‖θ‖₂ as well. Draws are in float64 so that every
    ``difference`` mode sees exactly the same directions.
    """
    norms = {n: float(p.detach().double().norm()) for n, p in params.items()}
    for _ in range(K):
        g = {n: torch.randn(p.shape, generator=generator, dtype=torch.float64)
             for n, p in params.items()}
        if noise_norm == "global":
            s = zeta * theta_norm / math.sqrt(sum(float(t.square().sum()) for t in g.values()))
            yield {n: t.mul_(s) for n, t in g.items()}
        else:
            yield {n: t.mul_(zeta * norms[n] / max(float(t.norm()), 1e-300)) for n, t in g.items()}


def _batches(n: int, batch_size: int) -> list[slice]:
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def noise_stability_embedding(model: nn.Module, x: torch.Tensor, *, K: int = 30,
                              zeta: float = 1e-3, noise_norm: str = "global",
                              perturb: str = "features", include_bias: bool = True,
                              output: str = "auto", row_norm: str = "none",
                              difference: str = "finite",
                              generator: torch.Generator | None = None, batch_size: int = 1024,
                              return_directions: bool = False):
    """The NoiseStability representation Δẑ(x) of every input (Eq 1 and Eq 2).

    For k = 1..K a direction is drawn, θ is perturbed in place by Δθ(k) (one saved copy of θ
    restores it exactly afterwards), and all batches are run through the perturbed model, so
    the cost is K + 1 forward passes over ``x``; beyond the returned ``[N, K*d]`` matrix the
    memory is one copy of θ, one noise vector and the ``[N, d]`` clean outputs, whatever K. The
    model is scored in eval mode; its parameters (and training flag) are bit-identical after
    the call, also when an error interrupts it.

    Args:
        model: Model following the ``g ∘ f`` contract (any device).
        x: Inputs ``[N, ...]`` (moved to the model's device batch by batch).
        K: Number of noise draws, >= 1 (paper: 30).
        zeta: Relative noise magnitude ζ > 0 (paper: 1e-3).
        noise_norm: ``"global"`` (Δθ = ζ‖θ‖₂ u, Eq 1) or ``"per_tensor"`` (each tensor's
            noise rescaled to ζ‖W‖_F, the authors' code).
        perturb: ``"features"`` (θ of f) or ``"all"`` (every parameter of the model).
        include_bias: Whether bias tensors are perturbed (see :func:`perturbed_parameters`).
        output: ``"logits"``, ``"probs"`` (softmax of the logits), ``"features"`` (z = f(x)) or
            ``"auto"`` (``model.task``: probs for classification, features for regression).
        row_norm: ``"none"`` or ``"clean_output"`` (divide each deviation row by the norm of
            the clean output row, as the authors' code does).
        difference: ``"finite"`` (Eq 1 in the model's dtype), ``"finite64"`` (Eq 1 on a float64
            copy of the model and inputs) or ``"jvp"`` (forward-mode ``J_θ(x) Δθ / (ζ‖θ‖₂)``,
            the ζ → 0 limit of Eq 1 computed without cancellation).
        generator: CPU generator; one number is drawn from it to seed the noise, so the same
            generator state gives the same Δẑ (``None``: the global torch RNG).
        batch_size: Inference batch size, >= 1.
        return_directions: Also return the K noise vectors Δθ(k) (float64 CPU tensors by
            parameter name; meant for tests and theory checks, it keeps K copies of θ).

    Returns:
        ``Δẑ`` as a CPU tensor ``[N, K*d]`` (block k holds Δz(x)(k) · sqrt(n/K), n = number of
        perturbed scalars), in the model's dtype (float64 for ``finite64``); with
        ``return_directions`` the pair ``(Δẑ, [Δθ(1), …, Δθ(K)])``.

    Raises:
        ValueError: An option outside its allowed range (the message names it), an empty
            ``x``, or perturbed parameters of zero or non-finite norm (Eq 1 divides by ζ‖θ‖₂).
    """
    if isinstance(K, bool) or not isinstance(K, int) or K < 1:
        raise ValueError(f"option 'K' = {K!r} is invalid; allowed: integer in [1, inf]")
    if (isinstance(zeta, bool) or not isinstance(zeta, (int, float)) or not math.isfinite(zeta)
            or zeta <= 0):
        raise ValueError(f"option 'zeta' = {zeta!r} is invalid; allowed: number in (0, inf)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"option 'batch_size' = {batch_size!r} is invalid; allowed: integer >= 1")
    _check_choice("noise_norm", noise_norm, NOISE_NORMS)
    _check_choice("row_norm", row_norm, ROW_NORMS)
    _check_choice("difference", difference, DIFFERENCES)
    output = resolve_output(output, getattr(model, "task", "classification"))
    if output == "features" and not callable(getattr(model, "features", None)):
        raise ValueError("option 'output' = 'features' needs a model with a features(x) method")
    if x.shape[0] == 0:
        raise ValueError("x is empty: nothing to score")
    params = perturbed_parameters(model, perturb, include_bias)
    n = sum(p.numel() for p in params.values())
    theta_norm = math.sqrt(sum(float(p.detach().double().square().sum()) for p in params.values()))
    if not math.isfinite(theta_norm):
        n_bad = sum(int((~torch.isfinite(p.detach())).sum()) for p in params.values())
        raise ValueError(f"the perturbed parameters contain {n_bad} non-finite values (NaN/inf), "
                         f"so ||theta|| = {theta_norm}; Eq 1 needs a finite zeta*||theta|| > 0")
    if not theta_norm > 0:
        raise ValueError("the perturbed parameters have zero norm; Eq 1 divides by zeta*||theta||")
    if generator is None:
        seed = int(torch.randint(0, 2**62, (1,)))
    else:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    noise_gen = torch.Generator().manual_seed(seed)
    draws = _noise_draws(params, K, float(zeta), noise_norm, theta_norm, noise_gen)
    kept: list[dict[str, torch.Tensor]] | None = [] if return_directions else None

    was_training = model.training
    model.eval()
    try:
        if difference == "jvp":
            out = _embed_jvp(model, x, params, draws, K, n, float(zeta) * theta_norm, output,
                             row_norm, batch_size, kept)
        else:
            target = model
            if difference == "finite64":
                target = copy.deepcopy(model).double().eval()  # one float64 copy, never K
                params = perturbed_parameters(target, perturb, include_bias)
            out = _embed_finite(target, x, params, draws, K, n, float(zeta) * theta_norm, output,
                                row_norm, batch_size, kept, float64=difference == "finite64")
    finally:
        model.train(was_training)
    return (out, kept) if return_directions else out


def _row_scale(clean: torch.Tensor, row_norm: str) -> torch.Tensor | None:
    """``1 / ‖clean row‖`` ``[N, 1]`` for ``row_norm="clean_output"`` (None otherwise)."""
    if row_norm == "none":
        return None
    return clean.norm(dim=1, keepdim=True).clamp_min_(torch.finfo(clean.dtype).tiny).reciprocal_()


@torch.no_grad()
def _embed_finite(model: nn.Module, x: torch.Tensor, params: dict[str, nn.Parameter],
                  draws: Iterator[dict[str, torch.Tensor]], K: int, n: int, noise_scale: float,
                  output: str, row_norm: str, batch_size: int,
                  kept: list | None, float64: bool) -> torch.Tensor:
    """Eq 1–2 by finite differences: perturb θ in place once per k, run every batch."""
    device = model_device(model)
    readout = _Readout(model, output)
    N = x.shape[0]
    batches = _batches(N, batch_size)

    def inputs(sl: slice) -> torch.Tensor:
        xb = x[sl].to(device)
        return xb.double() if float64 and xb.is_floating_point() else xb

    clean = torch.cat([readout(inputs(sl)) for sl in batches])  # [N, d] on device
    d = clean.shape[1]
    inv_norm = _row_scale(clean, row_norm)  # [N, 1] or None
    scale = math.sqrt(n / K) / noise_scale  # Eq 2 factor times the 1/(ζ‖θ‖) of Eq 1
    out = torch.empty(N, K * d, dtype=clean.dtype)  # [N, K*d] on CPU
    buf = torch.empty_like(clean)  # [N, d] perturbed outputs of one draw
    saved = {name: p.detach().clone() for name, p in params.items()}  # the one copy of θ
    try:
        for k in range(K):
            delta = next(draws)
            if kept is not None:
                kept.append(delta)
            for name, p in params.items():
                p.add_(delta[name].to(device=p.device, dtype=p.dtype))
            for sl in batches:
                buf[sl] = readout(inputs(sl))
            for name, p in params.items():  # exact restore: copy back, never subtract
                p.copy_(saved[name])
            buf.sub_(clean)
            if inv_norm is not None:
                buf.mul_(inv_norm)
            out[:, k * d:(k + 1) * d].copy_(buf.mul_(scale))
    finally:
        for name, p in params.items():
            p.copy_(saved[name])
    return out


def _embed_jvp(model: nn.Module, x: torch.Tensor, params: dict[str, nn.Parameter],
               draws: Iterator[dict[str, torch.Tensor]], K: int, n: int, noise_scale: float,
               output: str, row_norm: str, batch_size: int, kept: list | None) -> torch.Tensor:
    """Eq 1–2 in the ζ → 0 limit: ``J_θ(x) Δθ(k) / (ζ‖θ‖₂)`` by forward-mode AD."""
    from torch.func import functional_call, jvp

    device = model_device(model)
    readout = _Readout(model, output)
    names = list(params)
    primals = tuple(params[name].detach() for name in names)
    N = x.shape[0]
    batches = _batches(N, batch_size)
    with torch.no_grad():
        clean = torch.cat([readout(x[sl].to(device)) for sl in batches])  # [N, d]
    d = clean.shape[1]
    inv_norm = _row_scale(clean, row_norm)  # [N, 1] or None
    out = torch.empty(N, K * d, dtype=clean.dtype)  # [N, K*d]
    buf = torch.empty_like(clean)  # [N, d]
    for k in range(K):
        delta = next(draws)
        if kept is not None:
            kept.append(delta)
        tangents = tuple((delta[name] / noise_scale).to(device=p.device, dtype=p.dtype)
                         for name, p in zip(names, primals))
        for sl in batches:
            xb = x[sl].to(device)

            def f(*theta: torch.Tensor) -> torch.Tensor:
                return functional_call(readout, {f"model.{m}": t for m, t in zip(names, theta)},
                                       (xb,))

            with torch.no_grad(), warnings.catch_warnings():
                # torch's forward-AD decompositions still go through torch.jit.script
                warnings.filterwarnings("ignore", message=".*torch.jit.script",
                                        category=DeprecationWarning)
                buf[sl] = jvp(f, primals, tangents)[1]
        if inv_norm is not None:
            buf.mul_(inv_norm)
        out[:, k * d:(k + 1) * d].copy_(buf.mul_(math.sqrt(n / K)))
    return out


_OFFICIAL = {"noise_norm": "per_tensor", "perturb": "all", "include_bias": False,
             "output": "auto", "row_norm": "clean_output", "selector": "kcenter",
             "kcenter_start": "origin", "unit_length": False, "difference": "finite",
             "candidates": 1000}


@register
class NoiseStability(Strategy):
    """NoiseStability (Algorithm 1): k-center on the noise-deviation vectors Δẑ(x) (Eq 1–2).

    Options (validated at build time; defaults follow the paper):
        K: Noise draws (>= 1; 30).
        zeta: Relative noise magnitude ζ (> 0; 1e-3).
        noise_norm: ``global`` | ``per_tensor`` (see :func:`noise_stability_embedding`).
        perturb: ``features`` | ``all``.
        include_bias: Perturb bias tensors too (true).
        output: ``auto`` | ``logits`` | ``probs`` | ``features``; ``auto`` = predictive
            probabilities for classification and the last feature for regression (Sec 3.4).
        row_norm: ``none`` | ``clean_output``.
        difference: ``finite`` | ``finite64`` | ``jvp``.
        unit_length: Scale every Δẑ row to unit length before selecting (NS-D; false).
        selector: ``kcenter`` (Gonzalez greedy), ``kmeanspp`` (D² seeding), ``kdpp`` (linear
            kernel), or ``topk_norm`` (the ``budget`` largest ‖Δẑ(x)‖, NS-M).
        kcenter_start: ``origin`` (first pick = largest deviation; labeled set unused, as in
            Algorithm 1 and the authors' code; the default) or ``labeled`` (the labeled
            examples' Δẑ, under the same noise, are the initial centres, as in Core-Set; with
            no labeled example yet the first pick is the first candidate; NS-D's default).
        batch_size: Inference batch size.
        candidates: Size of the random unlabeled subset scored per cycle.
        variant: ``paper`` | ``official`` (presets the authors' choices; explicit options win).

    Candidates whose Δẑ is not finite (a NaN model output) are ranked last with a warning
    (:func:`alstudy.selection.finite_first`); labeled examples with a non-finite Δẑ are not
    used as centres.
    """

    name = "noise_stability"
    tasks = ("classification", "regression")
    options = {
        "K": integer(30, 1, help="noise draws K (Eq 2)"),
        "zeta": number(1e-3, 0.0, low_open=True, help="relative noise magnitude ζ (Eq 1)"),
        "noise_norm": choice("global", NOISE_NORMS, "one global ζ‖θ‖ or ζ‖W‖ per tensor"),
        "perturb": choice("features", PERTURB, "perturb θ of f or the whole network"),
        "include_bias": boolean(True, "perturb bias tensors"),
        "output": choice("auto", OUTPUTS, "compared output; auto = probs (classification) or "
                         "features (regression)"),
        "row_norm": choice("none", ROW_NORMS, "divide rows by the clean output's norm"),
        "difference": choice("finite", DIFFERENCES, "finite difference (model dtype or float64) "
                             "or forward-mode jvp"),
        "unit_length": boolean(False, "scale rows to unit length before selection (NS-D)"),
        "selector": choice("kcenter", SELECTORS, "subset selection on Δẑ"),
        "kcenter_start": choice("origin", KCENTER_STARTS, "k-center initial centres"),
        "batch_size": integer(1024, 1, help="inference batch size"),
    }
    variants = {"official": dict(_OFFICIAL)}

    def validate(self) -> None:
        """Reject ``kcenter_start="labeled"`` with a selector other than ``kcenter``; warn about
        the origin start on unit-length rows (every row is then at distance 1 from it)."""
        o = self.opts
        if o["kcenter_start"] == "labeled" and o["selector"] != "kcenter":
            raise ValueError(f"strategy {self.name!r}: option 'kcenter_start' = 'labeled' needs "
                             f"option 'selector' = 'kcenter', got {o['selector']!r}")
        if o["kcenter_start"] == "origin" and o["selector"] == "kcenter" and o["unit_length"]:
            warnings.warn(f"strategy {self.name!r}: kcenter_start = 'origin' with unit_length = "
                          "true: every unit row is at distance 1 from the origin, so float "
                          "rounding decides the first pick and later ties; use kcenter_start = "
                          "'labeled'", UserWarning, stacklevel=3)

    def embedding(self, model: nn.Module, x: torch.Tensor, generator: torch.Generator | None,
                  task: str | None = None) -> torch.Tensor:
        """Δẑ of ``x`` with this strategy's options (Eq 1–2), before ``unit_length``.

        Args:
            model: The trained task model.
            x: Inputs ``[M, ...]``.
            generator: Seeds the noise directions.
            task: Resolves ``output="auto"`` (default: ``model.task``).

        Returns:
            ``[M, K*d]`` CPU tensor.
        """
        o = self.opts
        output = resolve_output(o["output"], task or getattr(model, "task", "classification"))
        return noise_stability_embedding(
            model, x, K=o["K"], zeta=o["zeta"], noise_norm=o["noise_norm"], perturb=o["perturb"],
            include_bias=o["include_bias"], output=output, row_norm=o["row_norm"],
            difference=o["difference"], generator=generator, batch_size=o["batch_size"])

    def _prepare(self, emb: torch.Tensor) -> torch.Tensor:
        if not self.opts["unit_length"]:
            return emb
        return emb / emb.norm(dim=1, keepdim=True).clamp_min(torch.finfo(emb.dtype).tiny)

    def score(self, model: nn.Module, x: torch.Tensor, *,
              generator: torch.Generator | None = None) -> torch.Tensor:
        """The magnitude ``‖Δẑ(x)‖₂`` of each input ``[M]`` (NS-M's criterion; ≈ ‖J_θ(x)‖_F, Eq 6).

        Args:
            model: The trained task model.
            x: Inputs ``[M, ...]``.
            generator: Seeds the noise directions.

        Returns:
            ``[M]`` float tensor (higher = less stable under parameter noise).
        """
        return self.embedding(model, x, generator).norm(dim=1)  # [M]

    def select(self, model: nn.Module, data, pool, budget: int, generator: torch.Generator,
               context=None) -> torch.Tensor:
        """Select ``budget`` unlabeled examples by subset selection on Δẑ (Algorithm 1).

        Args:
            model: The trained task model.
            data: The :class:`alstudy.data.Dataset` (its task resolves ``output="auto"``).
            pool: The :class:`alstudy.pool.Pool`.
            budget: Number of examples to select (at most the number of candidates).
            generator: Seeded CPU generator (candidates, noise and random selectors).
            context: Unused.

        Returns:
            LongTensor ``[budget]`` of distinct unlabeled training indices, in pick order.

        Raises:
            ValueError: Unsupported task, ``budget`` above the number of candidates, or an
                option that does not fit the task (e.g. ``output="probs"`` for regression).
        """
        self.check_task(data.task)
        resolve_output(self.opts["output"], data.task)  # fail before any work
        cands = self.candidate_indices(pool, generator)  # [M]
        check_budget(budget, cands.numel())
        if budget == 0:
            return torch.empty(0, dtype=torch.long)
        labeled = pool.labeled
        from_labeled = self.opts["kcenter_start"] == "labeled"
        x = data.x_train[cands]  # [M, ...]
        if from_labeled:  # the same noise draws for candidates and labeled examples
            x = torch.cat([x, data.x_train[labeled]])  # [M + L, ...]
        emb = self._prepare(self.embedding(model, x, generator, data.task))  # [M(+L), K*d]
        M = cands.numel()
        X = emb[:M]  # [M, K*d]
        # [L, K*d] labeled centres ([0, K*d] when none: the first pick is then candidate 0)
        centres = selection.finite_centers(emb[M:], label=self.label, what="Δẑ") \
            if from_labeled else None
        sel = self.opts["selector"]

        def pick(keep: torch.Tensor, k: int) -> torch.Tensor:
            Xk = X[keep]  # [F, K*d], finite rows only
            if sel == "topk_norm":
                return selection.topk(Xk.norm(dim=1), k, label=self.label)
            if sel == "kcenter":
                return selection.kcenter_greedy(Xk, k, centers=centres)
            return selection.select_subset(sel, Xk, k, generator)

        # candidates with a non-finite Δẑ: warned about, ranked last
        return cands[selection.finite_first(X, budget, pick, label=self.label,
                                            what="noise-deviation vectors Δẑ")]


@register
class NoiseStabilityMagnitude(NoiseStability):
    """NS-M (the paper's ablation): the ``budget`` examples of largest ‖Δẑ(x)‖₂ (no diversity)."""

    name = "noise_stability_m"
    options = {**NoiseStability.options,
               "selector": choice("topk_norm", SELECTORS, "subset selection on Δẑ")}
    variants = {"official": {k: v for k, v in _OFFICIAL.items() if k != "selector"}}


@register
class NoiseStabilityDirection(NoiseStability):
    """NS-D (the paper's ablation): Δẑ rows scaled to unit length, then greedy k-center.

    k-center starts from the labeled examples' unit Δẑ (``kcenter_start: labeled``, the
    default in both variants): the paper's k-center covers the unlabeled pool given what is
    already labeled, and the origin start is degenerate on unit rows (all at distance 1).
    """

    name = "noise_stability_d"
    options = {**NoiseStability.options,
               "unit_length": boolean(True, "scale rows to unit length before selection"),
               "kcenter_start": choice("labeled", KCENTER_STARTS,
                                       "k-center initial centres (labeled: the labeled "
                                       "examples' unit Δẑ; origin is degenerate on unit rows)")}
    # 'official' presets the authors' NS choices except the start, which stays 'labeled'
    variants = {"official": {k: v for k, v in _OFFICIAL.items()
                             if k not in ("unit_length", "kcenter_start")}}
