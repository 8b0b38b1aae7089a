"""Sharpness-aware minimisation (Foret et al., 2021) and its adaptive variant ASAM (Kwon et al., 2021).

SAM minimises ``max_{‖ε‖≤ρ} L(w + ε)`` (SAAL Eq 2 without the L2 term) with the first-order
inner step (SAAL Eq 3, p = q = 2) and the gradient taken at the perturbed point (SAAL Eq 4):

* SAM:  ``ε̂ = ρ g / ‖g‖``,
* ASAM: ``ε̂ = ρ T² g / ‖T g‖`` with the element-wise ``T = |w| + η`` (the maximiser of
  ``gᵀε`` over the ellipsoid ``‖T⁻¹ε‖ ≤ ρ``),

then the base optimizer (SGD with momentum, Adam, ...) steps from ``w`` with ``∇L(w + ε̂)``.
Two forward/backward passes per step.

Conventions differ between the public implementations, so both are options:

* Kwon et al.'s code (SamsungLabs/ASAM) scales only parameters whose name contains
  ``"weight"`` (biases get T = 1) and uses η = 0.01: ``adaptive_scope="weights"``, ``eta=0.01``
  (pass ``model.named_parameters()`` so the names are known).
* The widely used ``davda54/sam`` port and the SAAL authors' code scale every parameter with
  η = 0 (``T = |w|``): ``adaptive_scope="all"``, ``eta=0`` (the defaults).

No maintained, CPU-clean package with both variants and a base-optimizer argument exists on
the registry (``sam-pytorch`` is an unrelated NFNet port), so this is a short implementation
tested against the closed forms on a quadratic.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch

__all__ = ["SAM", "ADAPTIVE_SCOPES"]

ADAPTIVE_SCOPES = ("all", "weights")
_NORM_EPS = 1e-12


class SAM(torch.optim.Optimizer):
    """SAM / ASAM wrapper around a base optimizer.

    Usage per mini-batch: ``loss(w).backward(); opt.first_step(zero_grad=True);
    loss(w + ε̂).backward(); opt.second_step(zero_grad=True)`` — or ``opt.step(closure)``
    after the first backward pass.

    Args:
        params: Parameters (or ``(name, parameter)`` pairs, or parameter groups) to optimise.
        base_optimizer: Optimizer class (e.g. ``torch.optim.SGD`` or ``torch.optim.Adam``).
        rho: Radius ρ ≥ 0 of the neighbourhood (ρ = 0 reduces to the base optimizer).
        adaptive: ``True`` for ASAM (element-wise scaling ``T = |w| + η``).
        eta: ASAM's η ≥ 0 (Kwon et al. use 0.01; the SAAL code and davda54/sam use 0).
        adaptive_scope: ``"all"`` scales every parameter; ``"weights"`` only those whose name
            contains ``"weight"`` (Kwon et al.'s code), which needs named parameters.
        **kwargs: Passed to ``base_optimizer`` (lr, momentum, weight_decay, ...).

    Raises:
        ValueError: ``rho`` or ``eta`` negative, an unknown ``adaptive_scope``, or
            ``adaptive_scope="weights"`` without parameter names.
    """

    def __init__(self, params: Iterable, base_optimizer: type[torch.optim.Optimizer],
                 rho: float = 0.05, adaptive: bool = False, eta: float = 0.0,
                 adaptive_scope: str = "all", **kwargs):
        if not rho >= 0:
            raise ValueError(f"SAM rho must be >= 0, got {rho}")
        if not eta >= 0:
            raise ValueError(f"ASAM eta must be >= 0, got {eta}")
        if adaptive_scope not in ADAPTIVE_SCOPES:
            raise ValueError(f"adaptive_scope must be one of {list(ADAPTIVE_SCOPES)}, "
                             f"got {adaptive_scope!r}")
        defaults = dict(rho=rho, adaptive=adaptive, eta=eta, adaptive_scope=adaptive_scope, **kwargs)
        super().__init__(params, defaults)
        if adaptive and adaptive_scope == "weights" and any(
                "param_names" not in g for g in self.param_groups):
            raise ValueError("adaptive_scope='weights' needs parameter names: pass "
                             "model.named_parameters()")
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)

    @staticmethod
    def _scales(group: dict) -> list[torch.Tensor | float]:
        """``T`` per parameter of ``group`` (1.0 where the parameter is not scaled)."""
        params = group["params"]
        if not group["adaptive"]:
            return [1.0] * len(params)
        names = group.get("param_names")
        scaled = [group["adaptive_scope"] == "all" or "weight" in names[i] for i in range(len(params))]
        return [p.abs() + group["eta"] if s else 1.0 for p, s in zip(params, scaled)]

    @torch.no_grad()
    def grad_norm(self) -> torch.Tensor:
        """``‖T g‖₂`` over every parameter with a gradient (T = 1 for SAM)."""
        norms = [torch.linalg.vector_norm(t * p.grad)
                 for g in self.param_groups for p, t in zip(g["params"], self._scales(g))
                 if p.grad is not None]
        if not norms:
            return torch.zeros(())
        device = norms[0].device
        return torch.linalg.vector_norm(torch.stack([n.to(device) for n in norms]))

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Move to ``w + ε̂`` with ``ε̂ = ρ T² g / ‖T g‖`` (T = 1 for SAM), saving ``w``."""
        norm = self.grad_norm()
        for group in self.param_groups:
            factor = group["rho"] / (norm + _NORM_EPS)
            for p, t in zip(group["params"], self._scales(group)):
                if p.grad is None:
                    continue
                self.state[p]["old_p"] = p.detach().clone()
                p.add_(p.grad * (t * t) * factor.to(p.device))
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Return to ``w`` and apply the base optimizer with the gradient taken at ``w + ε̂``."""
        for group in self.param_groups:
            for p in group["params"]:
                if "old_p" in self.state[p]:
                    p.copy_(self.state[p].pop("old_p"))
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> None:  # type: ignore[override]
        """Full SAM step after a first forward/backward pass at ``w``.

        Args:
            closure: Recomputes the loss and its gradients (forward + backward) at the
                current parameters; called once, at ``w + ε̂``.

        Raises:
            ValueError: No closure given.
        """
        if closure is None:
            raise ValueError("SAM.step needs a closure that recomputes the loss and gradients")
        closure = torch.enable_grad()(closure)
        self.first_step(zero_grad=True)
        closure()
        self.second_step()
