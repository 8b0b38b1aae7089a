"""Numerical checks of the two papers' theory: computations only.

Every function takes a model and inputs and returns numbers or tidy frames; none trains an
active-learning round, writes a file, draws a figure or decides a verdict (AL rounds run through
:mod:`alstudy.loop` and its cycle metrics, figures live in :mod:`alstudy.plots`, verdicts in
:mod:`alstudy.evidence`).

NoiseStability (Li et al., AAAI 2024), §3 and Appendix A (:mod:`.noise_stability`). With
Δθ(k) = ζ‖θ‖₂ u(k), u(k) uniform on the unit sphere of R^n, and Δẑ(x) the K-block vector of
Eq 1–2, to first order in ζ

* Eq 6:  ``E‖Δẑ(x)‖² = ‖J_θ(x)‖_F²``,
* Eq 7:  ``E‖Δẑ(x_i) − Δẑ(x_j)‖² = ‖∇_θ f(x_i) − ∇_θ f(x_j)‖²``  (scalar f),
* Eq 8:  ``E⟨Δẑ(x_i), Δẑ(x_j)⟩ = ⟨∇_θ f(x_i), ∇_θ f(x_j)⟩``  (scalar f),
* Eq 12, 16, 17: with ``K ≥ (C/ε²) log N`` the norms, distances and normalised inner products
  of N examples are within (1 ± ε) of the gradients' (Johnson–Lindenstrauss),
* Eq 9: BADGE's last-layer gradient embedding ``(p − e_ŷ) ⊗ z`` as the related criterion.

SAAL (Kim et al., ICML 2023), §3 and Appendix A.2 (:mod:`.saal_bound`), for the score
``max_{‖ε‖≤ρ} ℓ(x, ŷ; θ+ε)`` (Eq 6) computed with SAM's step ``ε̂ = ρ g/‖g‖``:

* Theorem 3.3: score ≤ ``ℓ(θ) + ρ‖∇_θ ℓ(θ)‖₂ + ½ρ²λ₁ + O(ρ³)``, λ₁ the top eigenvalue of the
  per-sample loss Hessian,
* Theorem 3.1: ``max ℓ(x, ŷ; θ+ε) ≤ max ℓ(x, ȳ; θ+ε) + δ_x`` with the margin
  ``δ_x = [max_j f_{θ+ε̂}(x)_j − f_{θ+ε̂}(x)_ŷ]_+`` (App. A.2.1),
* Proposition 3.2: δ_x = 0 whenever the perturbed network keeps the prediction ŷ,
* Fig 4: ``ψ(ρ)`` (fraction of unlabeled x that keep ŷ) and ``r(ρ, δ) = mean δ_x / max ℓ(x, ȳ)``.

The scorers checked are the package's own (:func:`alstudy.strategies.noise_stability.noise_stability_embedding`,
:func:`alstudy.strategies.saal.saal_scores`, :func:`alstudy.persample.perturbed_losses`); the
references (exact Jacobians by ``torch.func.jacrev``, Hessian-vector products by ``jvp`` of
``grad``, one SAM step per sample by ``vmap``) are computed here independently, in float64 by default.
"""

from ._common import fit_loglog_slope
from .noise_stability import *  # noqa: F401,F403
from .noise_stability import __all__ as _ns_all
from .saal_bound import *  # noqa: F401,F403
from .saal_bound import __all__ as _saal_all

__all__ = ["fit_loglog_slope", *_ns_all, *_saal_all]
