"""SAAL theory (Kim et al., ICML 2023, §3, App. A.2): λ₁, the Thm 3.3 bound terms, the margin δ_x (Thm 3.1, Prop 3.2), ψ(ρ) and r(ρ, δ) (Fig 4).

Computations only: each function takes a model and inputs and returns numbers or tidy frames.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn


from ..persample import perturbed_losses
from ..strategies.saal import saal_scores
from .. import models as models_mod
from ._common import _SAM_EPS, _cast, _corr_row, _jvp_quiet, _work_copy

__all__ = ["top_hessian_eigenvalue", "saal_bound_terms", "summarize_bound", "remainder_orders", "term_correlations", "saal_margins", "summarize_margins"]

def top_hessian_eigenvalue(loss: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor, *,
                           tol: float = 1e-6, maxiter: int | None = None, seed: int = 0) -> float:
    """Largest (algebraic) eigenvalue λ₁ of the Hessian of ``loss`` at ``theta`` (SAAL Thm 3.3).

    Hessian-vector products are ``jvp(grad(loss), θ, v)`` (forward-over-reverse with
    ``torch.func``), wrapped in a ``scipy.sparse.linalg.LinearOperator`` and passed to ARPACK's
    Lanczos ``eigsh(k=1, which="LA")``; the Hessian is never formed. Below 3 parameters the
    Hessian is formed with ``torch.func.hessian`` instead.

    Args:
        loss: Scalar function of a flat parameter vector.
        theta: Flat parameters ``[n]``.
        tol: ARPACK relative tolerance.
        maxiter: ARPACK iteration limit (``None`` = its default).
        seed: Seeds ARPACK's start vector.

    Returns:
        λ₁ as a float.
    """
    from scipy.sparse.linalg import LinearOperator, eigsh
    from torch.func import grad, hessian, jvp

    n = theta.numel()
    if n < 3:
        return float(torch.linalg.eigvalsh(hessian(loss)(theta).reshape(n, n)).max())
    g = grad(loss)

    def matvec(v: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64).reshape(-1)).to(theta)
        with _jvp_quiet():
            return jvp(g, (theta,), (t,))[1].detach().double().cpu().numpy()

    op = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(n)
    val = eigsh(op, k=1, which="LA", tol=tol, maxiter=maxiter, v0=v0, return_eigenvectors=False)
    return float(val[0])


class _PerSampleLoss:
    """Cross-entropy of one sample as a function of the flat vector of all trainable parameters
    (the parameter set SAAL's per-sample perturbation acts on)."""

    def __init__(self, work: nn.Module):
        params = {n: p for n, p in work.named_parameters() if p.requires_grad}
        self.work = work
        self.names = list(params)
        self.shapes = [p.shape for p in params.values()]
        self.sizes = [p.numel() for p in params.values()]
        self.theta = torch.cat([p.detach().reshape(-1) for p in params.values()])  # [n]

    def unflat(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        return {nm: t.view(sh) for nm, t, sh in zip(self.names, v.split(self.sizes), self.shapes)}

    def logits(self, v: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        from torch.func import functional_call

        return functional_call(self.work, self.unflat(v), (xi.unsqueeze(0),))[0]  # [C]

    def __call__(self, xi: torch.Tensor, yi: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda v: F.cross_entropy(self.logits(v, xi).unsqueeze(0), yi.reshape(1))


def _labels_and_scores(work: nn.Module, x: torch.Tensor, y: torch.Tensor | None, rho: float):
    """SAAL score with pseudo labels (``saal_scores``) or given labels (``perturbed_losses``)."""
    if y is None:
        s, det = saal_scores(work, x, rho=rho, perturbation="sam", score="max", return_details=True)
    else:
        det = perturbed_losses(work, x, y, rho=rho, perturbation="sam")
        s = det.perturbed
    return s.double(), det


def saal_bound_terms(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None,
                     rho: float | Sequence[float] = 0.05, *, eig_tol: float = 1e-6,
                     dtype: torch.dtype | None = torch.float64, seed: int = 0) -> pd.DataFrame:
    """The terms of SAAL Theorem 3.3 per sample, next to the SAAL score itself.

    For each x (label ``y``, default the pseudo label ŷ = argmax f_θ(x)) with
    ``g = ∇_θ ℓ(x, y; θ)`` over all trainable parameters and ``H = ∇²_θ ℓ``:

    * ``loss`` ℓ(θ), ``grad_term`` ρ‖g‖₂, ``eig_term`` ½ρ²λ₁ (λ₁ by :func:`top_hessian_eigenvalue`),
      ``bound`` = their sum (Theorem 3.3 without the O(ρ³) term),
    * ``score``: the SAAL score ℓ(θ + ε̂), ε̂ = ρ g/‖g‖ (:func:`alstudy.strategies.saal.saal_scores`;
      :func:`alstudy.persample.perturbed_losses` when ``y`` is given),
    * ``curvature_term`` ½ρ² ĝᵀHĝ along the SAM direction (≤ ``eig_term``),
    * ``remainder`` = score − (ℓ + ε̂ᵀg + ½ ε̂ᵀHε̂): exactly the Taylor remainder of order ρ³
      (0 for a loss quadratic in θ),
    * ``gap`` = bound − score = (eig_term − curvature_term) − remainder (up to the 1e-12 that the
      SAM step adds to ‖g‖); ``holds`` = score ≤ bound.

    Args:
        model: Classifier returning logits (left unchanged; a float64 eval copy is used).
        x: Inputs ``[N, ...]``.
        y: Labels ``[N]`` or ``None`` (pseudo labels, as SAAL scores unlabeled data).
        rho: Radius ρ or a list of radii (one row per sample and distinct ρ; λ₁, ℓ, g do not
            depend on ρ).
        eig_tol: ARPACK tolerance for λ₁.
        dtype: Computation dtype (``None`` = the model's).
        seed: Seeds ARPACK's start vectors.

    Returns:
        Rows per (rho, sample) with the columns above plus ``label``, ``grad_norm``, ``lambda1``,
        ``curvature`` (ĝᵀHĝ). ``attrs`` holds ``max_abs_diff_loss`` and ``max_abs_diff_grad_norm``
        between this independent computation and ``perturbed_losses``' ``clean``/``grad_norm``.

    Raises:
        ValueError: ρ < 0, or labels of the wrong shape.
    """
    from torch.func import grad, jvp

    rhos = [float(rho)] if isinstance(rho, (int, float)) else list(dict.fromkeys(float(r) for r in rho))
    if not rhos or any(r < 0 for r in rhos):
        raise ValueError(f"rho = {rho!r} is invalid; allowed: a number >= 0 or a list of them")
    work = _work_copy(model, dtype)
    device = models_mod.model_device(work)
    xw = _cast(x, dtype, device)
    N = x.shape[0]
    scores, details = {}, None
    for r in rhos:
        scores[r], details = _labels_and_scores(work, xw, None if y is None else y.to(device), r)
    labels = details.labels.to(device)
    fn = _PerSampleLoss(work)
    loss = np.empty(N)
    gnorm = np.empty(N)
    lam = np.empty(N)
    gHg = np.empty(N)
    for i in range(N):
        f = fn(xw[i], labels[i])
        g = grad(f)(fn.theta)
        with torch.no_grad(), _jvp_quiet():
            loss[i] = float(f(fn.theta))
            gnorm[i] = float(g.norm())
            Hg = jvp(grad(f), (fn.theta,), (g,))[1]
            gHg[i] = float(g @ Hg)  # gᵀHg
        lam[i] = top_hessian_eigenvalue(f, fn.theta, tol=eig_tol, seed=seed + i)
    frames = []
    for r in rhos:
        c = r / (gnorm + _SAM_EPS)  # ε̂ = c g
        first = c * gnorm**2  # ε̂ᵀg
        second = 0.5 * c**2 * gHg  # ½ ε̂ᵀHε̂
        score = scores[r].cpu().numpy()
        frame = pd.DataFrame({
            "rho": r, "sample": np.arange(N), "label": labels.cpu().numpy(), "loss": loss,
            "grad_norm": gnorm, "lambda1": lam, "curvature": gHg / np.maximum(gnorm**2, 1e-300),
            "grad_term": r * gnorm, "eig_term": 0.5 * r * r * lam, "curvature_term": second,
            "score": score})
        frame["bound"] = frame["loss"] + frame["grad_term"] + frame["eig_term"]
        frame["remainder"] = score - (loss + first + second)
        frame["gap"] = frame["bound"] - frame["score"]
        frame["holds"] = frame["score"] <= frame["bound"]
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    out.attrs["max_abs_diff_loss"] = float(np.abs(details.clean.double().numpy() - loss).max())
    out.attrs["max_abs_diff_grad_norm"] = float(np.abs(details.grad_norm.double().numpy() - gnorm).max())
    return out


def summarize_bound(terms: pd.DataFrame) -> pd.DataFrame:
    """Per ρ: fraction of samples with score ≤ bound, gap statistics, remainder size.

    Args:
        terms: Output of :func:`saal_bound_terms`.

    Returns:
        Columns ``rho, samples, holds_fraction, gap_median, gap_min, rel_gap_median`` (gap /
        bound), ``remainder_median_abs, remainder_max_abs, curvature_slack_median`` (eig_term −
        curvature_term), ``min_lambda1_minus_curvature`` (λ₁ − ĝᵀHĝ, >= 0 up to ARPACK's
        tolerance since λ₁ is the largest Rayleigh quotient), ``rel_slack_median`` (median of
        1 − ĝᵀHĝ/λ₁: 0 when the SAM direction is the top eigenvector), ``remainder_positive``
        (fraction with R₃ > 0), ``max_violation`` (largest score − bound, 0 if none).
    """
    rows = []
    for r, grp in terms.groupby("rho"):
        rows.append({
            "rho": r, "samples": len(grp), "holds_fraction": float(grp["holds"].mean()),
            "gap_median": float(grp["gap"].median()), "gap_min": float(grp["gap"].min()),
            "rel_gap_median": float((grp["gap"] / grp["bound"]).median()),
            "remainder_median_abs": float(grp["remainder"].abs().median()),
            "remainder_max_abs": float(grp["remainder"].abs().max()),
            "curvature_slack_median": float((grp["eig_term"] - grp["curvature_term"]).median()),
            "min_lambda1_minus_curvature": float((grp["lambda1"] - grp["curvature"]).min()),
            "rel_slack_median": float(((grp["lambda1"] - grp["curvature"])
                                       / grp["lambda1"].abs().clip(lower=1e-300)).median()),
            "remainder_positive": float((grp["remainder"] > 0).mean()),
            "max_violation": float(max(0.0, (grp["score"] - grp["bound"]).max())),
        })
    return pd.DataFrame(rows)


def remainder_orders(terms: pd.DataFrame) -> pd.DataFrame:
    """Per-sample order of the Taylor remainder R₃ between the two smallest radii.

    For a loss that is three times differentiable along the SAM direction, ``R₃ ∝ ρ³`` for small
    ρ, so ``log(R₃(ρ₂)/R₃(ρ₁)) / log(ρ₂/ρ₁) ≈ 3``. ReLU and max-pooling networks are only
    piecewise smooth: a step that crosses an activation kink breaks this.

    Args:
        terms: Output of :func:`saal_bound_terms` with at least two radii.

    Returns:
        Columns ``sample, rho_small, rho_next, order`` (NaN where R₃ changes sign or is 0).

    Raises:
        ValueError: Fewer than two radii in ``terms``.
    """
    rhos = sorted(terms["rho"].unique())
    if len(rhos) < 2:
        raise ValueError("remainder_orders needs saal_bound_terms with at least two radii")
    r = terms.pivot(index="sample", columns="rho", values="remainder")
    a, b = r[rhos[0]], r[rhos[1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        order = np.log((b / a).where((a * b) > 0)) / math.log(rhos[1] / rhos[0])
    return pd.DataFrame({"sample": r.index, "rho_small": rhos[0], "rho_next": rhos[1],
                         "order": order.to_numpy()})


def term_correlations(terms: pd.DataFrame, rho: float | None = None) -> pd.DataFrame:
    """Correlation of the SAAL score with each term of its upper bound (SAAL Fig 1a).

    Args:
        terms: Output of :func:`saal_bound_terms`.
        rho: Which ρ to use (default: the first in ``terms``).

    Returns:
        Columns ``x`` (= ``score``), ``y`` (``loss``, ``grad_term``, ``eig_term``, ``bound``),
        ``pearson``, ``spearman``, ``n``.
    """
    rho = terms["rho"].iloc[0] if rho is None else rho
    sub = terms[np.isclose(terms["rho"], rho)]
    s = sub["score"].to_numpy()
    return pd.DataFrame([_corr_row(s, sub[c].to_numpy(), "score", c)
                         for c in ("loss", "grad_term", "eig_term", "bound")])


def _sam_step_logits(work: nn.Module, x: torch.Tensor, labels: torch.Tensor, rho: float,
                     chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and loss at each sample's own SAM perturbation θ + ρ g/(‖g‖ + 1e-12) (vmapped)."""
    from torch.func import grad, vmap

    fn = _PerSampleLoss(work)

    def one(xi: torch.Tensor, yi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = grad(fn(xi, yi))(fn.theta)
        v = fn.theta + rho * g / (g.norm() + _SAM_EPS)
        z = fn.logits(v, xi)  # [C]
        return z, F.cross_entropy(z.unsqueeze(0), yi.reshape(1))

    outs = [vmap(one)(x[s:s + chunk], labels[s:s + chunk]) for s in range(0, x.shape[0], chunk)]
    return (torch.cat([o[0] for o in outs]).detach().double().cpu(),
            torch.cat([o[1] for o in outs]).detach().double().cpu())


def saal_margins(model: nn.Module, x: torch.Tensor, y_true: torch.Tensor,
                 rhos: Sequence[float] = (0.01, 0.05, 0.1), *,
                 dtype: torch.dtype | None = torch.float64) -> pd.DataFrame:
    """SAAL Theorem 3.1, Proposition 3.2 and Fig 4 on data whose true labels are known.

    For each ρ and x, with the pseudo label ŷ, the SAM perturbation ε̂ of ``ℓ(x, ŷ; ·)`` and
    ``f_{θ+ε̂}(x)`` the perturbed logits (computed here, independently of the scorer):

    * ``kept``: the scorer's perturbed prediction equals ŷ (:func:`saal_scores` details),
    * ``delta``: ``δ_x = [max_j f_{θ+ε̂}(x)_j − f_{θ+ε̂}(x)_ŷ]_+`` (App. A.2.1),
    * ``score_pseudo``: ``max ℓ(x, ŷ; θ+ε)`` (SAAL score), ``score_true``: ``max ℓ(x, ȳ; θ+ε)``,
      both by the SAM step (``perturbed_losses`` with the true labels for the latter),
    * ``loss_true_at_hat``: ``ℓ(x, ȳ; θ+ε̂)``, a second lower estimate of the ȳ maximum,
    * ``ratio`` = δ_x / score_true (averaged over x: r(ρ, δ) of Fig 4b),
    * ``thm31_at_hat``: ℓ(x, ŷ; θ+ε̂) ≤ ℓ(x, ȳ; θ+ε̂) + δ_x (the step of the proof, exact),
    * ``thm31_sam``: score_pseudo ≤ score_true + δ_x (Eq 7 with both maxima by the SAM step),
    * ``thm31``: score_pseudo ≤ max(score_true, loss_true_at_hat) + δ_x (Eq 7 with the better
      lower estimate of the ȳ maximum).

    Args:
        model: Trained classifier (left unchanged; a float64 eval copy is used).
        x: Inputs ``[N, ...]`` (e.g. unlabeled pool examples whose labels are hidden from AL).
        y_true: True labels ȳ ``[N]``.
        rhos: Radii ρ (ρ = 0 gives ψ = 1 and δ = 0 by definition).
        dtype: Computation dtype.

    Returns:
        Rows per (rho, sample) with the columns above plus ``pseudo``, ``true``, ``correct``
        (ŷ = ȳ), ``kept_own`` (argmax of the independent perturbed logits = ŷ) and
        ``score_own`` (ℓ(x, ŷ; θ+ε̂) from the independent step). ``attrs`` holds
        ``max_abs_diff_score`` between ``score_own`` and the scorer.

    Raises:
        ValueError: Labels of the wrong shape or a ρ < 0.
    """
    if tuple(y_true.shape) != (x.shape[0],):
        raise ValueError(f"y_true must have shape [{x.shape[0]}], got {tuple(y_true.shape)}")
    if any(r < 0 for r in rhos):
        raise ValueError(f"rhos = {list(rhos)} is invalid; allowed: numbers >= 0")
    work = _work_copy(model, dtype)
    device = models_mod.model_device(work)
    xw = _cast(x, dtype, device)
    yt = y_true.to(device)
    frames, diff = [], 0.0
    for r in rhos:
        s_hat, det = saal_scores(work, xw, rho=float(r), perturbation="sam", score="max",
                                 return_details=True)
        pseudo = det.labels.to(device)
        s_true = perturbed_losses(work, xw, yt, rho=float(r), perturbation="sam").perturbed.double()
        logits, own = _sam_step_logits(work, xw, pseudo, float(r))  # [N, C], [N]
        ph = pseudo.cpu()
        delta = (logits.max(1).values - logits.gather(1, ph[:, None])[:, 0]).clamp_min(0)  # [N]
        true_at_hat = F.cross_entropy(logits, yt.cpu(), reduction="none")  # [N]
        diff = max(diff, float((own - s_hat.double()).abs().max()))
        s_hat = s_hat.double().cpu()
        s_true = s_true.cpu()
        frames.append(pd.DataFrame({
            "rho": float(r), "sample": np.arange(x.shape[0]), "pseudo": ph.numpy(),
            "true": yt.cpu().numpy(), "correct": (ph == yt.cpu()).numpy(),
            "kept": (det.perturbed_pred.cpu() == ph).numpy(),
            "kept_own": (logits.argmax(1) == ph).numpy(),
            "delta": delta.numpy(), "score_pseudo": s_hat.numpy(), "score_own": own.numpy(),
            "score_true": s_true.numpy(), "loss_true_at_hat": true_at_hat.numpy(),
            "ratio": (delta / s_true).numpy(),
            "thm31_at_hat": (own <= true_at_hat + delta + 1e-12).numpy(),
            "thm31_sam": (s_hat <= s_true + delta).numpy(),
            "thm31": (s_hat <= torch.maximum(s_true, true_at_hat) + delta + 1e-12).numpy(),
        }))
    out = pd.concat(frames, ignore_index=True)
    out.attrs["max_abs_diff_score"] = diff
    return out


def summarize_margins(margins: pd.DataFrame) -> pd.DataFrame:
    """Per ρ: ψ(ρ), r(ρ, δ) and the checks of Theorem 3.1 / Proposition 3.2.

    Args:
        margins: Output of :func:`saal_margins` (optionally with a ``round`` column).

    Returns:
        Columns (``round``,) ``rho, samples, psi`` (fraction kept), ``r`` (mean δ_x/score_true),
        ``delta_mean``, ``max_delta_when_kept`` (Prop 3.2 says 0), ``min_delta_when_flipped``,
        ``pseudo_accuracy``, ``thm31_sam``, ``thm31`` and ``thm31_at_hat`` (fractions holding).
    """
    keys = (["round"] if "round" in margins.columns else []) + ["rho"]
    rows = []
    for key, g in margins.groupby(keys):
        key = key if isinstance(key, tuple) else (key,)
        kept, flipped = g[g["kept"]], g[~g["kept"]]
        rows.append({**dict(zip(keys, key)), "samples": len(g), "psi": float(g["kept"].mean()),
                     "r": float(g["ratio"].mean()), "delta_mean": float(g["delta"].mean()),
                     "max_delta_when_kept": float(kept["delta"].max()) if len(kept) else 0.0,
                     "min_delta_when_flipped": float(flipped["delta"].min()) if len(flipped) else np.nan,
                     "pseudo_accuracy": float(g["correct"].mean()),
                     "thm31_sam": float(g["thm31_sam"].mean()), "thm31": float(g["thm31"].mean()),
                     "thm31_at_hat": float(g["thm31_at_hat"].mean())})
    return pd.DataFrame(rows)


