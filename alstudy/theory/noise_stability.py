"""NoiseStability theory (Li et al., AAAI 2024, §3, App. A): Eq 6, 7, 8, concentration (Eq 12, 16, 17), link to BADGE (Eq 9).

Computations only: each function takes a model and inputs and returns numbers or tidy frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn


from ..strategies import badge as badge_mod
from ..strategies.noise_stability import (DIFFERENCES, noise_stability_embedding,
                                         perturbed_parameters, resolve_output)
from .. import models as models_mod
from ._common import _MAX_ELEMENTS, _cast, _corr_row, _work_copy, fit_loglog_slope

__all__ = ["ScalarOutput", "jacobian_stats", "jacobian_fro_sq", "parameter_gradients", "predicted_rel_sd", "eq6_vs_K", "summarize_eq6_K", "eq6_vs_zeta", "summarize_eq6_zeta", "zeta_regimes", "jl_min_K", "projection_errors", "concentration_fractions", "projected_gradients", "summarize_concentration", "largest_N", "expected_max_sq_normal", "log_n_power", "kcenter_agreement", "BadgeLink", "badge_link"]


class _Output(nn.Module):
    """``x -> [N, d]``: logits, softmax probabilities or features f(x) (optionally one column)."""

    def __init__(self, model: nn.Module, output: str, index: int | None = None):
        super().__init__()
        self.model = model
        self.output = output
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.model.features(x) if self.output == "features" else self.model(x)
        z = z.reshape(z.shape[0], -1)  # [N, d]; a regression output [N] becomes [N, 1]
        if self.output == "probs":
            z = torch.softmax(z, dim=1)
        return z if self.index is None else z[:, self.index:self.index + 1]  # [N, d] or [N, 1]


class ScalarOutput(nn.Module):
    """One scalar output of a ``g ∘ f`` model, itself a ``g ∘ f`` model (for Eq 7, 8, 12–17).

    ``forward(x)`` returns column ``index`` of the chosen output as ``[N, 1]``;
    ``features`` and ``head`` are the wrapped model's, so NoiseStability's
    ``perturb="features"`` perturbs the same θ as for the wrapped model.

    Args:
        model: A model with ``features`` and ``head``.
        index: Output column (e.g. a class logit), in ``[0, d)``.
        output: ``logits`` (default), ``probs`` or ``features``.

    Raises:
        ValueError: Unknown ``output``.
    """

    task = "regression"

    def __init__(self, model: nn.Module, index: int = 0, output: str = "logits"):
        super().__init__()
        if output not in ("logits", "probs", "features"):
            raise ValueError(f"option 'output' = {output!r} is invalid; allowed: logits, probs, features")
        self.model = model
        self.head = model.head
        self.index = int(index)
        self._out = _Output(model, output, self.index)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The wrapped model's features ``[N, d]``."""
        return self.model.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._out(x)  # [N, 1]


def _resolve(model: nn.Module, output: str) -> str:
    return resolve_output(output, getattr(model, "task", "classification"))


class _Jacobian:
    """Per-sample Jacobians ``J_θ(x) ∈ R^{d×n}`` of an output w.r.t. the perturbed parameters θ.

    θ is exactly what NoiseStability perturbs (:func:`perturbed_parameters` of the same
    ``part``/``include_bias``), the output exactly what it compares (``_Output``). Jacobians come
    in chunks ``[B, d, n]`` from ``vmap(jacrev(...))`` over ``torch.func.functional_call``.
    """

    def __init__(self, model: nn.Module, part: str, output: str, include_bias: bool,
                 dtype: torch.dtype | None, index: int | None = None):
        self.work = _work_copy(model, dtype)
        for p in self.work.parameters():
            p.requires_grad_(False)
        params = perturbed_parameters(self.work, part, include_bias)
        self.names = list(params)
        self.primals = {nm: params[nm].detach() for nm in self.names}
        self.n = sum(p.numel() for p in self.primals.values())
        self.readout = _Output(self.work, output, index)
        self.dtype = dtype
        self.device = models_mod.model_device(self.work)

    def chunks(self, x: torch.Tensor, max_elements: int = _MAX_ELEMENTS
               ) -> Iterator[tuple[slice, torch.Tensor]]:
        """Yield ``(rows, J)`` with ``J`` of shape ``[B, d, n]`` (columns in ``self.names`` order)."""
        from torch.func import functional_call, jacrev, vmap

        x = _cast(x, self.dtype, self.device)
        with torch.no_grad():
            d = self.readout(x[:1]).shape[1]
        names, readout = self.names, self.readout

        def single(theta: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
            out = functional_call(readout, {f"model.{nm}": t for nm, t in theta.items()},
                                  (xi.unsqueeze(0),))
            return out[0]  # [d]

        jac_fn = vmap(jacrev(single), in_dims=(None, 0))
        chunk = max(1, min(x.shape[0], max_elements // max(d * self.n, 1)))
        for s in range(0, x.shape[0], chunk):
            jac = jac_fn(self.primals, x[s:s + chunk])
            B = x[s:s + chunk].shape[0]
            yield slice(s, s + B), torch.cat([jac[nm].reshape(B, d, -1) for nm in names], 2)


def jacobian_stats(model: nn.Module, x: torch.Tensor, part: str = "features", output: str = "auto",
                   *, include_bias: bool = True, directions: torch.Tensor | None = None,
                   dtype: torch.dtype | None = torch.float64) -> dict[str, Any]:
    """Exact per-sample Jacobian quantities of the output NoiseStability compares (Eq 3–6).

    Args:
        model: A ``g ∘ f`` model (left unchanged; a float64 eval copy is differentiated).
        x: Inputs ``[N, ...]``.
        part: ``features`` (θ of f, the paper) or ``all`` (every parameter).
        output: ``auto`` | ``logits`` | ``probs`` | ``features`` (as in NoiseStability).
        include_bias: Whether bias tensors belong to θ.
        directions: Optional ``[n, K]`` matrix of parameter directions (columns in the order of
            ``names``); then ``proj = J u`` is returned as well.
        dtype: Dtype of the computation (``None`` = the model's).

    Returns:
        ``{"fro_sq": [N] ‖J‖_F², "gram_fro_sq": [N] ‖J Jᵀ‖_F² = tr((JᵀJ)²), "n": n,
        "names": parameter names, "proj": [N, K, d] or None}`` (float64 CPU tensors).

    Raises:
        ValueError: Unknown ``part``/``output``, or ``directions`` of the wrong shape.
    """
    output = _resolve(model, output)
    jac = _Jacobian(model, part, output, include_bias, dtype)
    if directions is not None and directions.shape[0] != jac.n:
        raise ValueError(f"directions must have {jac.n} rows (one per perturbed parameter), "
                         f"got {tuple(directions.shape)}")
    N = x.shape[0]
    fro = torch.empty(N, dtype=torch.float64)
    gram = torch.empty(N, dtype=torch.float64)
    proj = None
    for rows, J in jac.chunks(x):  # J [B, d, n]
        J = J.double().cpu()
        fro[rows] = J.square().sum((1, 2))
        gram[rows] = (J @ J.transpose(1, 2)).square().sum((1, 2))  # ‖J Jᵀ‖_F²
        if directions is not None:
            p = torch.einsum("bdn,nk->bkd", J, directions.double())  # [B, K, d]
            if proj is None:
                proj = torch.empty(N, p.shape[1], p.shape[2], dtype=torch.float64)
            proj[rows] = p
    return {"fro_sq": fro, "gram_fro_sq": gram, "n": jac.n, "names": jac.names, "proj": proj}


def jacobian_fro_sq(model: nn.Module, x: torch.Tensor, part: str = "features",
                    output: str = "auto", *, include_bias: bool = True,
                    dtype: torch.dtype | None = torch.float64) -> torch.Tensor:
    """Exact ``‖J_θ(x)‖_F²`` per sample, the right-hand side of NoiseStability Eq 6.

    ``J_θ(x)_{(i,j)} = ∂ out(x)_i / ∂θ_j`` (Eq 3) with θ and ``out`` exactly as NoiseStability
    perturbs and compares them (same ``part``, ``include_bias`` and ``output``), computed by
    ``torch.func.jacrev`` (vmapped over samples). Meant for small models: memory is
    ``chunk × d × n`` with the chunk chosen to keep it near 16M elements.

    Args:
        model: A ``g ∘ f`` model (left unchanged).
        x: Inputs ``[N, ...]``.
        part: ``features`` (θ of f) or ``all``.
        output: ``auto`` (probs for classification, features for regression), ``logits``,
            ``probs`` or ``features``.
        include_bias: Whether bias tensors belong to θ.
        dtype: Computation dtype (default float64; ``None`` = the model's).

    Returns:
        ``[N]`` float64 CPU tensor.

    Raises:
        ValueError: Unknown ``part`` or ``output``.
    """
    return jacobian_stats(model, x, part, output, include_bias=include_bias, dtype=dtype)["fro_sq"]


def parameter_gradients(model: nn.Module, x: torch.Tensor, part: str = "features", *,
                        include_bias: bool = True,
                        dtype: torch.dtype | None = torch.float64) -> torch.Tensor:
    """Full gradients ``∇_θ f(x)`` of a scalar-output model (the right-hand sides of Eq 7, 8).

    Args:
        model: A model whose output has one column per sample (e.g. :class:`ScalarOutput`, or
            a regression model).
        x: Inputs ``[N, ...]``.
        part: ``features`` (θ of f) or ``all``.
        include_bias: Whether bias tensors belong to θ.
        dtype: Computation dtype.

    Returns:
        ``[N, n]`` float64 CPU tensor (columns in :func:`perturbed_parameters` order).

    Raises:
        ValueError: The output is not scalar.
    """
    jac = _Jacobian(model, part, "logits", include_bias, dtype)
    rows = []
    for _, J in jac.chunks(x):
        if J.shape[1] != 1:
            raise ValueError(f"parameter_gradients needs a scalar output, got {J.shape[1]} columns; "
                             "wrap the model in ScalarOutput(model, index)")
        rows.append(J[:, 0, :].double().cpu())
    return torch.cat(rows)  # [N, n]


def predicted_rel_sd(fro_sq: torch.Tensor, gram_fro_sq: torch.Tensor, n: int, K: int) -> torch.Tensor:
    """Standard deviation of ``‖Δẑ‖²/‖J‖_F² − 1`` for K uniform unit directions (first order).

    With A = JᵀJ and u uniform on the sphere of R^n, ``E[(uᵀAu)²] = (tr²A + 2 trA²)/(n(n+2))``,
    so each term ``n‖J u‖²`` of Eq 5 has variance ``2(n trA² − tr²A)/(n+2)`` and the mean of K
    of them has relative standard deviation ``sqrt(2(n trA² − tr²A)/((n+2)K)) / trA`` — the
    1/sqrt(K) law, with a constant set by the effective rank ``tr²A / trA²`` of J.

    Args:
        fro_sq: ``[N]`` ``trA = ‖J‖_F²``.
        gram_fro_sq: ``[N]`` ``trA² = ‖JJᵀ‖_F²``.
        n: Number of perturbed parameters.
        K: Number of directions.

    Returns:
        ``[N]`` relative standard deviations.
    """
    var = 2.0 * (n * gram_fro_sq - fro_sq.square()).clamp_min(0) / (n + 2)
    return (var / K).sqrt() / fro_sq


def _check_Ks(Ks: Sequence[int], name: str = "Ks") -> list[int]:
    Ks = sorted({int(k) for k in Ks})
    if not Ks or Ks[0] < 1:
        raise ValueError(f"parameter {name!r} = {Ks!r} is invalid; allowed: a non-empty list of integers >= 1")
    return Ks


def _ns_kwargs(part: str, include_bias: bool, output: str, zeta: float, difference: str) -> dict:
    return dict(zeta=zeta, noise_norm="global", perturb=part, include_bias=include_bias,
                output=output, row_norm="none", difference=difference)


def eq6_vs_K(model: nn.Module, x: torch.Tensor, Ks: Sequence[int], *, repeats: int = 3,
             part: str = "features", output: str = "auto", include_bias: bool = True,
             difference: str = "finite64", zeta: float = 1e-3, seed: int = 0) -> pd.DataFrame:
    """NoiseStability's ``‖Δẑ(x)‖²`` against the exact ``‖J_θ(x)‖_F²`` as K grows (Eq 5, 6).

    For each repeat one embedding with ``K_max = max(Ks)`` draws is computed by
    :func:`noise_stability_embedding` (paper options: one global ζ‖θ‖₂, no row scaling); the
    estimate with the first K draws is ``(K_max/K) Σ_{k≤K} ‖block_k‖²`` (each block carries the
    Eq 2 factor ``sqrt(n/K_max)``), i.e. Eq 5 with K directions.

    Args:
        model: Trained ``g ∘ f`` model.
        x: Inputs ``[N, ...]``.
        Ks: Numbers of directions to evaluate.
        repeats: Independent embeddings (different noise seeds).
        part: ``features`` or ``all`` (NoiseStability's ``perturb``).
        output: NoiseStability's ``output`` (``auto`` = probs for classification).
        include_bias: Perturb bias tensors too.
        difference: ``finite`` | ``finite64`` | ``jvp`` (see :func:`noise_stability_embedding`).
        zeta: Relative noise magnitude ζ.
        seed: Base seed of the noise.

    Returns:
        Per (repeat, K, sample): ``estimate``, ``exact``, ``rel_error`` = estimate/exact − 1 and
        ``predicted_sd`` (:func:`predicted_rel_sd`).

    Raises:
        ValueError: Bad ``Ks`` or ``repeats``, or an option NoiseStability rejects.
    """
    Ks = _check_Ks(Ks)
    if repeats < 1:
        raise ValueError(f"parameter 'repeats' = {repeats} is invalid; allowed: integer >= 1")
    output = _resolve(model, output)
    ref = jacobian_stats(model, x, part, output, include_bias=include_bias)
    fro, n = ref["fro_sq"], ref["n"]
    K_max, N = Ks[-1], x.shape[0]
    frames = []
    for r in range(repeats):
        emb = noise_stability_embedding(model, x, K=K_max, generator=torch.Generator().manual_seed(seed + r),
                                        **_ns_kwargs(part, include_bias, output, zeta, difference))
        blocks = emb.double().reshape(N, K_max, -1).square().sum(2)  # [N, K_max] (n/K_max)‖Δz_k‖²
        csum = blocks.cumsum(1)  # [N, K_max]
        for K in Ks:
            est = csum[:, K - 1] * (K_max / K)  # [N] Eq 5 with the first K draws
            frames.append(pd.DataFrame({
                "repeat": r, "K": K, "sample": np.arange(N), "estimate": est.numpy(),
                "exact": fro.numpy(), "rel_error": (est / fro - 1).numpy(),
                "predicted_sd": predicted_rel_sd(fro, ref["gram_fro_sq"], n, K).numpy()}))
    out = pd.concat(frames, ignore_index=True)
    out.attrs.update(n=n, part=part, output=output, difference=difference, zeta=zeta)
    return out


def summarize_eq6_K(frame: pd.DataFrame) -> pd.DataFrame:
    """Per K: RMS and mean absolute relative error, mean signed error, predicted RMS.

    Args:
        frame: Output of :func:`eq6_vs_K`.

    Returns:
        Columns ``K, rms, mean_abs, bias, predicted_rms, samples``.
    """
    g = frame.groupby("K")
    out = pd.DataFrame({
        "rms": g["rel_error"].apply(lambda s: float(np.sqrt(np.mean(np.square(s))))),
        "mean_abs": g["rel_error"].apply(lambda s: float(np.mean(np.abs(s)))),
        "bias": g["rel_error"].mean(),
        "predicted_rms": g["predicted_sd"].apply(lambda s: float(np.sqrt(np.mean(np.square(s))))),
        "samples": g.size(),
    }).reset_index()
    return out


def _unit_directions(dirs: list[dict[str, torch.Tensor]], names: list[str]) -> torch.Tensor:
    """``[n, K]`` matrix of the unit directions u(k) = Δθ(k)/‖Δθ(k)‖ in ``names`` order."""
    cols = [torch.cat([d[nm].double().reshape(-1) for nm in names]) for d in dirs]
    U = torch.stack(cols, 1)  # [n, K]
    return U / U.norm(dim=0, keepdim=True)


def eq6_vs_zeta(model: nn.Module, x: torch.Tensor, zetas: Sequence[float], *, K: int = 8,
                differences: Sequence[str] = DIFFERENCES, part: str = "features",
                output: str = "auto", include_bias: bool = True, seed: int = 0) -> pd.DataFrame:
    """NoiseStability's Δẑ against its first-order limit as the noise scale ζ varies.

    The same K directions u(k) are used for every ζ and every ``difference`` (one seed); the
    reference is the exact linearisation ``sqrt(n/K)·J_θ(x) u(k)`` (Eq 4 without the o(1)
    term), computed from float64 Jacobians. Small ζ exposes round-off (the finite difference
    of Eq 1 cancels in float32), large ζ the breakdown of the first-order expansion (Eq 3).

    Args:
        model: Trained ``g ∘ f`` model.
        x: Inputs ``[N, ...]``.
        zetas: Noise scales ζ > 0.
        K: Directions per embedding.
        differences: Subset of ``finite`` (model dtype), ``finite64`` and ``jvp``.
        part: ``features`` or ``all``.
        output: NoiseStability's ``output``.
        include_bias: Perturb bias tensors too.
        seed: Noise seed.

    Returns:
        Per (difference, zeta, sample): ``lin_error`` = ‖Δẑ − Δẑ_lin‖/‖Δẑ_lin‖, ``eq6_error`` =
        ‖Δẑ‖²/‖J‖_F² − 1 and ``mc_sd`` (the Monte-Carlo standard deviation of ``eq6_error`` at K).

    Raises:
        ValueError: Unknown ``difference``, a ζ <= 0, or an option NoiseStability rejects.
    """
    bad = [d for d in differences if d not in DIFFERENCES]
    if bad:
        raise ValueError(f"parameter 'differences' has {bad}; allowed: {list(DIFFERENCES)}")
    if any(not z > 0 for z in zetas):
        raise ValueError(f"parameter 'zetas' = {list(zetas)} is invalid; allowed: numbers > 0")
    output = _resolve(model, output)
    kw = dict(K=K, perturb=part, include_bias=include_bias, output=output, noise_norm="global",
              row_norm="none")
    _, dirs = noise_stability_embedding(model, x[:1], zeta=1.0, difference="finite",
                                        generator=torch.Generator().manual_seed(seed),
                                        return_directions=True, **kw)
    names = list(perturbed_parameters(model, part, include_bias))
    U = _unit_directions(dirs, names)  # [n, K]
    ref = jacobian_stats(model, x, part, output, include_bias=include_bias, directions=U)
    n, N = ref["n"], x.shape[0]
    lin = (ref["proj"] * math.sqrt(n / K)).reshape(N, -1)  # [N, K*d] blocks k = sqrt(n/K) J u(k)
    lin_norm = lin.norm(dim=1)
    mc = predicted_rel_sd(ref["fro_sq"], ref["gram_fro_sq"], n, K).numpy()
    frames = []
    for diff in differences:
        for z in zetas:
            emb = noise_stability_embedding(model, x, zeta=float(z), difference=diff,
                                            generator=torch.Generator().manual_seed(seed), **kw)
            emb = emb.double()  # [N, K*d]
            frames.append(pd.DataFrame({
                "difference": diff, "zeta": float(z), "sample": np.arange(N),
                "lin_error": ((emb - lin).norm(dim=1) / lin_norm).numpy(),
                "eq6_error": (emb.square().sum(1) / ref["fro_sq"] - 1).numpy(),
                "mc_sd": mc}))
    out = pd.concat(frames, ignore_index=True)
    out.attrs.update(n=n, K=K, part=part, output=output)
    return out


def summarize_eq6_zeta(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (difference, ζ): median and max linearisation error, RMS Eq 6 error, MC level.

    Args:
        frame: Output of :func:`eq6_vs_zeta`.

    Returns:
        Columns ``difference, zeta, lin_median, lin_max, eq6_rms, mc_rms``.
    """
    g = frame.groupby(["difference", "zeta"])
    return pd.DataFrame({
        "lin_median": g["lin_error"].median(),
        "lin_max": g["lin_error"].max(),
        "eq6_rms": g["eq6_error"].apply(lambda s: float(np.sqrt(np.mean(np.square(s))))),
        "mc_rms": g["mc_sd"].apply(lambda s: float(np.sqrt(np.mean(np.square(s))))),
    }).reset_index()


def zeta_regimes(summary: pd.DataFrame, tol: float = 0.01) -> pd.DataFrame:
    """The ζ range of the first-order regime for each ``difference``.

    Args:
        summary: Output of :func:`summarize_eq6_zeta`.
        tol: Largest median linearisation error counted as "first order".

    Returns:
        Per difference: ``zeta_low``/``zeta_high`` (smallest/largest ζ with median error <= tol,
        NaN if none), ``best_zeta`` and ``best_error`` (the minimum), ``roundoff_slope`` (log-log
        slope of the error below the best ζ, over unsaturated points with error < 1; ≈ −1 for
        round-off), ``breakdown_slope`` (from the best ζ up to the first error >= 1; ≈ +1 for
        the second-order term), ``flat`` (error within a factor 2 over all ζ, as for ``jvp``),
        and ``error_at_1e-3`` (the paper's ζ, if evaluated).
    """
    rows = []
    for diff, grp in summary.groupby("difference", sort=False):
        grp = grp.sort_values("zeta")
        z, e = grp["zeta"].to_numpy(), grp["lin_median"].to_numpy()
        ok = z[e <= tol]
        i = int(np.argmin(e))
        left = (np.arange(len(z)) <= i) & (e < 1)
        above = np.nonzero((np.arange(len(z)) > i) & (e >= 1))[0]
        stop = int(above[0]) if above.size else len(z) - 1
        paper = grp.loc[np.isclose(grp["zeta"], 1e-3), "lin_median"]
        rows.append({
            "difference": diff,
            "zeta_low": float(ok.min()) if ok.size else float("nan"),
            "zeta_high": float(ok.max()) if ok.size else float("nan"),
            "best_zeta": float(z[i]), "best_error": float(e[i]),
            "roundoff_slope": fit_loglog_slope(z[left], e[left]) if left.sum() >= 2 else float("nan"),
            "breakdown_slope": fit_loglog_slope(z[i:stop + 1], e[i:stop + 1]) if stop > i else float("nan"),
            "flat": bool(e.max() <= 2 * max(e.min(), 1e-300)),
            "error_at_1e-3": float(paper.iloc[0]) if len(paper) else float("nan"),
        })
    return pd.DataFrame(rows)


def jl_min_K(eps: float, n_vectors: int, delta: float = 0.1) -> int:
    """Number of Gaussian projections that keeps ``n_vectors`` norms within (1 ± ε) w.p. 1 − δ.

    The explicit form of the papers' ``K ≥ (C/ε²) log N`` (NoiseStability Eq 12, 16, 17):
    with Dasgupta & Gupta's tail bound
    ``P(|‖Qv‖²/‖v‖² − 1| > ε) ≤ 2 exp(−K ε² (1/4 − ε/6))`` and a union bound over the vectors,
    ``K ≥ 4 log(2 n_vectors / δ) / (ε² (1 − 2ε/3))``; squared norms within (1 ± ε) imply norms
    within (1 ± ε). (Rows ``sqrt(n/K) u(k)`` with u uniform on the sphere behave like Gaussian
    rows for large n.)

    Args:
        eps: Distortion ε in (0, 1).
        n_vectors: Number of vectors that must all be preserved (N norms, N(N−1)/2 distances).
        delta: Failure probability in (0, 1).

    Returns:
        The smallest such integer K.

    Raises:
        ValueError: ``eps``, ``n_vectors`` or ``delta`` out of range.
    """
    if not 0 < eps < 1:
        raise ValueError(f"eps = {eps} is invalid; allowed: number in (0, 1)")
    if n_vectors < 1:
        raise ValueError(f"n_vectors = {n_vectors} is invalid; allowed: integer >= 1")
    if not 0 < delta < 1:
        raise ValueError(f"delta = {delta} is invalid; allowed: number in (0, 1)")
    return int(math.ceil(4.0 * math.log(2.0 * n_vectors / delta) / (eps * eps * (1.0 - 2.0 * eps / 3.0))))


def _pair_matrices(M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row norms ``[N]``, exact pairwise Euclidean distances ``[N, N]`` and inner products
    ``[N, N]`` of ``M`` ``[N, n]`` in float64.

    Each distance is the norm of the difference of the two rows (no ‖a‖² + ‖b‖² − 2⟨a, b⟩
    cancellation), taken one row against the later rows at a time, so memory stays at one
    ``[N, n]`` block whatever N (``torch.cdist`` without matrix products would hold ``[N, N, n]``).
    """
    M = M.double()
    N = M.shape[0]
    dist = torch.zeros(N, N, dtype=torch.float64)
    for i in range(N - 1):
        dist[i, i + 1:] = (M[i + 1:] - M[i]).norm(dim=1)
    dist = dist + dist.T
    return M.norm(dim=1), dist, M @ M.T


def _errors(z: tuple[torch.Tensor, ...], g: tuple[torch.Tensor, ...], N: int) -> dict[str, torch.Tensor]:
    """:func:`projection_errors` from the :func:`_pair_matrices` of Z and G, on their first N rows."""
    i, j = torch.triu_indices(N, N, 1)
    (nz, dz, iz), (ng, dg, ig) = ((n[:N], d[i, j], p[i, j]) for n, d, p in (z, g))  # [N], [P], [P]
    return {
        "norm_ratio": nz / ng, "dist_ratio": dz / dg, "sqdist_rel": dz.square() / dg.square() - 1,
        "inner_err": (iz - ig) / (ng[i] * ng[j]), "cos_z": iz / (nz[i] * nz[j]),
        "cos_g": ig / (ng[i] * ng[j]),
    }


def projection_errors(Z: torch.Tensor, G: torch.Tensor) -> dict[str, torch.Tensor]:
    """Norms, distances and inner products of the rows of Z (projected) against those of G.

    Args:
        Z: ``[N, K]`` NoiseStability vectors Δẑ(x_i) of a scalar output.
        G: ``[N, n]`` full gradients ∇_θ f(x_i).

    Returns:
        float64 tensors, pairs i < j in ``torch.triu_indices`` order:
        ``norm_ratio`` [N] ‖z_i‖/‖g_i‖ (Eq 12), ``dist_ratio`` [P] ‖z_i − z_j‖/‖g_i − g_j‖ (Eq 16),
        ``sqdist_rel`` [P] ‖z_i − z_j‖²/‖g_i − g_j‖² − 1 (Eq 7), ``inner_err`` [P]
        (⟨z_i, z_j⟩ − ⟨g_i, g_j⟩)/(‖g_i‖‖g_j‖) (Eq 8), ``cos_z`` and ``cos_g`` [P] (Eq 17).
    """
    return _errors(_pair_matrices(Z), _pair_matrices(G), Z.shape[0])


def concentration_fractions(errors: dict[str, torch.Tensor], eps: float) -> dict[str, float]:
    """Fractions of norms, distances and normalised inner products within the ε guarantees.

    * Eq 12: ``|‖z_i‖ − ‖g_i‖| ≤ ε‖g_i‖``,
    * Eq 16: ``|‖z_i − z_j‖ − ‖g_i − g_j‖| ≤ ε‖g_i − g_j‖``,
    * Eq 17: ``(cos_g − ε)/(1+ε)² ≤ cos_z ≤ (cos_g + ε)/(1−ε)²``.

    Args:
        errors: Output of :func:`projection_errors`.
        eps: ε in (0, 1).

    Returns:
        ``{"eq12_norm": f, "eq16_distance": f, "eq17_cosine": f}``.

    Raises:
        ValueError: ``eps`` outside (0, 1).
    """
    if not 0 < eps < 1:
        raise ValueError(f"eps = {eps} is invalid; allowed: number in (0, 1)")
    cz, cg = errors["cos_z"], errors["cos_g"]
    inside = (cz >= (cg - eps) / (1 + eps) ** 2) & (cz <= (cg + eps) / (1 - eps) ** 2)
    return {
        "eq12_norm": float(((errors["norm_ratio"] - 1).abs() <= eps).double().mean()),
        "eq16_distance": float(((errors["dist_ratio"] - 1).abs() <= eps).double().mean()),
        "eq17_cosine": float(inside.double().mean()),
    }


def _deviations(z: tuple[torch.Tensor, ...], g: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """|‖z_i‖/‖g_i‖ − 1| ``[N]`` and |‖z_i − z_j‖/‖g_i − g_j‖ − 1| ``[N, N]`` (zero diagonal) from
    the :func:`_pair_matrices` of Z and G."""
    (nz, dz, _), (ng, dg, _) = z, g
    same = dg == 0  # the diagonal (and duplicate inputs): preserved exactly, deviation 0
    dist = torch.where(same, 0.0, (dz / dg.masked_fill(same, 1.0) - 1).abs())
    return (nz / ng - 1).abs(), dist


def _subsets(n_all: int, n: int, count: int, seed: Sequence[int]) -> torch.Tensor:
    """``[count, n]`` random n-subsets of range(n_all) (``[1, n_all]``, all of it, at n = n_all)."""
    if n == n_all:
        return torch.arange(n_all)[None]
    rng = np.random.default_rng(list(seed))
    return torch.from_numpy(np.stack([rng.permutation(n_all)[:n] for _ in range(count)]))


def _worst_rms(norm_dev: torch.Tensor, dist_dev: torch.Tensor, subsets: torch.Tensor) -> dict[str, float]:
    """Root mean square over ``subsets`` ``[S, N]`` of each subset's largest norm and distance
    deviation (:func:`_deviations`): the smallest ε that holds for all N norms / all pairs."""
    norms = norm_dev[subsets].amax(dim=1)  # [S]
    dists = dist_dev[subsets[:, :, None], subsets[:, None, :]].amax(dim=(1, 2))  # [S]
    return {"eq12_norm_worst": float(norms.square().mean().sqrt()),
            "eq16_distance_worst": float(dists.square().mean().sqrt())}


def projected_gradients(model: nn.Module, x: torch.Tensor, Ks: Sequence[int], *,
                        eps: Sequence[float] = (0.1, 0.2, 0.3), repeats: int = 2,
                        index: int = 0, scalar: str = "logits", part: str = "features",
                        include_bias: bool = True, difference: str = "finite64",
                        zeta: float = 1e-3, seed: int = 0, Ns: Sequence[int] | None = None,
                        worst_subsets: int = 32) -> pd.DataFrame:
    """Eq 7, 8 (expectations) and Eq 12, 16, 17 (concentration) for a scalar output f.

    f is column ``index`` of the model's ``scalar`` output (:class:`ScalarOutput`), Δẑ its
    NoiseStability vector (K numbers) and ∇_θ f its exact gradient over the same θ. The
    Johnson-Lindenstrauss bound of Eq 12 and 16 grows like log N; ``Ns`` measures several
    numbers of vectors at once, as prefixes ``x[:N]`` of one embedding per repeat.

    Args:
        model: Trained ``g ∘ f`` model.
        x: Inputs ``[N, ...]`` (N >= 2).
        Ks: Numbers of directions (prefixes of one ``max(Ks)`` embedding per repeat, rescaled).
        eps: Distortions ε in (0, 1) for the fractions.
        repeats: Independent embeddings.
        index: Output column used as f.
        scalar: ``logits``, ``probs`` or ``features``.
        part: ``features`` or ``all``.
        include_bias: Perturb bias tensors too.
        difference: NoiseStability's ``difference``.
        zeta: Noise scale ζ.
        seed: Base noise seed.
        Ns: Numbers of inputs, each in [2, len(x)] (default: all of ``x``).
        worst_subsets: Random N-subsets of ``x`` per repeat over which the ``*_worst`` rows
            average (one, all of ``x``, at N = len(x)).

    Returns:
        Tidy rows ``N, repeat, K, metric, eps, value, jl_K``: ``metric`` in ``eq12_norm``,
        ``eq16_distance``, ``eq17_cosine`` (fraction within ε; ``jl_K`` = :func:`jl_min_K` for
        the number of vectors involved), ``eq12_norm_worst``, ``eq16_distance_worst`` (the largest
        distortion |ratio − 1| among the N norms or the N(N−1)/2 distances, the smallest ε that
        holds for all of them, as a root mean square over ``worst_subsets`` random N-subsets of
        ``x``: :func:`_worst_rms`) and ``eq7_sqdist_rms``, ``eq8_inner_rms`` (RMS errors); ``eps`` and
        ``jl_K`` are empty for the last four.

    Raises:
        ValueError: Fewer than two inputs, an N outside [2, len(x)], or a bad ε.
    """
    Ks = _check_Ks(Ks)
    N_all = x.shape[0]
    if N_all < 2:
        raise ValueError("projected_gradients needs at least two inputs (pairs)")
    Ns = sorted({int(n) for n in (Ns or [N_all])})
    if Ns[0] < 2 or Ns[-1] > N_all:
        raise ValueError(f"Ns must lie in [2, {N_all}] (the number of inputs), got {Ns}")
    f = ScalarOutput(model, index, scalar)
    G = parameter_gradients(f, x, part, include_bias=include_bias)  # [N_all, n]
    K_max = Ks[-1]
    g_pairs = _pair_matrices(G)  # once: the prefixes x[:N] use its leading block
    rows = []
    for r in range(repeats):
        emb = noise_stability_embedding(f, x, K=K_max, generator=torch.Generator().manual_seed(seed + r),
                                        **_ns_kwargs(part, include_bias, "logits", zeta, difference))
        emb = emb.double()  # [N_all, K_max]
        z_pairs = {K: _pair_matrices(emb[:, :K] * math.sqrt(K_max / K)) for K in Ks}  # Eq 2 scaling
        deviations = {K: _deviations(z_pairs[K], g_pairs) for K in Ks}
        subsets = {N: _subsets(N_all, N, worst_subsets, (seed, r, N)) for N in Ns}
        for N in Ns:
            P = N * (N - 1) // 2
            counts = {"eq12_norm": N, "eq16_distance": P, "eq17_cosine": 2 * P}
            for K in Ks:
                errs = _errors(z_pairs[K], g_pairs, N)
                base = {"N": N, "repeat": r, "K": K}
                for e in eps:
                    for metric, frac in concentration_fractions(errs, float(e)).items():
                        rows.append({**base, "metric": metric, "eps": float(e), "value": frac,
                                     "jl_K": jl_min_K(float(e), counts[metric])})
                for metric, value in _worst_rms(*deviations[K], subsets[N]).items():
                    rows.append({**base, "metric": metric, "eps": np.nan, "value": value, "jl_K": np.nan})
                rows.append({**base, "metric": "eq7_sqdist_rms", "eps": np.nan,
                             "value": float(errs["sqdist_rel"].square().mean().sqrt()), "jl_K": np.nan})
                rows.append({**base, "metric": "eq8_inner_rms", "eps": np.nan,
                             "value": float(errs["inner_err"].square().mean().sqrt()), "jl_K": np.nan})
    out = pd.DataFrame(rows)
    out.attrs.update(n=G.shape[1], N=Ns[-1])
    return out


def largest_N(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of :func:`projected_gradients` at its largest N (all rows of a one-N frame)."""
    if "N" not in frame:
        return frame
    return frame[frame["N"] == frame["N"].max()]


def summarize_concentration(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (N, metric, ε): the smallest K at which every repeat has all vectors within ε.

    Args:
        frame: Output of :func:`projected_gradients` (a frame without an ``N`` column, as
            written before several N were measured, takes N from ``attrs["N"]``).

    Returns:
        Columns ``N, metric, eps, K_all`` (NaN if never), ``jl_K`` (the sufficient bound),
        ``C_empirical = K_all ε² / log N``, ``min_fraction_at_max_K``.
    """
    fr = frame[frame["eps"].notna()]
    if "N" not in fr:
        fr = fr.assign(N=frame.attrs.get("N", np.nan))
    rows = []
    for (N, metric, eps), grp in fr.groupby(["N", "metric", "eps"], dropna=False):
        worst = grp.groupby("K")["value"].min()  # [K] over repeats
        K_all = np.nan  # the smallest K from which every larger K tried is complete too
        for K in sorted(worst.index, reverse=True):
            if worst[K] < 1.0:
                break
            K_all = K
        rows.append({"N": N, "metric": metric, "eps": eps, "K_all": K_all,
                     "jl_K": int(grp["jl_K"].iloc[0]),
                     "C_empirical": K_all * eps**2 / math.log(N) if N > 1 else np.nan,
                     "min_fraction_at_max_K": float(worst.iloc[-1])})
    return pd.DataFrame(rows)


def expected_max_sq_normal(n: int) -> float:
    """``E[max_{i ≤ n} Z_i²]`` for n independent standard normals: ``∫₀^∞ 1 − erf(√(t/2))ⁿ dt``.

    The squared largest of n independent Gaussian errors; it grows like ``2 log n``, the log N
    of the Johnson–Lindenstrauss union bound (Eq 12, 16), with its exact value at small n.
    """
    from scipy import integrate, special

    if n < 1:
        raise ValueError(f"n = {n} is invalid; allowed: integer >= 1")
    upper = 2.0 * math.log(n) + 80.0  # 1 − F(t)ⁿ < n·e^{−t/2} is below 1e-16 beyond it
    return float(integrate.quad(lambda t: 1.0 - special.erf(math.sqrt(t / 2.0)) ** n, 0.0, upper,
                                limit=200, points=[2.0 * math.log(n + 1.0)])[0])


#: Largest b_log (:func:`log_n_power`) at which the N measured can tell log n from √n growth.
_MAX_B_LOG = 0.4

#: Check of projected_gradients' ``*_worst`` rows -> number of vectors it holds among N inputs.
_WORST_VECTORS = {"eq12_norm": lambda N: N, "eq16_distance": lambda N: N * (N - 1) // 2}


def log_n_power(frame: pd.DataFrame, k_min: int = 64) -> pd.DataFrame:
    """Per repeat and check: how the K needed for a fixed ε grows with N (App. A.2.2, Remark).

    A check holds n vectors among N inputs (Eq 12: the N norms; Eq 16: the N(N−1)/2 distances).
    With ε_max(n, K)² the mean square of the largest distortion among them (``*_worst`` rows of
    :func:`projected_gradients`) and ε_max² ∝ c(n)/K, the K needed for a fixed ε is
    ``K_ε ∝ c(n)``; its power in n is ``b``, the least-squares slope of log ε_max² on log n at
    a fixed K (averaged over the K ≥ ``k_min`` measured). ``b_log`` is the same slope for n
    independent Gaussian errors (:func:`expected_max_sq_normal`), the K ∝ log n law of the
    union bound; ``q = (b − b_log) / (1/2 − b_log)`` is 0 for growth like log N and 1 for
    K ∝ √n. Over small n the log law itself grows almost as fast as √n (b_log near or above
    1/2, e.g. n from 3 to 6): q is NaN where b_log > 0.4, as those N cannot tell the two apart.

    Args:
        frame: Output of :func:`projected_gradients` with at least two N.
        k_min: Smallest K used (small K leaves the ε ∝ K^{-1/2} regime).

    Returns:
        Columns ``repeat, metric`` (``eq12_norm``, ``eq16_distance``), ``b``, ``b_log``, ``q``.

    Raises:
        ValueError: Fewer than two N, or no K ≥ ``k_min``, in the frame.
    """
    Ns = sorted(int(N) for N in frame["N"].unique()) if "N" in frame else []
    if len(Ns) < 2:
        raise ValueError(f"log_n_power needs the checks at two or more N; the frame has N = {Ns}")
    worst = frame[frame["metric"].str.endswith("_worst") & (frame["K"] >= k_min)]
    if worst.empty:
        raise ValueError(f"no K >= k_min = {k_min} in the frame (K = {sorted(frame['K'].unique())})")
    b_logs = {}  # check -> b_log, one integral per n
    for check, n_of in _WORST_VECTORS.items():
        n = [n_of(N) for N in Ns]
        b_logs[check] = fit_loglog_slope(n, [expected_max_sq_normal(v) for v in n])
    rows = []
    for (metric, r), grp in worst.groupby(["metric", "repeat"]):
        check = metric.removesuffix("_worst")
        n_of, b_log = _WORST_VECTORS[check], b_logs[check]
        b = np.mean([fit_loglog_slope([n_of(int(N)) for N in g["N"]], g["value"] ** 2)
                     for _, g in grp.groupby("K")])
        q = (b - b_log) / (0.5 - b_log) if b_log <= _MAX_B_LOG else np.nan
        rows.append({"repeat": r, "metric": check, "b": float(b), "b_log": b_log, "q": float(q)})
    return pd.DataFrame(rows)


def kcenter_agreement(model: nn.Module, x: torch.Tensor, *, K: int = 30, budget: int = 10,
                      repeats: int = 20, index: int = 0, scalar: str = "logits",
                      part: str = "features", include_bias: bool = True,
                      difference: str = "finite64", zeta: float = 1e-3, seed: int = 0) -> pd.DataFrame:
    """Greedy k-center on Δẑ against greedy k-center on the exact gradients (Sec 2.2, 3.2).

    For a scalar output f (column ``index`` of ``scalar``), each repeat draws one Δẑ embedding
    ``[N, K]`` (:func:`noise_stability_embedding`, paper options) and picks ``budget`` examples
    by :func:`alstudy.selection.kcenter_greedy` from the origin, the NoiseStability strategy's
    default start; the exact gradients ``∇θ f`` ``[N, n]`` are picked the same way once.

    Args:
        model: Trained ``g ∘ f`` model.
        x: Inputs ``[N, ...]``.
        K: Noise draws (paper: 30).
        budget: Picks, fewer than N.
        repeats: Independent noise seeds.
        index, scalar, part, include_bias, difference, zeta: As in :func:`projected_gradients`.
        seed: Base noise seed (repeat r uses ``seed + r``).

    Returns:
        One row per repeat: ``overlap`` (share of the Δẑ picks that the gradient picks contain,
        Sec 3.2) and ``magnitude_ratio`` (mean ‖Δẑ‖ of the Δẑ picks after the first, which is
        the largest by construction from the origin, over the mean ‖Δẑ‖ of all N, Sec 2.2).

    Raises:
        ValueError: ``budget`` not in [2, N).
    """
    from ..selection import kcenter_greedy

    N = x.shape[0]
    if not 2 <= budget < N:
        raise ValueError(f"budget = {budget} is invalid; allowed: integer in [2, {N - 1}] (fewer than the {N} inputs)")
    f = ScalarOutput(model, index, scalar)
    G = parameter_gradients(f, x, part, include_bias=include_bias).double()  # [N, n]
    by_gradient = set(kcenter_greedy(G, budget).tolist())
    rows = []
    for r in range(repeats):
        Z = noise_stability_embedding(f, x, K=K, generator=torch.Generator().manual_seed(seed + r),
                                      **_ns_kwargs(part, include_bias, "logits", zeta, difference)).double()
        picks = kcenter_greedy(Z, budget).tolist()  # [budget], in pick order
        norms = Z.norm(dim=1)  # [N]
        rows.append({"repeat": r, "overlap": len(by_gradient.intersection(picks)) / budget,
                     "magnitude_ratio": float(norms[picks[1:]].mean() / norms.mean())})
    return pd.DataFrame(rows)


@dataclass
class BadgeLink:
    """NoiseStability vs BADGE (NoiseStability Eq 9) on the same inputs.

    Attributes:
        samples: Per sample ``ns_norm`` ‖Δẑ(x)‖, ``jacobian_norm`` ‖J_θ(x)‖_F (Eq 6),
            ``badge_norm`` ‖(p − e_ŷ) ⊗ z‖ = ‖p − e_ŷ‖‖z‖, ``max_prob``.
        correlations: Pearson and Spearman correlations of the norms, of the pairwise
            distances (``ns_distance`` vs ``badge_distance``) and cosine similarities
            (``ns_cosine`` vs ``badge_cosine``, directions only) of the two embeddings, and of
            each norm with the model's uncertainty ``1 − max p`` (``one_minus_max_prob``).
    """

    samples: pd.DataFrame
    correlations: pd.DataFrame


def badge_link(model: nn.Module, x: torch.Tensor, *, K: int = 30, zeta: float = 1e-3,
               part: str = "features", output: str = "auto", difference: str = "finite",
               include_bias: bool = True, seed: int = 0) -> BadgeLink:
    """NoiseStability's Δẑ (paper defaults) side by side with BADGE's gradient embedding (Eq 9).

    BADGE's embedding of x is the gradient of ``ℓ(x, ŷ)`` w.r.t. the last layer's weight,
    ``(p − e_ŷ) ⊗ z`` (:func:`alstudy.strategies.badge.gradient_factors`); NoiseStability's is a
    random projection of the Jacobian of the predictive output w.r.t. θ of f (Eq 4).

    Args:
        model: Trained classifier whose head ends in ``nn.Linear``.
        x: Inputs ``[N, ...]``.
        K: NoiseStability draws (paper: 30).
        zeta: ζ (paper: 1e-3).
        part: NoiseStability's ``perturb``.
        output: NoiseStability's ``output`` (``auto`` = probs).
        difference: NoiseStability's ``difference``.
        include_bias: Perturb bias tensors too.
        seed: Noise seed.

    Returns:
        A :class:`BadgeLink`.

    Raises:
        ValueError: A head without a final linear layer, or a regression model.
    """
    if getattr(model, "task", "classification") != "classification":
        raise ValueError("badge_link needs a classifier (BADGE's embedding uses class probabilities)")
    output = _resolve(model, output)
    emb = noise_stability_embedding(model, x, K=K, generator=torch.Generator().manual_seed(seed),
                                    **_ns_kwargs(part, include_bias, output, zeta, difference))
    emb = emb.double()  # [N, K*d]
    jac = jacobian_fro_sq(model, x, part, output, include_bias=include_bias)  # [N]
    was = model.training
    model.eval()
    try:
        a, z = badge_mod.gradient_factors(model, x)  # [N, C], [N, d]
        probs = torch.softmax(models_mod.predict(model, x).double(), 1)  # [N, C]
    finally:
        model.train(was)
    badge_norm = a.norm(dim=1) * z.norm(dim=1)  # [N]
    ns_norm = emb.norm(dim=1)
    samples = pd.DataFrame({"sample": np.arange(x.shape[0]), "ns_norm": ns_norm.numpy(),
                            "jacobian_norm": jac.sqrt().numpy(), "badge_norm": badge_norm.numpy(),
                            "max_prob": probs.max(1).values.numpy()})
    N = x.shape[0]
    i, j = torch.triu_indices(N, N, 1)
    d_ns = torch.cdist(emb, emb)[i, j].numpy()
    sq_dist_to, _ = badge_mod.badge_sqdist_oracle(a, z)
    d_badge = torch.stack([sq_dist_to(k) for k in range(N)]).clamp_min(0).sqrt()[i, j].numpy()
    en = emb / emb.norm(dim=1, keepdim=True).clamp_min(1e-300)  # [N, K*d] directions
    an = a / a.norm(dim=1, keepdim=True).clamp_min(1e-300)  # [N, C]
    zn = z / z.norm(dim=1, keepdim=True).clamp_min(1e-300)  # [N, d]
    cos_ns = (en @ en.T)[i, j].numpy()  # [P]
    cos_badge = ((an @ an.T) * (zn @ zn.T))[i, j].numpy()  # [P] cosine of a_i ⊗ z_i and a_j ⊗ z_j
    corr = pd.DataFrame([
        _corr_row(samples["ns_norm"].to_numpy(), samples["jacobian_norm"].to_numpy(), "ns_norm", "jacobian_norm"),
        _corr_row(samples["ns_norm"].to_numpy(), samples["badge_norm"].to_numpy(), "ns_norm", "badge_norm"),
        _corr_row(samples["jacobian_norm"].to_numpy(), samples["badge_norm"].to_numpy(), "jacobian_norm", "badge_norm"),
        _corr_row(d_ns, d_badge, "ns_distance", "badge_distance"),
        _corr_row(cos_ns, cos_badge, "ns_cosine", "badge_cosine"),
        _corr_row(samples["ns_norm"].to_numpy(), 1 - samples["max_prob"].to_numpy(), "ns_norm", "one_minus_max_prob"),
        _corr_row(samples["badge_norm"].to_numpy(), 1 - samples["max_prob"].to_numpy(), "badge_norm", "one_minus_max_prob"),
    ])
    return BadgeLink(samples, corr)


