"""Per-sample gradients and per-sample worst-case perturbed losses, batched.

For a classifier ``T_θ`` and inputs ``x_1..x_N`` with labels ``y_i`` (by default the pseudo
labels ``ŷ_i = argmax_c T_θ(x_i)_c`` of SAAL §3.2), every sample gets its *own* first-order
worst-case parameter perturbation and the loss there:

* ``g_i = ∇_θ ℓ(x_i, y_i; θ)`` with ``ℓ`` the cross-entropy (over every trainable parameter),
* SAM (Foret et al. 2021; SAAL Eq 3 with p = q = 2): ``ε_i = ρ g_i / ‖g_i‖₂``,
* ASAM (Kwon et al. 2021): ``ε_i = ρ T² g_i / ‖T g_i‖₂`` with the element-wise
  ``T = |θ| + η`` (the SAAL authors' code uses η = 0 and scales every parameter,
  BatchNorm and biases included),
* the perturbed loss ``ℓ(x_i, y_i; θ + ε_i)``: SAAL's acquisition score (Eq 6) to first order.

``ascent_steps = k > 1`` replaces the single step by k steps of normalised projected gradient
ascent inside the ball ``‖T⁻¹ε‖ ≤ ρ`` (T = 1 for SAM): with ``ε = T ε̃``,
``ε̃_1 = ρ u_0`` and ``ε̃_{t+1} = Π_ρ(ε̃_t + ρ u_t)``, ``u_t = T g(θ+ε_t) / ‖T g(θ+ε_t)‖``,
where ``Π_ρ`` rescales onto the ball. The result is the largest loss met over the k iterates,
so it never decreases with k and k = 1 is exactly the SAM/ASAM step. Neither paper nor the
authors' code offers this: it is a tighter estimate of the maximum in Eq 6.

Two interchangeable implementations (``method``):

``functorch``
    ``torch.func.vmap`` of ``grad_and_value`` and ``functional_call``: per-sample gradients and
    the forward pass at per-sample parameters, for any model whose forward treats samples
    independently (BatchNorm in eval mode: running statistics; buffers are passed unbatched).
    Memory grows as ``chunk × (number of parameters)``.
``fast``
    One ordinary batched forward, one backward to the layer outputs only, per-sample weight
    gradients from the captured layer inputs and output gradients, and one perturbed forward
    that applies sample ``i``'s own weights ``W + E_i`` to sample ``i``'s activations, without
    ever materialising a model per sample. For a linear layer the per-sample gradient is the
    outer product ``δ_i a_iᵀ``, so its norm is ``‖δ_i‖‖a_i‖`` and the perturbed output is
    ``W a + b + c_i δ_i (a_iᵀ a) + c_i δ_i`` (ASAM: ``c_i δ_i ∘ ((T∘T)(a_i ∘ a))``): a rank-one
    correction that is never expanded. A convolution's per-sample gradient is a sum of such
    outer products over positions; it is formed with one batched matrix product over the
    unfolded patches (the cost of the usual weight-gradient computation) and applied in the
    perturbed pass with one batched product over the unfolded input. BatchNorm (eval) has
    per-channel gradients ``Σ δ ∘ x̂`` and ``Σ δ``. Supported: every trainable parameter belongs
    to an ``nn.Linear``, ``nn.Conv2d`` (groups = 1, zero padding) or ``nn.BatchNorm1d/2d``
    (eval mode, running statistics) that is called at most once per forward and only through
    its own ``forward``; any parameter-free code (ReLU, pooling, residual additions, reshapes)
    may sit between them.

``auto`` (default) takes ``fast`` when the model qualifies and ``functorch`` otherwise.
Both leave the parameters bit-identical and restore the model's train/eval mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PerturbedLosses", "perturbed_losses", "fast_path_problem", "default_chunk_size",
           "PERTURBATIONS", "METHODS"]

PERTURBATIONS = ("sam", "asam")
METHODS = ("auto", "functorch", "fast")

#: Elements of one ``[chunk, P]`` per-sample tensor: the default chunk keeps it near 64 MiB on
#: the CPU (larger chunks do not run faster there) and near 512 MiB on a GPU.
_CHUNK_ELEMENTS = {"cpu": 1 << 24, "cuda": 1 << 27}
_MAX_CHUNK = 256
_NORM_EPS = 1e-12  # added to ‖T g‖ as in the SAM/ASAM reference implementations
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass
class PerturbedLosses:
    """Per-sample results of :func:`perturbed_losses` (all on the CPU).

    Attributes:
        perturbed: ``[N]`` loss at the (best) perturbed parameters ``θ + ε_i`` (SAAL Eq 6).
        clean: ``[N]`` loss ``ℓ(x_i, y_i; θ)``.
        grad_norm: ``[N]`` plain gradient norm ``‖∇_θ ℓ(x_i, y_i; θ)‖₂`` (the gradient-norm term
            of SAAL Thm 3.3), whatever the perturbation.
        labels: ``[N]`` labels used (the pseudo labels ``ŷ_i`` unless given).
        perturbed_pred: ``[N]`` ``argmax`` of the perturbed network's output at the iterate
            that attains ``perturbed`` (SAAL Prop 3.2 / ψ(ρ): equal to ``labels`` when the
            perturbed network keeps its prediction).
        method: ``"fast"`` or ``"functorch"``, the implementation that ran.
    """

    perturbed: torch.Tensor
    clean: torch.Tensor
    grad_norm: torch.Tensor
    labels: torch.Tensor
    perturbed_pred: torch.Tensor
    method: str


class _Unsupported(Exception):
    """The model does not fit the fast path (message says why)."""


# ----------------------------------------------------------------------------- validation


def _check_options(rho: Any, perturbation: Any, eta: Any, ascent_steps: Any, method: Any,
                   chunk_size: Any) -> None:
    def is_num(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if not (is_num(rho) and rho >= 0):
        raise ValueError(f"rho must be a finite number >= 0, got {rho!r}")
    if perturbation not in PERTURBATIONS:
        raise ValueError(f"perturbation must be one of {list(PERTURBATIONS)}, got {perturbation!r}")
    if not (is_num(eta) and eta >= 0):
        raise ValueError(f"eta must be a finite number >= 0, got {eta!r}")
    if not (is_int(ascent_steps) and ascent_steps >= 1):
        raise ValueError(f"ascent_steps must be an integer >= 1, got {ascent_steps!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    if chunk_size is not None and not (is_int(chunk_size) and chunk_size >= 1):
        raise ValueError(f"chunk_size must be an integer >= 1 or None, got {chunk_size!r}")


def _trainable(model: nn.Module) -> dict[str, nn.Parameter]:
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("the model has no trainable parameters to perturb")
    return params


def default_chunk_size(model: nn.Module) -> int:
    """Samples per chunk so that one ``[chunk, P]`` per-sample tensor stays near 64 MiB on the
    CPU (512 MiB on a GPU), P being the number of trainable parameters.

    Args:
        model: The model (on the device it will be scored on).

    Returns:
        An integer in ``[1, 256]``.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in params)
    device = params[0].device.type if params else "cpu"
    budget = _CHUNK_ELEMENTS.get(device, _CHUNK_ELEMENTS["cuda"])
    return max(1, min(_MAX_CHUNK, budget // max(n_params, 1)))


def fast_path_problem(model: nn.Module) -> str | None:
    """Why ``model`` cannot use the fast path, or ``None`` if it can (structural check).

    The fast path needs every trainable parameter to be the ``weight`` or ``bias`` of an
    ``nn.Linear``, an ``nn.Conv2d`` with ``groups=1`` and zero padding given as numbers, or an
    ``nn.BatchNorm1d/2d`` in eval mode with running statistics, with no parameter shared
    between modules. (That each module runs at most once per forward is checked while running.)

    Args:
        model: The model, in the mode it will be scored in.

    Returns:
        ``None`` or a one-line reason.
    """
    owners: set[int] = set()
    found = False
    for mname, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            found = True
            where = f"{mname + '.' if mname else ''}{pname}"
            if id(p) in owners:
                return f"parameter {where} is shared between modules"
            owners.add(id(p))
            if not isinstance(module, (nn.Linear, nn.Conv2d, *_BN)) or pname not in ("weight", "bias"):
                return (f"parameter {where} belongs to {type(module).__name__} "
                        f"(supported: Linear, Conv2d, BatchNorm1d/2d)")
            if isinstance(module, nn.Conv2d):
                if module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str):
                    return f"convolution {mname} has groups/padding the fast path does not handle"
            if isinstance(module, _BN) and (module.training or module.running_mean is None):
                return f"BatchNorm {mname} would use batch statistics (needs eval mode and running stats)"
    return None if found else "the model has no trainable parameters"


# ----------------------------------------------------------------------------- fast path


def _bn_normalise(m: nn.Module, a: torch.Tensor) -> torch.Tensor:
    """``x̂ = (a − μ) / sqrt(σ² + eps)`` with the running statistics of BatchNorm ``m``."""
    shape = (1, -1) + (1,) * (a.dim() - 2)
    return (a - m.running_mean.view(shape)) * torch.rsqrt(m.running_var.view(shape) + m.eps)


def _unfold(a: torch.Tensor, m: nn.Conv2d) -> torch.Tensor:
    """Patches of ``a`` ``[B, C, H, W]`` for conv ``m``: ``[B, C·kh·kw, Ho·Wo]`` (as ``F.unfold``).

    Built from a strided view of the zero-padded input and one copy; on the CPU this is far
    faster than ``F.unfold`` (im2col) for multi-channel inputs.
    """
    ph, pw = m.padding
    if ph or pw:
        a = F.pad(a, (pw, pw, ph, ph))
    b, c, h, w = a.shape
    (kh, kw), (sh, sw), (dh, dw) = m.kernel_size, m.stride, m.dilation
    ho, wo = (h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1
    a = a.contiguous()
    s0, s1, s2, s3 = a.stride()
    view = a.as_strided((b, c, kh, kw, ho, wo), (s0, s1, s2 * dh, s3 * dw, s2 * sh, s3 * sw))
    return view.reshape(b, c * kh * kw, ho * wo)


#: Convolutions with at most this many inputs per output (C·kh·kw) use unfold + batched
#: matrix products; larger ones use a grouped convolution with one group per sample. Measured
#: on the CPU: the grouped convolution is several times faster for 3×3 kernels over 8+
#: channels, the unfold product for single-channel 5×5 inputs (the MNIST CNN's first layer).
_UNFOLD_MAX_FAN_IN = 32


def _conv_per_sample_weight_grad(m: nn.Conv2d, a: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Per-sample weight gradients ``[B, out, C, kh, kw]`` of conv ``m`` from its input ``a``
    ``[B, C, H, W]`` and output gradient ``delta`` ``[B, out, Ho, Wo]``.

    Either ``Σ_positions δ_i a_iᵀ`` over the unfolded patches (one batched product) or the
    weight gradient of the equivalent grouped convolution with one group per sample.
    """
    b, c = a.shape[:2]
    o = m.out_channels
    if c * m.kernel_size[0] * m.kernel_size[1] <= _UNFOLD_MAX_FAN_IN:
        unf = _unfold(a, m)  # [B, Ck², L]
        return torch.bmm(delta.flatten(2), unf.transpose(1, 2)).view(b, *m.weight.shape)
    weight = m.weight.detach().repeat(b, 1, 1, 1)  # [B*out, C, kh, kw]: shape of the grouped conv
    gw = torch.ops.aten.convolution_backward(
        delta.reshape(1, b * o, *delta.shape[2:]), a.reshape(1, b * c, *a.shape[2:]), weight, None,
        list(m.stride), list(m.padding), list(m.dilation), False, [0, 0], b, [False, True, False])[1]
    return gw.view(b, *m.weight.shape)


def _conv_per_sample_forward(m: nn.Conv2d, a: torch.Tensor, weight: torch.Tensor,
                             bias: torch.Tensor | None) -> torch.Tensor:
    """Conv ``m`` applied to each sample with its own weights ``weight`` ``[B, out, C, kh, kw]``
    and bias ``[B, out]`` (or None): ``[B, out, Ho, Wo]``."""
    b, c, h, w = a.shape
    o = m.out_channels
    kh, kw = m.kernel_size
    if c * kh * kw <= _UNFOLD_MAX_FAN_IN:
        ho = (h + 2 * m.padding[0] - m.dilation[0] * (kh - 1) - 1) // m.stride[0] + 1
        wo = (w + 2 * m.padding[1] - m.dilation[1] * (kw - 1) - 1) // m.stride[1] + 1
        out = torch.bmm(weight.reshape(b, o, -1), _unfold(a, m))  # [B, out, L]
        if bias is not None:
            out = out + bias[:, :, None]
        return out.view(b, o, ho, wo)
    out = F.conv2d(a.reshape(1, b * c, h, w), weight.reshape(b * o, c, kh, kw),
                   None if bias is None else bias.reshape(-1), m.stride, m.padding, m.dilation,
                   groups=b)  # [1, B*out, Ho, Wo]
    return out.view(b, o, *out.shape[2:])


def _bcast(v: torch.Tensor, like_dim: int) -> torch.Tensor:
    """``[B] -> [B, 1, ..., 1]`` with ``like_dim`` dimensions in total."""
    return v.view((-1,) + (1,) * (like_dim - 1))


class _FastEngine:
    """Runs the model's own forward with its Linear/Conv2d/BatchNorm forwards replaced.

    In a *recording* forward (grad enabled) every layer stores its input ``a`` and returns a
    copy of its output whose original is kept as the target of ``autograd.grad`` (so a later
    in-place op cannot change it). In a *perturbed* forward every layer applies sample i's
    weights ``W + E_i`` (or the rank-one correction of a linear layer) to its input.
    """

    def __init__(self, model: nn.Module, asam: bool, eta: float, rank_one: bool):
        self.model = model
        self.layers: list[nn.Module] = []
        for m in model.modules():
            if any(p.requires_grad for p in m.parameters(recurse=False)):
                self.layers.append(m)
        self.asam = asam
        self.rank_one = rank_one
        # T² per layer and parameter name (ASAM); detached copies, parameters untouched.
        self.t2: dict[nn.Module, dict[str, torch.Tensor]] = {}
        self.t1: dict[nn.Module, dict[str, torch.Tensor]] = {}
        for m in self.layers:
            self.t1[m], self.t2[m] = {}, {}
            for name, p in self._params(m).items():
                if asam:
                    t = p.detach().abs() + eta
                    self.t1[m][name], self.t2[m][name] = t, t * t
        self.inputs: dict[nn.Module, torch.Tensor] = {}
        self.outputs: dict[nn.Module, torch.Tensor] = {}
        self.calls: dict[nn.Module, int] = {}
        self.pert: dict[nn.Module, dict[str, Any]] | None = None
        self._saved: dict[nn.Module, Any] = {}

    @staticmethod
    def _params(m: nn.Module) -> dict[str, torch.Tensor]:
        return {n: p for n, p in m.named_parameters(recurse=False) if p.requires_grad}

    # -------------------------------------------------------------- patching

    def __enter__(self) -> "_FastEngine":
        for m in self.layers:
            if "forward" in m.__dict__:
                self._saved[m] = m.__dict__["forward"]
            m.forward = self._make_forward(m)  # instance attribute shadows the class method
        return self

    def __exit__(self, *exc: Any) -> None:
        for m in self.layers:
            del m.forward
            if m in self._saved:
                m.forward = self._saved[m]
        self._saved.clear()

    def _make_forward(self, m: nn.Module):
        def forward(a: torch.Tensor) -> torch.Tensor:
            self.calls[m] = self.calls.get(m, 0) + 1
            if self.pert is None:
                out = type(m).forward(m, a)
            else:
                out = self._perturbed(m, a, self.pert.get(m))
            if torch.is_grad_enabled():
                self.inputs[m] = a
                self.outputs[m] = out
                return out.clone()  # later in-place ops act on the copy, not on the target
            return out
        return forward

    def begin(self, pert: dict[nn.Module, dict[str, Any]] | None) -> None:
        """Prepare one forward pass (clean if ``pert`` is None)."""
        self.pert = pert
        self.inputs.clear()
        self.outputs.clear()
        self.calls.clear()

    def check_calls(self) -> None:
        """Raise :class:`_Unsupported` if a layer ran more than once in the last forward."""
        many = [type(m).__name__ for m, c in self.calls.items() if c > 1]
        if many:
            raise _Unsupported(f"layer(s) {many} ran more than once per forward")

    # -------------------------------------------------------------- per-sample gradients

    def per_sample(self, deltas: dict[nn.Module, torch.Tensor]) -> dict[nn.Module, dict[str, Any]]:
        """Per-sample gradients of every recorded layer from its input and output gradient.

        Returns, per layer, ``{name: [B, *shape]}`` (dense) or, for a 2-D linear layer in
        rank-one mode, ``{"rank1": (δ [B, out], a [B, in])}`` (the gradient is ``δ aᵀ``).
        """
        grads: dict[nn.Module, dict[str, Any]] = {}
        for m, delta in deltas.items():
            a = self.inputs[m]
            names = self._params(m)
            b = a.shape[0]
            if isinstance(m, nn.Linear):
                if self.rank_one and a.dim() == 2 and "weight" in names:
                    grads[m] = {"rank1": (delta, a.detach())}
                    continue
                a2 = a.detach().reshape(b, -1, a.shape[-1])  # [B, L, in]
                d2 = delta.reshape(b, -1, delta.shape[-1])  # [B, L, out]
                g = {"weight": torch.bmm(d2.transpose(1, 2), a2), "bias": d2.sum(1)}  # [B,out,in], [B,out]
            elif isinstance(m, nn.Conv2d):
                g = {"bias": delta.sum((2, 3))}  # [B, out]
                if "weight" in names:
                    g["weight"] = _conv_per_sample_weight_grad(m, a.detach(), delta)  # [B, out, C, k, k]
            else:  # BatchNorm, eval mode
                dims = tuple(range(2, a.dim()))
                xhat = _bn_normalise(m, a.detach())
                g = {"weight": (delta * xhat).sum(dims) if dims else delta * xhat,  # [B, C]
                     "bias": delta.sum(dims) if dims else delta}  # [B, C]
            grads[m] = {n: g[n] for n in names}
        return grads

    def sq_norms(self, grads: dict[nn.Module, dict[str, Any]], scaled: bool) -> torch.Tensor:
        """Per-sample ``‖g_i‖²`` (``scaled=False``) or ``‖T g_i‖²`` (``scaled=True``), ``[B]``."""
        total = None
        for m, g in grads.items():
            if "rank1" in g:
                delta, a = g["rank1"]
                d2 = delta * delta  # [B, out]
                if scaled and self.asam:
                    s = ((a * a) @ self.t2[m]["weight"].t() * d2).sum(1)  # Σ_oi T²_oi δ_o² a_i²
                else:
                    s = d2.sum(1) * (a * a).sum(1)  # ‖δ‖² ‖a‖²
                if "bias" in self._params(m):
                    s = s + ((d2 * self.t2[m]["bias"]) if scaled and self.asam else d2).sum(1)
            else:
                s = 0
                for n, gn in g.items():
                    v = gn * self.t1[m][n] if scaled and self.asam else gn
                    s = s + v.flatten(1).square().sum(1)
            total = s if total is None else total + s
        return total

    def scaled_direction(self, grads: dict[nn.Module, dict[str, Any]], inv_norm: torch.Tensor
                         ) -> dict[nn.Module, dict[str, torch.Tensor]]:
        """Dense ``u_i = T g_i / ‖T g_i‖`` (T = 1 for SAM) per layer and parameter."""
        out = {}
        for m, g in grads.items():
            out[m] = {}
            for n, gn in g.items():
                v = gn * self.t1[m][n] if self.asam else gn
                out[m][n] = v * _bcast(inv_norm, v.dim())
        return out

    def step_perturbation(self, grads: dict[nn.Module, dict[str, Any]], coef: torch.Tensor
                          ) -> dict[nn.Module, dict[str, Any]]:
        """Single-step perturbation ``E_i = c_i T² g_i`` (T = 1 for SAM), consuming ``grads``."""
        pert: dict[nn.Module, dict[str, Any]] = {}
        for m, g in grads.items():
            if "rank1" in g:
                delta, a = g["rank1"]
                cd = delta * coef[:, None]  # [B, out]
                p = {"rank1": (cd, a)}
                if "bias" in self._params(m):
                    p["bias"] = cd * self.t2[m]["bias"] if self.asam else cd
                pert[m] = p
            else:
                pert[m] = {}
                for n, gn in g.items():
                    e = gn.mul_(_bcast(coef, gn.dim()))
                    pert[m][n] = e.mul_(self.t2[m][n]) if self.asam else e
        return pert

    def from_tilde(self, tilde: dict[nn.Module, dict[str, torch.Tensor]]
                   ) -> dict[nn.Module, dict[str, torch.Tensor]]:
        """``E = T ε̃`` (dense)."""
        if not self.asam:
            return tilde
        return {m: {n: t * self.t1[m][n] for n, t in d.items()} for m, d in tilde.items()}

    # -------------------------------------------------------------- perturbed layers

    def _perturbed(self, m: nn.Module, a: torch.Tensor, p: dict[str, Any] | None) -> torch.Tensor:
        if p is None:  # layer not reached in the recording pass: zero gradient, no perturbation
            return type(m).forward(m, a)
        b = a.shape[0]
        if isinstance(m, nn.Linear):
            if "rank1" in p:
                cd, a0 = p["rank1"]  # c δ [B, out], recorded input [B, in]
                out = F.linear(a, m.weight, m.bias)  # [B, out]
                if self.asam:
                    out = out + cd * ((a0 * a) @ self.t2[m]["weight"].t())  # c δ ∘ (T² (a0 ∘ a))
                else:
                    out = out + cd * (a0 * a).sum(1, keepdim=True)  # c δ (a0ᵀ a)
                if m.bias is not None and "bias" in p:
                    out = out + p["bias"]
                return out
            w = m.weight + p["weight"] if "weight" in p else m.weight.expand(b, *m.weight.shape)
            a2 = a.reshape(b, -1, a.shape[-1])  # [B, L, in]
            out = torch.bmm(a2, w.transpose(1, 2))  # [B, L, out]
            if m.bias is not None:
                bias = m.bias + p["bias"] if "bias" in p else m.bias.expand(b, -1)
                out = out + bias[:, None, :]
            return out.reshape(*a.shape[:-1], m.out_features)
        if isinstance(m, nn.Conv2d):
            bias = None
            if m.bias is not None:
                bias = m.bias + p["bias"] if "bias" in p else m.bias.expand(b, -1)  # [B, out]
            if "weight" not in p:
                out = F.conv2d(a, m.weight, None, m.stride, m.padding, m.dilation)
                return out if bias is None else out + bias[:, :, None, None]
            return _conv_per_sample_forward(m, a, p["weight"] + m.weight, bias)
        # BatchNorm (eval): x̂ (γ + E_γ) + (β + E_β)
        xhat = _bn_normalise(m, a)
        shape = (b, -1) + (1,) * (a.dim() - 2)
        if m.weight is not None:
            gamma = m.weight + p["weight"] if "weight" in p else m.weight.expand(b, -1)
            xhat = xhat * gamma.view(shape)
        if m.bias is not None:
            beta = m.bias + p["bias"] if "bias" in p else m.bias.expand(b, -1)
            xhat = xhat + beta.view(shape)
        return xhat


def _fast_chunk(eng: _FastEngine, x: torch.Tensor, y: torch.Tensor | None, rho: float,
                steps: int) -> tuple[torch.Tensor, ...]:
    """Fast path on one chunk: ``(perturbed, clean, grad_norm, labels, perturbed_pred)``."""
    model = eng.model
    with torch.enable_grad():
        eng.begin(None)
        out = model(x)  # [B, C]
        eng.check_calls()
        if y is None:
            y = out.detach().argmax(1)
        loss = F.cross_entropy(out, y, reduction="none")  # [B]
        clean = loss.detach()
        layers = list(eng.outputs)
        deltas = torch.autograd.grad(loss.sum(), [eng.outputs[m] for m in layers])
    grads = eng.per_sample(dict(zip(layers, deltas)))
    plain_sq = eng.sq_norms(grads, scaled=False)  # [B]
    best = pred = None
    tilde = None
    for t in range(1, steps + 1):
        sq = eng.sq_norms(grads, scaled=True) if eng.asam else (plain_sq if t == 1 else eng.sq_norms(grads, False))
        inv = 1.0 / (sq.sqrt() + _NORM_EPS)  # [B]
        if steps == 1:
            pert = eng.step_perturbation(grads, rho * inv)
        else:
            u = eng.scaled_direction(grads, inv)
            if tilde is None:
                tilde = {m: {n: rho * v for n, v in d.items()} for m, d in u.items()}
            else:
                for m, d in u.items():  # layers reached only now start from ε̃ = 0
                    tilde.setdefault(m, {n: torch.zeros_like(v) for n, v in d.items()})
                    for n, v in d.items():
                        tilde[m][n] = tilde[m][n] + rho * v
                vsq = sum(v.flatten(1).square().sum(1) for d in tilde.values() for v in d.values())
                shrink = torch.clamp(rho / (vsq.sqrt() + _NORM_EPS), max=1.0)  # Π_ρ
                tilde = {m: {n: v * _bcast(shrink, v.dim()) for n, v in d.items()} for m, d in tilde.items()}
            pert = eng.from_tilde(tilde)
        last = t == steps
        with torch.set_grad_enabled(not last):
            eng.begin(pert)
            out_p = model(x)  # [B, C]
            loss_p = F.cross_entropy(out_p, y, reduction="none")  # [B]
            if not last:
                layers = list(eng.outputs)
                deltas = torch.autograd.grad(loss_p.sum(), [eng.outputs[m] for m in layers])
                grads = eng.per_sample(dict(zip(layers, deltas)))
        loss_p = loss_p.detach()
        p_t = out_p.detach().argmax(1)  # [B]
        if best is None:  # the first step as it is, NaN included (as in the functorch path)
            best, pred = loss_p, p_t
        else:
            better = loss_p > best
            best = torch.where(better, loss_p, best)
            pred = torch.where(better, p_t, pred)
    eng.begin(None)
    return best, clean, plain_sq.sqrt(), y, pred


# ----------------------------------------------------------------------------- functorch path


def _functorch_chunk(model: nn.Module, params: dict[str, torch.Tensor],
                     frozen: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor | None,
                     rho: float, asam: bool, eta: float, steps: int) -> tuple[torch.Tensor, ...]:
    """vmap path on one chunk: ``(perturbed, clean, grad_norm, labels, perturbed_pred)``."""
    from torch.func import functional_call, grad_and_value, vmap

    if y is None:
        with torch.no_grad():
            y = model(x).argmax(1)  # [B]
    t1 = {n: p.abs() + eta for n, p in params.items()} if asam else None

    def loss_fn(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor):
        out = functional_call(model, (p, frozen), (xi.unsqueeze(0),))  # [1, C]
        return F.cross_entropy(out, yi.unsqueeze(0)), out[0]

    gv = grad_and_value(loss_fn, has_aux=True)

    def total_sq(d: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(v.square().sum() for v in d.values())

    def one(xi: torch.Tensor, yi: torch.Tensor):
        g, (clean, _) = gv(params, xi, yi)
        plain = total_sq(g).sqrt()
        tilde: dict[str, torch.Tensor] = {}
        best = pred = None
        for t in range(1, steps + 1):
            tg = {n: g[n] * t1[n] for n in g} if asam else g
            inv = 1.0 / (total_sq(tg).sqrt() + _NORM_EPS)
            if t == 1:
                tilde = {n: rho * inv * v for n, v in tg.items()}
            else:
                v = {n: tilde[n] + rho * inv * tg[n] for n in tg}
                shrink = torch.clamp(rho / (total_sq(v).sqrt() + _NORM_EPS), max=1.0)
                tilde = {n: shrink * v[n] for n in v}
            pert = {n: params[n] + (t1[n] * tilde[n] if asam else tilde[n]) for n in params}
            if t < steps:
                g, (val, out) = gv(pert, xi, yi)
            else:
                val, out = loss_fn(pert, xi, yi)
            p_t = out.argmax(-1)
            if best is None:
                best, pred = val, p_t
            else:
                better = val > best
                best, pred = torch.where(better, val, best), torch.where(better, p_t, pred)
        return best, clean, plain, pred

    best, clean, plain, pred = vmap(one)(x, y)
    return best.detach(), clean.detach(), plain.detach(), y, pred


# ----------------------------------------------------------------------------- public entry


def perturbed_losses(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *,
                     rho: float = 0.05, perturbation: str = "sam", eta: float = 0.0,
                     ascent_steps: int = 1, method: str = "auto",
                     chunk_size: int | None = None) -> PerturbedLosses:
    """Per-sample loss at each sample's own first-order worst-case perturbation (SAAL Eq 6).

    For every ``x_i``: ``g_i = ∇_θ ℓ(x_i, y_i; θ)`` over all trainable parameters, then
    ``ε_i = ρ g_i/‖g_i‖`` (SAM, SAAL Eq 3 with p = 2) or ``ε_i = ρ T² g_i/‖T g_i‖`` with
    ``T = |θ| + η`` (ASAM), and ``ℓ(x_i, y_i; θ + ε_i)``; see the module docstring for
    ``ascent_steps > 1``. The model is scored in eval mode (BatchNorm running statistics,
    dropout off) and its mode and parameters are restored/unchanged afterwards.

    Args:
        model: A classifier returning logits ``[N, C]``.
        x: Inputs ``[N, ...]`` (any device; moved to the model's device chunk by chunk).
        y: Labels ``[N]``; ``None`` = pseudo labels ``argmax_c T_θ(x)_c``.
        rho: Radius ρ >= 0 of the perturbation (ρ = 0 gives the clean loss).
        perturbation: ``"sam"`` or ``"asam"``.
        eta: ASAM's η >= 0 in ``T = |θ| + η`` (ignored by SAM).
        ascent_steps: Number k >= 1 of ascent steps (1 = the SAM/ASAM first-order step).
        method: ``"auto"``, ``"fast"`` or ``"functorch"`` (see the module docstring).
        chunk_size: Samples per batched chunk (``None`` = :func:`default_chunk_size`).

    Returns:
        A :class:`PerturbedLosses` with ``[N]`` CPU tensors.

    Raises:
        ValueError: An option out of range, a model without trainable parameters, a label
            tensor of the wrong shape, or ``method="fast"`` on a model the fast path does not
            support (the message says why).
    """
    _check_options(rho, perturbation, eta, ascent_steps, method, chunk_size)
    n = x.shape[0]
    if y is not None and tuple(y.shape) != (n,):
        raise ValueError(f"y must have shape [{n}] like x's first dimension, got {tuple(y.shape)}")
    params = _trainable(model)
    chunk = chunk_size or default_chunk_size(model)
    device = next(iter(params.values())).device
    asam = perturbation == "asam"
    was_training = model.training
    model.eval()
    try:
        use = method
        problem = fast_path_problem(model) if method != "functorch" else None
        if method == "fast" and problem:
            raise ValueError(f"method='fast' cannot score this model: {problem}; use 'auto' or 'functorch'")
        if method == "auto":
            use = "functorch" if problem else "fast"
        parts: list[tuple[torch.Tensor, ...]] = []
        if use == "fast":
            try:
                with _FastEngine(model, asam, float(eta), rank_one=ascent_steps == 1) as eng:
                    for s in range(0, n, chunk):
                        yb = None if y is None else y[s:s + chunk].to(device)
                        parts.append(_fast_chunk(eng, x[s:s + chunk].to(device), yb, float(rho),
                                                 ascent_steps))
            except _Unsupported as err:
                if method == "fast":
                    raise ValueError(f"method='fast' cannot score this model: {err}; "
                                     f"use 'auto' or 'functorch'") from None
                use, parts = "functorch", []
        if use == "functorch":
            named = dict(model.named_parameters())
            frozen = {k: v.detach() for k, v in named.items() if k not in params}
            frozen.update({k: v for k, v in model.named_buffers()})
            detached = {k: v.detach() for k, v in params.items()}
            for s in range(0, n, chunk):
                yb = None if y is None else y[s:s + chunk].to(device)
                parts.append(_functorch_chunk(model, detached, frozen, x[s:s + chunk].to(device), yb,
                                              float(rho), asam, float(eta), ascent_steps))
    finally:
        model.train(was_training)
    if not parts:
        empty = torch.empty(0)
        return PerturbedLosses(empty, empty, empty, torch.empty(0, dtype=torch.long),
                               torch.empty(0, dtype=torch.long), use)
    cols = [torch.cat([p[i].detach().cpu() for p in parts]) for i in range(5)]
    return PerturbedLosses(*cols, method=use)
