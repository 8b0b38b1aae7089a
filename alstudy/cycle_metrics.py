"""Per-cycle diagnostics recorded by the AL loop as extra tidy metric rows.

The loop records test metrics and timings every cycle. Some analyses need quantities of the
*trained model of each cycle* that only exist while the loop runs (the maximally perturbed
loss of the labeled and unlabeled sets, SAAL Fig 3; the label-keeping rate ψ(ρ) and the margin
ratio r(ρ, δ), SAAL Fig 4; the terms of the SAAL upper bound, SAAL Fig 1). Such a quantity is a
*cycle metric*: a function registered here under a name and selected with the params key
``cycle_metrics: [name, ...]``. After each cycle's training and evaluation the loop calls::

    fn(model, data, pool, strategy, params, generator) -> list[(metric name, value)]

and stores each pair as a row of ``metrics.csv`` (same columns as the test metrics, so the
results stay tidy and resumable). Cycle metrics use their own generator (derived from the seed,
the cycle and the metric name): enabling them never changes the selections or the training.
A metric registered with ``fixed_sample=True`` gets a generator derived from the seed and its
name only, so it draws the same examples every cycle (:data:`FIXED_SAMPLE`). The number of
examples a metric samples is its own default unless the run's ``cycle_metric_sizes`` names it.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

__all__ = ["CYCLE_METRICS", "FIXED_SAMPLE", "register", "compute", "available", "generator_parts",
           "UNLABELED_SAMPLE", "MARGIN_SAMPLE", "BOUND_SAMPLE", "BOUND_EIG_TOL"]

#: Unlabeled examples sampled per cycle for the perturbed loss of X_U (SAAL Fig 3 uses 2,000).
UNLABELED_SAMPLE = 1000
#: Unlabeled examples per cycle for ψ(ρ) and r(ρ, δ) (float64 per-sample logits).
MARGIN_SAMPLE = 300
#: Unlabeled examples per cycle for the bound terms (λ₁ needs Hessian-vector products).
BOUND_SAMPLE = 12
#: ARPACK tolerance for λ₁; 1e-2 already gives about four correct digits here, ample for
#: correlations and trends over rounds.
BOUND_EIG_TOL = 1e-2

MetricFn = Callable[..., list[tuple[str, float]]]
CYCLE_METRICS: dict[str, MetricFn] = {}
#: Metrics that measure one sample of examples, drawn once per seed, at every cycle.
FIXED_SAMPLE: set[str] = set()


def register(name: str, fixed_sample: bool = False) -> Callable[[MetricFn], MetricFn]:
    """Decorator: make ``fn`` available as the cycle metric ``name``.

    Args:
        fixed_sample: Give ``fn`` the same generator state every cycle of a seed, so that its
            random sample is the same examples throughout the run.

    Raises:
        ValueError: ``name`` is registered already.
    """
    def wrap(fn: MetricFn) -> MetricFn:
        if name in CYCLE_METRICS:
            raise ValueError(f"cycle metric {name!r} registered twice")
        CYCLE_METRICS[name] = fn
        if fixed_sample:
            FIXED_SAMPLE.add(name)
        return fn
    return wrap


def generator_parts(name: str, seed: int, cycle: int) -> tuple[int | str, ...]:
    """What the loop derives the generator of metric ``name`` from at ``cycle`` of ``seed``."""
    return (seed, "metric", name) if name in FIXED_SAMPLE else (seed, cycle, "metric", name)


def available() -> list[str]:
    """Registered cycle-metric names, sorted."""
    return sorted(CYCLE_METRICS)


def compute(name: str, model: torch.nn.Module, data, pool, strategy, params: dict[str, Any],
            generator: torch.Generator) -> list[tuple[str, float]]:
    """Evaluate the cycle metric ``name`` on the current cycle's trained model.

    Args:
        name: A key of :data:`CYCLE_METRICS`.
        model: The trained model of this cycle (left unchanged).
        data: The :class:`alstudy.data.Dataset`.
        pool: The :class:`alstudy.pool.Pool` (labeled / unlabeled indices).
        strategy: The unit's :class:`alstudy.strategies.Strategy` (for its options, e.g. ρ).
        params: Validated run parameters.
        generator: Seeded CPU generator for any sampling.

    Returns:
        ``[(metric name, value), ...]``.

    Raises:
        ValueError: Unknown ``name`` (the message lists the registered names).
    """
    if name not in CYCLE_METRICS:
        raise ValueError(f"unknown cycle metric {name!r}; available: {available()}")
    was_training = model.training
    try:
        return [(m, float(v)) for m, v in CYCLE_METRICS[name](model, data, pool, strategy, params,
                                                                generator)]
    finally:
        model.train(was_training)


def _size(params: dict[str, Any], name: str, default: int) -> int:
    """Sample size of metric ``name``: ``cycle_metric_sizes[name]`` or ``default``, capped by
    the run's ``cycle_metric_samples`` (e.g. in a dry run)."""
    size = (params.get("cycle_metric_sizes") or {}).get(name, default)
    cap = params.get("cycle_metric_samples")
    return size if cap is None else min(size, cap)


def _sample(indices: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """A uniform subset of ``size`` of ``indices`` (all of them if there are fewer)."""
    if indices.numel() <= size:
        return indices
    return indices[torch.randperm(indices.numel(), generator=generator)[:size]].sort().values


def _saal_rho(strategy, params: dict[str, Any]) -> tuple[float, str]:
    """ρ and the perturbation of a SAAL strategy; the training ``sam_rho`` / SAM otherwise."""
    opts = getattr(strategy, "opts", {})
    return float(opts.get("rho", params["sam_rho"])), opts.get("perturbation", "sam")


@register("perturbed_loss")
def perturbed_loss(model, data, pool, strategy, params, generator) -> list[tuple[str, float]]:
    """Maximally perturbed loss (ground-truth labels) of X_L, X_U and X (SAAL Eq 5, Fig 3).

    ``L(S) = mean_{x∈S} max_{‖ε‖≤ρ} ℓ(x, y; θ + ε)`` with the first-order SAM step and ρ =
    ``params['sam_rho']`` (the same radius for every strategy), on all of X_L and on
    :data:`UNLABELED_SAMPLE` uniformly sampled unlabeled examples (the paper: 2,000); the
    total is the right-hand side of SAAL Eq 5, ``π_L L(X_L) + π_U L(X_U)`` with
    ``π_L = |X_L| / |X|``.

    Returns:
        ``perturbed_loss_labeled``, ``perturbed_loss_unlabeled``, ``perturbed_loss_total``.
    """
    from .persample import perturbed_losses

    rho = float(params["sam_rho"])
    lab = pool.labeled  # [n_L]
    unl = _sample(pool.unlabeled, _size(params, "perturbed_loss", UNLABELED_SAMPLE), generator)  # [≤2000]
    out = {}
    for key, idx in (("labeled", lab), ("unlabeled", unl)):
        res = perturbed_losses(model, data.x_train[idx], data.y_train[idx], rho=rho)
        out[key] = float(res.perturbed.mean())
    pi_l = pool.n_labeled / pool.n
    total = pi_l * out["labeled"] + (1.0 - pi_l) * out["unlabeled"]
    return [("perturbed_loss_labeled", out["labeled"]), ("perturbed_loss_unlabeled", out["unlabeled"]),
            ("perturbed_loss_total", total)]


@register("pseudo_label_margin")
def pseudo_label_margin(model, data, pool, strategy, params, generator) -> list[tuple[str, float]]:
    """ψ(ρ) and r(ρ, δ) on sampled unlabeled examples (SAAL Thm 3.1, Prop 3.2, Fig 4).

    ``ψ(ρ)``: share of examples whose perturbed network ``f_{θ+ε̂}`` keeps the pseudo label
    ``ŷ``; ``r(ρ, δ) = mean δ_x / max_ε ℓ(x, ȳ; θ+ε)`` with the margin
    ``δ_x = [max_j f_{θ+ε̂}(x)_j − f_{θ+ε̂}(x)_ŷ]_+`` of Thm 3.1, from
    :func:`alstudy.theory.saal_margins` (SAM step) with the strategy's ρ (SAAL strategies) or
    ``sam_rho``, on :data:`MARGIN_SAMPLE` uniformly sampled unlabeled examples.

    Returns:
        ``psi``, ``margin_ratio`` (r), ``margin_mean`` (mean δ_x), ``eq7_holds`` (share with
        Eq 7 holding), ``prop32_max_delta_kept`` (largest δ_x among kept labels; Prop 3.2: 0),
        ``pseudo_accuracy`` (share with ŷ = ȳ).
    """
    from . import theory

    rho, _ = _saal_rho(strategy, params)
    idx = _sample(pool.unlabeled, _size(params, "pseudo_label_margin", MARGIN_SAMPLE), generator)
    margins = theory.saal_margins(model, data.x_train[idx], data.y_train[idx], rhos=[rho])
    row = theory.summarize_margins(margins).iloc[0]
    return [("psi", row["psi"]), ("margin_ratio", row["r"]), ("margin_mean", row["delta_mean"]),
            ("eq7_holds", row["thm31"]), ("prop32_max_delta_kept", row["max_delta_when_kept"]),
            ("pseudo_accuracy", row["pseudo_accuracy"])]


@register("bound_terms")
def bound_terms(model, data, pool, strategy, params, generator) -> list[tuple[str, float]]:
    """Correlation and size of the SAAL upper-bound terms (SAAL Thm 3.3, Fig 1).

    On :data:`BOUND_SAMPLE` sampled unlabeled examples (or ``cycle_metric_sizes['bound_terms']``):
    the SAAL score ``s(x)`` (Eq 6) and the terms of its bound ``s ≤ ℓ + ρ‖∇ℓ‖ + ½ρ²λ₁ + O(ρ³)`` from
    :func:`alstudy.theory.saal_bound_terms` (λ₁ by Lanczos on Hessian-vector products), with the
    strategy's ρ (SAAL strategies) or ``sam_rho``.

    Returns:
        ``bound_corr_loss``, ``bound_corr_grad``, ``bound_corr_eig`` (Pearson correlation of the
        score with ``ℓ``, ``ρ‖∇ℓ‖``, ``½ρ²λ₁``, Fig 1a), ``bound_loss``, ``bound_grad``,
        ``bound_eig`` (their means, Fig 1b), ``bound_lambda1`` (mean λ₁, Fig 1c) and
        ``bound_holds`` (share with score ≤ the sum of the three terms).
    """
    from . import theory

    rho, _ = _saal_rho(strategy, params)
    idx = _sample(pool.unlabeled, _size(params, "bound_terms", BOUND_SAMPLE), generator)
    terms = _bound_terms(model, data.x_train[idx], rho)
    corr = theory.term_correlations(terms).set_index("y")["pearson"]
    return [("bound_corr_loss", corr["loss"]), ("bound_corr_grad", corr["grad_term"]),
            ("bound_corr_eig", corr["eig_term"]), ("bound_loss", terms["loss"].mean()),
            ("bound_grad", terms["grad_term"].mean()), ("bound_eig", terms["eig_term"].mean()),
            ("bound_lambda1", terms["lambda1"].mean()), ("bound_holds", terms["holds"].mean())]


def _bound_terms(model, x: torch.Tensor, rho: float):
    """:func:`alstudy.theory.saal_bound_terms` of ``x`` in the model's dtype (float32)."""
    from . import theory

    return theory.saal_bound_terms(model, x, rho=rho, eig_tol=BOUND_EIG_TOL, dtype=None)


@register("lambda1_fixed_sample", fixed_sample=True)
def lambda1_fixed_sample(model, data, pool, strategy, params, generator) -> list[tuple[str, float]]:
    """λ₁ of the loss Hessian on one fixed sample of pool examples, every cycle (SAAL Fig 1c).

    ``bound_terms`` draws a fresh unlabeled sample each cycle, so its mean λ₁ moves with the
    sample as well as with the model. This metric draws :data:`BOUND_SAMPLE` training indices
    (or ``cycle_metric_sizes['lambda1_fixed_sample']``) once per seed (the same generator state every cycle) and measures, each cycle, those of them
    that are still unlabeled: the model is all that changes, apart from the few members
    labeled along the way.

    Returns:
        ``fixed_lambda1`` (mean λ₁ over the sample's unlabeled members), ``fixed_lambda1_n``
        (how many there are) and ``fixed_eig`` (mean ½ρ²λ₁ with the strategy's ρ).
    """
    rho, _ = _saal_rho(strategy, params)
    drawn = torch.randperm(pool.n, generator=generator)[:_size(params, "lambda1_fixed_sample",
                                                                BOUND_SAMPLE)]  # [size]
    idx = drawn[~pool.mask[drawn]].sort().values  # [≤ size] still unlabeled
    if idx.numel() == 0:
        return [("fixed_lambda1", float("nan")), ("fixed_lambda1_n", 0.0), ("fixed_eig", float("nan"))]
    terms = _bound_terms(model, data.x_train[idx], rho)
    return [("fixed_lambda1", terms["lambda1"].mean()), ("fixed_lambda1_n", float(idx.numel())),
            ("fixed_eig", terms["eig_term"].mean())]
