"""Sharpness-aware minimisation (Foret et al., 2021) and its adaptive variant ASAM (Kwon et al., 2021).

SAM minimises ``max_{‖ε‖≤ρ} L(w + ε)`` with the first-order inner step
``ε̂ = ρ · g / ‖g‖`` (SAM) or ``ε̂ = ρ · T²g / ‖T g‖`` with ``T = |w|`` (ASAM), then applies the
base optimizer to the gradient taken at ``w + ε̂``. Two forward/backward passes per step.

No maintained, CPU-clean package with both variants and a base-optimizer argument exists on
the registry (``sam-pytorch`` is an unrelated NFNet port), so this is a short implementation
tested against the closed form on a quadratic.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch

__all__ = ["SAM"]


class SAM(torch.optim.Optimizer):
    """SAM / ASAM wrapper around a base optimizer.

    Args:
        params: Parameters to optimise.
        base_optimizer: Optimizer class (e.g. ``torch.optim.SGD`` or ``torch.optim.Adam``).
        rho: Radius ρ ≥ 0 of the neighbourhood.
        adaptive: ``True`` for ASAM (element-wise scaling by ``|w|``).
        eta: ASAM's small constant added to ``|w|`` (Kwon et al. use 0.01).
        **kwargs: Passed to ``base_optimizer`` (lr, momentum, weight_decay, ...).
    """

    def __init__(self, params: Iterable, base_optimizer: type[torch.optim.Optimizer],
                 rho: float = 0.05, adaptive: bool = False, eta: float = 0.0, **kwargs):
        if rho < 0:
            raise ValueError(f"SAM rho must be >= 0, got {rho}")
        defaults = dict(rho=rho, adaptive=adaptive, eta=eta, **kwargs)
        super().__init__(params, defaults)
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)

    def _scale(self, p: torch.Tensor, group: dict) -> torch.Tensor | float:
        return (p.abs() + group["eta"]) if group["adaptive"] else 1.0

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Move to ``w + ε̂`` (saving ``w``)."""
        norm = torch.linalg.vector_norm(torch.stack([
            torch.linalg.vector_norm(self._scale(p, g) * p.grad)
            for g in self.param_groups for p in g["params"] if p.grad is not None]))
        for group in self.param_groups:
            factor = group["rho"] / (norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                self.state[p]["old_p"] = p.detach().clone()
                s = self._scale(p, group)
                p.add_(s * s * p.grad * factor)  # ε̂ = ρ T² g / ‖T g‖
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Return to ``w`` and apply the base optimizer with the gradient taken at ``w + ε̂``."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None or "old_p" not in self.state[p]:
                    continue
                p.copy_(self.state[p].pop("old_p"))
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> None:  # type: ignore[override]
        """Full SAM step; ``closure`` must do a forward and backward pass and return the loss."""
        if closure is None:
            raise ValueError("SAM.step needs a closure that recomputes the loss and gradients")
        closure = torch.enable_grad()(closure)
        self.first_step(zero_grad=True)
        closure()
        self.second_step()
