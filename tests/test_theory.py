"""Tests of :mod:`alstudy.theory` against independent references.

References: closed-form Jacobians of a model linear in θ (and of its softmax), naive autograd
loops over outputs and samples, the exact variance of a quadratic form on the sphere (Monte
Carlo), brute-force pair loops, explicit Hessians (``torch.func.hessian`` + ``eigvalsh``), a
loss that is exactly quadratic in θ (Taylor remainder 0), and a per-sample deep-copy SAM step.
"""

import copy
import json
import math
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from alstudy import models, notebooks, theory, theory_runs
from alstudy.strategies.noise_stability import noise_stability_embedding

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = {"theory_noise_stability": theory_runs.NOISE_STABILITY_DEFAULTS,
             "theory_saal_bound": theory_runs.SAAL_BOUND_DEFAULTS}


class LinearF(models.ALModel):
    """f(x) = W x + b (linear in θ), g(z) = V z + c."""

    def __init__(self, D=5, d=3, C=4):
        super().__init__()
        self.lin = nn.Linear(D, d)
        self.head = nn.Linear(d, C)
        self._feature_dim = d

    def features(self, x):
        return self.lin(x)  # [N, d]


class MLP2(models.ALModel):
    """A 2-layer tanh MLP f and a linear head g."""

    def __init__(self, D=4, h=12, d=5, C=3):
        super().__init__()
        self.f = nn.Sequential(nn.Linear(D, h), nn.Tanh(), nn.Linear(h, d), nn.Tanh())
        self.head = nn.Linear(d, C)
        self._feature_dim = d

    def features(self, x):
        return self.f(x)  # [N, d]


def seeded(cls, seed=0, **kw):
    torch.manual_seed(seed)
    return cls(**kw).double().eval()


def naive_jacobian_fro_sq(model, x, params, output):
    """Σ_c ‖∂ out_c / ∂θ‖² by one autograd call per sample and output."""
    out = []
    for xi in x:
        z = model.features(xi[None]) if output == "features" else model(xi[None])
        z = z.reshape(-1)
        if output == "probs":
            z = torch.softmax(z, 0)
        total = 0.0
        for c in range(z.numel()):
            g = torch.autograd.grad(z[c], params, retain_graph=True)
            total += sum(float(t.square().sum()) for t in g)
        out.append(total)
    return torch.tensor(out, dtype=torch.float64)


# ============================================================================ Jacobians (Eq 6)


def test_jacobian_fro_sq_matches_closed_forms_of_a_linear_model():
    model = seeded(LinearF)
    x = torch.randn(6, 5, dtype=torch.float64)
    sq = x.square().sum(1)  # ‖x‖²
    W, V = model.lin.weight.detach(), model.head.weight.detach()
    d, C = W.shape[0], V.shape[0]
    # z = Wx + b: ∂z_k/∂W_kj = x_j, ∂z_k/∂b_k = 1  ->  ‖J‖² = d(‖x‖² + 1), JJᵀ = (‖x‖² + 1) I
    stats = theory.jacobian_stats(model, x, "features", "features")
    torch.testing.assert_close(stats["fro_sq"], d * (sq + 1))
    torch.testing.assert_close(stats["gram_fro_sq"], d * (sq + 1) ** 2)
    torch.testing.assert_close(theory.jacobian_fro_sq(model, x, "features", "features", include_bias=False),
                               d * sq)
    # logits = V(Wx + b) + c over all parameters
    z = model.features(x).detach()
    expect = V.square().sum() * (sq + 1) + C * (z.square().sum(1) + 1)
    torch.testing.assert_close(theory.jacobian_fro_sq(model, x, "all", "logits"), expect)
    # probs = softmax(logits): J = S V J_z with S = diag(p) − ppᵀ  ->  (‖x‖² + 1) ‖S V‖_F²
    p = torch.softmax(model(x).detach(), 1)
    S = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]  # [N, C, C]
    expect = (sq + 1) * (S @ V).square().sum((1, 2))
    torch.testing.assert_close(theory.jacobian_fro_sq(model, x, "features", "probs"), expect)
    assert theory.jacobian_stats(model, x, "features", "auto")["n"] == W.numel() + d


def test_jacobian_fro_sq_matches_a_naive_loop_on_a_small_cnn():
    torch.manual_seed(1)
    model = models.build("small_cnn", (1, 8, 8), 4, width=2, hidden=6).eval()
    x = torch.randn(3, 1, 8, 8)
    ref_model = copy.deepcopy(model).double()
    feats = [p for n, p in ref_model.named_parameters() if not n.startswith("head.")]
    for output in ("probs", "features"):
        got = theory.jacobian_fro_sq(model, x, "features", output)
        ref = naive_jacobian_fro_sq(ref_model, x.double(), feats, output)
        torch.testing.assert_close(got, ref)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 copy.deepcopy(model).state_dict().values()))


def test_predicted_rel_sd_matches_monte_carlo_on_the_sphere():
    n, K = 7, 3
    lam = torch.tensor([5.0, 2.0, 1.0, 0.5, 0.0, 0.0, 0.0], dtype=torch.float64)  # A = diag(lam)
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(200_000, K, n, generator=gen, dtype=torch.float64)
    u = u / u.norm(dim=2, keepdim=True)
    est = n * (u.square() * lam).sum(2).mean(1)  # [R] mean of K terms n uᵀAu
    rel = est / lam.sum() - 1
    pred = theory.predicted_rel_sd(lam.sum()[None], lam.square().sum()[None], n, K)
    assert abs(float(rel.mean())) < 0.01
    assert float(rel.std()) == pytest.approx(float(pred), rel=0.02)


def test_eq6_holds_within_ten_percent_at_K_2000_for_a_two_layer_mlp():
    model = seeded(MLP2)
    x = torch.randn(8, 4, dtype=torch.float64)
    frame = theory.eq6_vs_K(model, x, [10, 2000], repeats=1, part="features", output="features",
                            difference="finite64", zeta=1e-6, seed=3)
    feats = list(model.f.parameters())
    ref = naive_jacobian_fro_sq(model, x, feats, "features").numpy()
    big = frame[frame["K"] == 2000].sort_values("sample")
    np.testing.assert_allclose(big["exact"], ref, rtol=1e-10)
    np.testing.assert_allclose(big["estimate"], ref, rtol=0.10)
    # the estimate with K draws is the first K blocks of the same embedding, rescaled
    emb = noise_stability_embedding(model, x, K=2000, zeta=1e-6, perturb="features",
                                    output="features", difference="finite64",
                                    generator=torch.Generator().manual_seed(3))
    blocks = emb.reshape(8, 2000, -1).square().sum(2)
    small = frame[frame["K"] == 10].sort_values("sample")["estimate"].to_numpy()
    np.testing.assert_allclose(small, (blocks[:, :10].sum(1) * 200).numpy(), rtol=1e-12)
    summary = theory.summarize_eq6_K(frame)
    assert summary.set_index("K").loc[2000, "rms"] < summary.set_index("K").loc[10, "rms"]


def test_eq6_vs_zeta_regimes():
    # a model linear in θ: Eq 1 equals its linearisation for every ζ, in every numerics
    lin = seeded(LinearF)
    x = torch.randn(5, 5, dtype=torch.float64)
    frame = theory.eq6_vs_zeta(lin, x, [1e-6, 1e-2, 10.0], K=4, part="features", output="features")
    assert frame["lin_error"].max() < 1e-8
    # a nonlinear float32 model: round-off at tiny ζ, first order in between, breakdown at large ζ
    torch.manual_seed(0)
    mlp = MLP2().eval()
    xs = torch.randn(6, 4)
    frame = theory.eq6_vs_zeta(mlp, xs, [1e-9, 1e-6, 1e-3, 3.0], K=4, output="features")
    med = theory.summarize_eq6_zeta(frame).set_index(["difference", "zeta"])["lin_median"]
    assert med[("finite", 1e-9)] > 0.1  # float32 cancellation
    assert med[("finite64", 1e-6)] < 1e-4
    assert med[("finite64", 3.0)] > 0.05  # beyond the first-order regime
    assert med[("jvp", 1e-9)] < 1e-4 and med[("jvp", 3.0)] < 1e-4  # the ζ → 0 limit itself
    reg = theory.zeta_regimes(theory.summarize_eq6_zeta(frame)).set_index("difference")
    assert bool(reg.loc["jvp", "flat"]) and not bool(reg.loc["finite", "flat"])


# ============================================================================ Eq 7, 8, 12, 16, 17


def test_parameter_gradients_match_autograd_and_eq7_eq8_hold_for_large_K():
    model = seeded(MLP2, seed=2)
    x = torch.randn(20, 4, dtype=torch.float64)
    f = theory.ScalarOutput(model, index=1)
    G = theory.parameter_gradients(f, x, "features")
    feats = list(model.f.parameters())
    ref = torch.stack([torch.cat([t.reshape(-1) for t in torch.autograd.grad(model(xi[None])[0, 1], feats)])
                       for xi in x])
    torch.testing.assert_close(G, ref)
    frame = theory.projected_gradients(model, x, [16, 3000], eps=[0.3], repeats=1, index=1,
                                       difference="finite64", zeta=1e-6, seed=5)
    at = frame[frame["K"] == 3000].set_index("metric")["value"]
    assert at["eq7_sqdist_rms"] < 0.1  # E‖Δẑ_i − Δẑ_j‖² = ‖∇f_i − ∇f_j‖²
    assert at["eq8_inner_rms"] < 0.1   # E⟨Δẑ_i, Δẑ_j⟩ = ⟨∇f_i, ∇f_j⟩ (normalised)
    assert at["eq12_norm"] == 1.0 and at["eq16_distance"] == 1.0 and at["eq17_cosine"] == 1.0
    assert at["eq7_sqdist_rms"] < frame[frame["K"] == 16].set_index("metric")["value"]["eq7_sqdist_rms"]


def test_pair_distances_are_exact_for_near_duplicate_rows():
    """‖a − b‖ from the difference itself: ‖a‖² + ‖b‖² − 2⟨a, b⟩ would lose every digit here."""
    a = torch.randn(500, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 100
    step = torch.zeros(500, dtype=torch.float64)
    step[7] = 1e-9
    M = torch.stack([a, a + step, -a])
    norms, dist, inner = theory.noise_stability._pair_matrices(M)
    assert float(dist[0, 1]) == pytest.approx(1e-9, rel=1e-6) and dist[1, 0] == dist[0, 1]
    assert float(dist[0, 2]) == pytest.approx(float(2 * a.norm()))
    assert torch.allclose(inner, M @ M.T) and torch.allclose(norms, M.norm(dim=1))


def test_projection_errors_and_fractions_match_a_pair_loop():
    gen = torch.Generator().manual_seed(0)
    G = torch.randn(9, 40, generator=gen, dtype=torch.float64)
    Z = G @ torch.randn(40, 12, generator=gen, dtype=torch.float64) / math.sqrt(12)  # [9, 12]
    errs = theory.projection_errors(Z, G)
    eps = 0.25
    n_norm = n_dist = n_cos = pairs = 0
    k = 0
    for i in range(9):
        n_norm += abs(Z[i].norm() / G[i].norm() - 1) <= eps
        for j in range(i + 1, 9):
            dz, dg = (Z[i] - Z[j]).norm(), (G[i] - G[j]).norm()
            assert float(errs["dist_ratio"][k]) == pytest.approx(float(dz / dg))
            inner = float((Z[i] @ Z[j] - G[i] @ G[j]) / (G[i].norm() * G[j].norm()))
            assert float(errs["inner_err"][k]) == pytest.approx(inner)
            cz = Z[i] @ Z[j] / (Z[i].norm() * Z[j].norm())
            cg = G[i] @ G[j] / (G[i].norm() * G[j].norm())
            n_dist += abs(dz - dg) <= eps * dg
            n_cos += (cg - eps) / (1 + eps) ** 2 <= cz <= (cg + eps) / (1 - eps) ** 2
            pairs += 1
            k += 1
    fr = theory.concentration_fractions(errs, eps)
    assert fr["eq12_norm"] == pytest.approx(float(n_norm) / 9)
    assert fr["eq16_distance"] == pytest.approx(float(n_dist) / pairs)
    assert fr["eq17_cosine"] == pytest.approx(float(n_cos) / pairs)


def test_jl_min_K_is_the_smallest_K_of_the_union_bound():
    for eps, M, delta in [(0.1, 20, 0.1), (0.3, 190, 0.05), (0.5, 1, 0.5)]:
        K = theory.jl_min_K(eps, M, delta)

        def fail(k):
            return 2 * M * math.exp(-k * eps**2 * (0.25 - eps / 6))

        assert fail(K) <= delta * (1 + 1e-12) and fail(K - 1) > delta
    with pytest.raises(ValueError, match="eps"):
        theory.jl_min_K(1.0, 10)


def test_badge_link_norms_match_the_explicit_gradient():
    torch.manual_seed(0)
    model = LinearF().eval()
    x = torch.randn(12, 5)
    link = theory.badge_link(model, x, K=8, difference="finite64")
    # explicit ∇_V ℓ(x, ŷ) with the pseudo label, per sample
    ref = []
    for xi in x:
        out = model(xi[None])
        loss = F.cross_entropy(out, out.argmax(1))
        ref.append(float(torch.autograd.grad(loss, model.head.weight)[0].norm()))
    np.testing.assert_allclose(link.samples["badge_norm"], ref, rtol=1e-5)
    assert set(link.correlations["y"]) == {"jacobian_norm", "badge_norm", "badge_distance",
                                           "badge_cosine", "one_minus_max_prob"}
    row = link.correlations.set_index(["x", "y"]).loc[("ns_norm", "badge_norm")]
    assert row["pearson"] == pytest.approx(np.corrcoef(link.samples["ns_norm"], ref)[0, 1], rel=1e-4)


# ============================================================================ SAAL


class QuadraticLoss(nn.Module):
    """Two classes with logits ``[log(expm1(q)), 0]``: the loss of class 1 is exactly
    ``softplus(log(expm1(q))) = q(θ, x) = ½(θ − Px)ᵀA(θ − Px) + c``, a quadratic in θ."""

    def __init__(self, n=5, D=3, c=0.05, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.theta = nn.Parameter(0.05 * torch.randn(n, generator=gen, dtype=torch.float64))
        B = torch.randn(n, n, generator=gen, dtype=torch.float64)
        self.register_buffer("A", B @ B.T / n + 0.1 * torch.eye(n, dtype=torch.float64))
        self.register_buffer("P", 0.05 * torch.randn(n, D, generator=gen, dtype=torch.float64))
        self.c = c

    def q(self, x):
        r = self.theta - x @ self.P.T  # [N, n]
        return 0.5 * ((r @ self.A) * r).sum(1) + self.c  # [N]

    def forward(self, x):
        z0 = torch.log(torch.expm1(self.q(x)))  # [N]; class 1 predicted while q < log 2
        return torch.stack([z0, torch.zeros_like(z0)], 1)  # [N, 2]


def test_saal_bound_is_exact_for_a_quadratic_loss():
    model = QuadraticLoss()
    x = torch.randn(6, 3, dtype=torch.float64)
    rhos = [0.3, 0.05, 0.01]
    terms = theory.saal_bound_terms(model, x, rho=rhos)
    assert (terms["label"] == 1).all()  # pseudo label = class 1, so ℓ = q exactly
    A = model.A
    lam = float(torch.linalg.eigvalsh(A).max())
    r = model.theta.detach() - x @ model.P.T  # [N, n]
    g = r @ A  # ∇_θ q
    gn = g.norm(dim=1)
    curv = ((g @ A) * g).sum(1) / gn**2  # ĝᵀAĝ
    for rho in rhos:
        t = terms[terms["rho"] == rho].sort_values("sample")
        np.testing.assert_allclose(t["loss"], model.q(x).detach(), rtol=1e-12)
        np.testing.assert_allclose(t["grad_norm"], gn, rtol=1e-10)
        np.testing.assert_allclose(t["lambda1"], lam, rtol=1e-8)
        np.testing.assert_allclose(t["curvature"], curv, rtol=1e-10)
        assert t["remainder"].abs().max() < 1e-12  # no third-order term
        np.testing.assert_allclose(t["gap"], 0.5 * rho**2 * (lam - curv.numpy()), atol=1e-12)
        assert t["holds"].all()
    assert theory.summarize_bound(terms)["holds_fraction"].eq(1.0).all()


def test_hessian_top_eigenvalue_matches_an_explicit_hessian():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4)).double().eval()
    x = torch.randn(4, 3, dtype=torch.float64)
    terms = theory.saal_bound_terms(net, x, rho=[1e-3, 5e-4], eig_tol=1e-10)
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    sizes = [p.numel() for p in net.parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    y = net(x).argmax(1)
    t = terms[terms["rho"] == 1e-3].sort_values("sample")
    for i in range(4):
        def loss(v, i=i):
            params = {n: s.view(sh) for n, s, sh in zip(names, v.split(sizes), shapes)}
            return F.cross_entropy(torch.func.functional_call(net, params, (x[i:i + 1],)), y[i:i + 1])

        H = torch.func.hessian(loss)(theta)  # explicit [n, n]
        g = torch.func.grad(loss)(theta)
        assert float(t["lambda1"].iloc[i]) == pytest.approx(float(torch.linalg.eigvalsh(H).max()), rel=1e-7)
        assert float(theory.top_hessian_eigenvalue(loss, theta, tol=1e-10)) == pytest.approx(
            float(torch.linalg.eigvalsh(H).max()), rel=1e-7)
        assert float(t["curvature"].iloc[i]) == pytest.approx(float(g @ H @ g / (g @ g)), rel=1e-8)
        assert float(t["loss"].iloc[i]) == pytest.approx(float(loss(theta)), rel=1e-12)
        assert float(t["grad_norm"].iloc[i]) == pytest.approx(float(g.norm()), rel=1e-10)
    # the Taylor remainder of a non-quadratic loss is third order: halving ρ divides it by ~8
    rem = terms.pivot(index="sample", columns="rho", values="remainder")
    ratio = (rem[1e-3] / rem[5e-4]).to_numpy()
    np.testing.assert_allclose(ratio, 8.0, rtol=0.05)
    np.testing.assert_allclose(theory.remainder_orders(terms)["order"], 3.0, atol=0.07)
    assert terms.attrs["max_abs_diff_loss"] < 1e-12


def reference_margins(net, x, y_true, rho):
    """δ_x by a deep copy per sample: autograd gradient, SAM step in place, perturbed logits."""
    deltas, kept, s_hat = [], [], []
    for xi, yt in zip(x, y_true):
        m = copy.deepcopy(net)
        out = m(xi[None])
        yh = out.argmax(1)
        params = list(m.parameters())
        g = torch.autograd.grad(F.cross_entropy(out, yh), params)
        gn = torch.sqrt(sum(t.square().sum() for t in g))
        with torch.no_grad():
            for p, t in zip(params, g):
                p.add_(rho * t / (gn + 1e-12))
            z = m(xi[None])[0]
        deltas.append(max(float(z.max() - z[yh]), 0.0))
        kept.append(int(z.argmax()) == int(yh))
        s_hat.append(float(F.cross_entropy(z[None], yh)))
    return np.array(deltas), np.array(kept), np.array(s_hat)


def test_saal_margins_against_a_per_sample_reference():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).double().eval()
    x = torch.randn(40, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (40,))
    frame = theory.saal_margins(net, x, y, [0.0, 0.3, 1.0])
    for rho in (0.3, 1.0):
        f = frame[frame["rho"] == rho].sort_values("sample")
        d, kept, s_hat = reference_margins(net, x, y, rho)
        np.testing.assert_allclose(f["delta"], d, atol=1e-12)
        np.testing.assert_array_equal(f["kept"], kept)
        np.testing.assert_allclose(f["score_pseudo"], s_hat, rtol=1e-10)
        assert (f.loc[f["kept"], "delta"] == 0).all()  # Proposition 3.2
        assert (f.loc[~f["kept"], "delta"] > 0).all()
        assert f["thm31_at_hat"].all() and f["thm31"].all()
        np.testing.assert_allclose(f["ratio"], f["delta"] / f["score_true"])
    assert not frame[frame["rho"] == 1.0]["kept"].all()  # the large ρ flips some predictions
    s = theory.summarize_margins(frame).set_index("rho")
    assert s.loc[0.0, "psi"] == 1.0 and s.loc[0.0, "r"] == 0.0
    assert s.loc[1.0, "max_delta_when_kept"] == 0.0
    assert frame.attrs["max_abs_diff_score"] < 1e-10


def test_bad_options_name_the_parameter():
    model = seeded(MLP2)
    x = torch.randn(3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="'Ks'"):
        theory.eq6_vs_K(model, x, [0, 4])
    with pytest.raises(ValueError, match="'threads'"):
        theory_runs.use_threads(0)
    with pytest.raises(ValueError, match="rho"):
        theory.saal_bound_terms(nn.Linear(4, 3).double(), x, rho=-1.0)
    with pytest.raises(ValueError, match="'zetas'"):
        theory.eq6_vs_zeta(model, x, [0.0])


# ============================================================================ notebooks


def kinds_match(value, default):
    """Whether a preset value has the kind of the default (numbers, lists of numbers, ...)."""
    if default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, list):
        return isinstance(value, list) and all(kinds_match(v, default[0]) for v in value)
    return isinstance(value, type(default))


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_defaults_match_the_notebook_parameters_cell(name):
    path = ROOT / "notebooks" / f"{name}.ipynb"
    assert notebooks.parameters(path) == NOTEBOOKS[name]
    nb = nbformat.read(path, as_version=4)
    from papermill.translators import PythonTranslator

    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert {p.name for p in PythonTranslator.inspect(cell)} == set(NOTEBOOKS[name])  # papermill sees all
    for cell in nb.cells:
        assert cell.get("id")
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None
            assert not any(line.lstrip().startswith(("def ", "class ")) for line in cell.source.splitlines())
    for level in ("smoke", "cpu", "paper"):
        preset = yaml.safe_load((ROOT / "params" / f"{name}.{level}.yaml").read_text())
        assert set(preset) <= set(NOTEBOOKS[name]), set(preset) - set(NOTEBOOKS[name])
        for key, value in preset.items():  # YAML reads 1e-3 as a string: presets must be numbers
            assert kinds_match(value, NOTEBOOKS[name][key]), (level, key, value)
        cfg = {**NOTEBOOKS[name], **preset}
        assert theory_runs.notebook_run_dir(cfg, name) == notebooks.run_dir(path, preset)
    json.dumps(NOTEBOOKS[name])  # plain values only


def test_projected_gradients_at_several_N_equal_separate_runs_on_prefixes():
    """Every row but the ``*_worst`` ones (random subsets, tested above) is a run on x[:N]."""
    model = seeded(MLP2, seed=3)
    x = torch.randn(12, 4, dtype=torch.float64)
    kw = dict(eps=[0.2, 0.3], repeats=2, index=1, difference="finite64", zeta=1e-6, seed=7)
    both = theory.projected_gradients(model, x, [8, 64], Ns=[5, 12], **kw)
    assert sorted(both["N"].unique()) == [5, 12]
    prefix_rows = lambda fr: fr[~fr["metric"].str.endswith("_worst")].drop(columns="N").reset_index(drop=True)
    for N in (5, 12):
        alone = theory.projected_gradients(model, x[:N], [8, 64], **kw)
        pd.testing.assert_frame_equal(prefix_rows(both[both["N"] == N]), prefix_rows(alone),
                                      check_exact=False, rtol=1e-9)
    summary = theory.summarize_concentration(both)
    assert set(summary["N"]) == {5, 12} and len(summary) == 2 * 3 * 2  # N x metric x eps
    for row in summary.dropna(subset=["K_all"]).itertuples():
        assert row.C_empirical == pytest.approx(row.K_all * row.eps ** 2 / math.log(row.N))
    assert theory.largest_N(both)["N"].unique().tolist() == [12]
    with pytest.raises(ValueError, match=r"Ns must lie in \[2, 12\]"):
        theory.projected_gradients(model, x, [8], Ns=[1, 12], **kw)


def test_worst_rows_are_the_rms_over_subsets_of_the_smallest_eps_that_holds_them_all():
    model = seeded(MLP2, seed=3)
    x = torch.randn(9, 4, dtype=torch.float64)
    frame = theory.projected_gradients(model, x, [8, 64], eps=[0.3], repeats=2, index=1, difference="finite64",
                                       zeta=1e-6, seed=7, Ns=[4, 9], worst_subsets=5)
    f = theory.ScalarOutput(model, 1, "logits")
    G = theory.parameter_gradients(f, x, "features").double()
    worst = frame[frame["metric"].str.endswith("_worst")]
    assert len(worst) == 2 * 2 * 2 * 2  # repeats x N x K x check
    for row in worst.itertuples():
        emb = noise_stability_embedding(f, x, K=64, generator=torch.Generator().manual_seed(7 + row.repeat),
                                        output="logits", zeta=1e-6, difference="finite64").double()
        Z = emb[:, :row.K] * math.sqrt(64 / row.K)
        subsets = theory.noise_stability._subsets(9, row.N, 5, (7, row.repeat, row.N))
        assert subsets.shape == ((5, 4) if row.N == 4 else (1, 9))
        maxima = []
        for subset in subsets.tolist():  # one vector, one pair at a time
            if row.metric == "eq12_norm_worst":
                maxima.append(max(abs(float(Z[i].norm() / G[i].norm()) - 1) for i in subset))
            else:
                maxima.append(max(abs(float((Z[i] - Z[j]).norm() / (G[i] - G[j]).norm()) - 1)
                                  for a, i in enumerate(subset) for j in subset[a + 1:]))
        assert row.value == pytest.approx(math.sqrt(np.mean(np.square(maxima))), rel=1e-9)
    # at N = len(x) the one subset is all of x: the value is the smallest ε that holds every vector
    for row in worst[worst["N"] == 9].itertuples():
        emb = noise_stability_embedding(f, x, K=64, generator=torch.Generator().manual_seed(7 + row.repeat),
                                        output="logits", zeta=1e-6, difference="finite64").double()
        errs = theory.projection_errors(emb[:, :row.K] * math.sqrt(64 / row.K), G)
        check = row.metric.removesuffix("_worst")
        if row.value < 0.999:  # ε must lie in (0, 1)
            assert theory.concentration_fractions(errs, row.value * (1 + 1e-9))[check] == 1.0
            assert theory.concentration_fractions(errs, row.value * (1 - 1e-6))[check] < 1.0


def test_expected_max_sq_normal_against_simulation():
    rng = np.random.default_rng(0)
    assert theory.expected_max_sq_normal(1) == pytest.approx(1.0, abs=1e-9)
    for n in (8, 276, 2556):
        sims = (rng.standard_normal((4000, n)) ** 2).max(axis=1)
        se = sims.std() / math.sqrt(sims.size)
        assert abs(theory.expected_max_sq_normal(n) - sims.mean()) < 4 * se
    with pytest.raises(ValueError, match="n = 0 is invalid"):
        theory.expected_max_sq_normal(0)


def _worst_frame(law, Ns=(8, 24, 72), Ks=(64, 256, 1024), repeats=3):
    rows = []
    for N in Ns:
        for check, n in (("eq12_norm", N), ("eq16_distance", N * (N - 1) // 2)):
            for r in range(repeats):
                for K in Ks:
                    rows.append({"N": N, "repeat": r, "K": K, "metric": f"{check}_worst", "eps": np.nan,
                                 "value": math.sqrt(law(n) / K), "jl_K": np.nan})
    return pd.DataFrame(rows)


def test_log_n_power_is_zero_for_the_log_law_and_one_for_sqrt_n():
    log_law = theory.log_n_power(_worst_frame(lambda n: 0.5 * theory.expected_max_sq_normal(n)))
    assert set(log_law["metric"]) == {"eq12_norm", "eq16_distance"} and len(log_law) == 6
    np.testing.assert_allclose(log_law["q"], 0.0, atol=1e-9)
    sqrt_law = theory.log_n_power(_worst_frame(lambda n: 3.0 * math.sqrt(n)))
    np.testing.assert_allclose(sqrt_law["b"], 0.5, atol=1e-12)
    np.testing.assert_allclose(sqrt_law["q"], 1.0, atol=1e-9)
    linear = theory.log_n_power(_worst_frame(lambda n: float(n)))  # K ∝ n
    assert (linear["q"] > 1.5).all()
    with pytest.raises(ValueError, match="two or more N"):
        theory.log_n_power(_worst_frame(lambda n: 1.0, Ns=(8,)))
    with pytest.raises(ValueError, match="no K >= k_min = 64"):
        theory.log_n_power(_worst_frame(lambda n: 1.0, Ks=(4, 16)))


def test_log_n_power_of_true_gaussian_projections_is_the_log_law():
    """Random vectors and Gaussian projections (the Johnson-Lindenstrauss setting itself),
    through the estimator the notebook uses: q is unbiased for the log law, and the claim's
    rule (q within ±1/2, TOST over 20 repeats) finds it."""
    from alstudy.evidence import claims, verdicts
    from alstudy.theory.noise_stability import _deviations, _pair_matrices, _subsets, _worst_rms

    rng = np.random.default_rng(1)
    rows = []
    for r in range(20):
        G = torch.from_numpy(rng.standard_normal((72, 400)))
        R = torch.from_numpy(rng.standard_normal((400, 1024)))
        for K in (64, 256, 1024):
            dev = _deviations(_pair_matrices(G @ R[:, :K] / math.sqrt(K)), _pair_matrices(G))
            for N in (8, 24, 72):
                for metric, value in _worst_rms(*dev, _subsets(72, N, 32, (0, r, N))).items():
                    rows.append({"N": N, "repeat": r, "K": K, "metric": metric, "value": value})
    power = theory.log_n_power(pd.DataFrame(rows))
    threshold = claims.claim("ns.appa2.log_n_dependence").compare.threshold
    for check, grp in power.groupby("metric"):
        mean, se = grp["q"].mean(), grp["q"].std() / math.sqrt(len(grp))
        assert abs(mean) < 3 * se, (check, mean, se)
        assert verdicts.check_threshold(grp["q"].to_numpy(), threshold)["verdict"] == "reproduced", check


def test_log_n_power_is_nan_where_the_n_measured_cannot_tell_log_from_sqrt():
    small = theory.log_n_power(_worst_frame(lambda n: 3.0 * math.sqrt(n), Ns=(3, 6)))
    norms = small[small["metric"] == "eq12_norm"]
    assert (norms["b_log"] > 0.4).all() and norms["q"].isna().all()


def _farthest_first_from_origin(X, budget):
    """Naive Gonzalez traversal: every distance recomputed from scratch at every step."""
    X = np.asarray(X, float)
    picks = []
    for _ in range(budget):
        gaps = [min([np.linalg.norm(X[i])] + [np.linalg.norm(X[i] - X[c]) for c in picks])
                if i not in picks else -1.0 for i in range(len(X))]
        picks.append(int(np.argmax(gaps)))
    return picks


def test_kcenter_agreement_against_a_naive_traversal():
    model = seeded(MLP2, seed=3)
    x = torch.randn(15, 4, dtype=torch.float64)
    kw = dict(index=1, difference="finite64", zeta=1e-6, part="features", include_bias=True)
    got = theory.kcenter_agreement(model, x, K=6, budget=4, repeats=3, seed=11, **kw)
    assert list(got.columns) == ["repeat", "overlap", "magnitude_ratio"] and len(got) == 3
    f = theory.ScalarOutput(model, 1, "logits")
    G = theory.parameter_gradients(f, x, "features").double().numpy()
    by_gradient = _farthest_first_from_origin(G, 4)
    for row in got.itertuples():
        Z = noise_stability_embedding(f, x, K=6, generator=torch.Generator().manual_seed(11 + row.repeat),
                                      output="logits", zeta=1e-6, difference="finite64").double().numpy()
        picks = _farthest_first_from_origin(Z, 4)
        assert row.overlap == len(set(picks) & set(by_gradient)) / 4
        norms = np.linalg.norm(Z, axis=1)
        assert row.magnitude_ratio == pytest.approx(norms[picks[1:]].mean() / norms.mean(), rel=1e-12)
    with pytest.raises(ValueError, match=r"budget = 15 is invalid; allowed: integer in \[2, 14\]"):
        theory.kcenter_agreement(model, x, budget=15, **kw)
