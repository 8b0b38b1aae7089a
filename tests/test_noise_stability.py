"""Tests for the NoiseStability strategy against independent references.

References: explicit Jacobian matrices of a model that is linear in θ (Eq 1 is then exact),
``torch.func.jacrev`` Frobenius norms (Eq 6), a line-by-line transcription of the authors'
deep-copy-per-draw scoring, and a brute-force farthest-first traversal.
"""

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from alstudy import loop, models, strategies
from alstudy.data import Dataset
from alstudy.pool import Pool
from alstudy.strategies.noise_stability import noise_stability_embedding, perturbed_parameters


def gen(seed):
    return torch.Generator().manual_seed(seed)


class LinearF(models.ALModel):
    """f(x) = W x + b (linear in θ = (W, b)), g = a linear classifier."""

    def __init__(self, D=5, d=3, C=4, bias=True):
        super().__init__()
        self.lin = nn.Linear(D, d, bias=bias)
        self.head = nn.Linear(d, C)
        self._feature_dim = d

    def features(self, x):
        return self.lin(x)  # [N, d]


def linear_model(seed=0, **kw):
    torch.manual_seed(seed)
    return LinearF(**kw).double()


def tiny_cnn(seed=0, width=4):
    torch.manual_seed(seed)
    return models.build("small_cnn", (1, 16, 16), 5, width=width, hidden=16).eval()


def ref_kcenter(X, budget, centers=None):
    """Brute-force farthest-first (Gonzalez): full distance matrix, python loop, float64."""
    X = np.asarray(X, dtype=np.float64)
    D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))  # [N, N]
    if centers is None:
        mind = np.sqrt((X**2).sum(1))  # origin start
    else:
        C = np.asarray(centers, dtype=np.float64)
        mind = np.sqrt(((X[:, None] - C[None]) ** 2).sum(-1)).min(1)
    picks = []
    for _ in range(budget):
        i = int(np.argmax(np.where(np.isin(np.arange(len(X)), picks), -np.inf, mind)))
        picks.append(i)
        mind = np.minimum(mind, D[i])
    return picks


def rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


# --------------------------------------------------------------------------- #
# Eq 1-2 on a model linear in θ: Δz(k) = J u(k) exactly
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("difference", ["finite", "finite64", "jvp"])
def test_linear_model_equals_jacobian_times_direction(difference):
    D, d, K, zeta, seed = 5, 3, 4, 1e-3, 7
    model = linear_model(D=D, d=d)
    x = torch.randn(6, D, dtype=torch.float64, generator=gen(1))
    emb = noise_stability_embedding(model, x, K=K, zeta=zeta, output="features",
                                    difference=difference, generator=gen(seed))
    assert emb.shape == (6, K * d)
    W, b = model.lin.weight.detach(), model.lin.bias.detach()
    n = W.numel() + b.numel()
    # independent reconstruction of the draws: one number from the generator seeds the noise,
    # then one standard Gaussian per perturbed tensor (named_parameters order), float64
    noise = gen(int(torch.randint(0, 2**62, (1,), generator=gen(seed))))
    for k in range(K):
        g = torch.cat([torch.randn(W.shape, generator=noise, dtype=torch.float64).flatten(),
                       torch.randn(b.shape, generator=noise, dtype=torch.float64)])  # [n]
        u = g / g.norm()  # unit direction over all perturbed scalars
        for i in range(x.shape[0]):
            J = torch.cat([torch.kron(torch.eye(d, dtype=torch.float64), x[i][None]),
                           torch.eye(d, dtype=torch.float64)], dim=1)  # [d, n] explicit Jacobian
            # Eq 1: Δz = J Δθ / (ζ‖θ‖) = J u; Eq 2: times sqrt(n/K)
            expected = math.sqrt(n / K) * (J @ u)  # [d]
            got = emb[i, k * d:(k + 1) * d]
            torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-9)
    # the magnitude scale is free of zeta for a linear model
    emb2 = noise_stability_embedding(model, x, K=K, zeta=0.3, output="features",
                                     difference=difference, generator=gen(seed))
    torch.testing.assert_close(emb2, emb, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("noise_norm,include_bias", [("global", True), ("global", False),
                                                     ("per_tensor", True), ("per_tensor", False)])
def test_applied_noise_norms_recovered_from_identity_inputs(noise_norm, include_bias):
    """With f(x) = W x + b, inputs e_j and 0 reveal exactly the ΔW and Δb that were applied."""
    D, d, K, zeta = 4, 3, 5, 1e-3
    model = linear_model(seed=3, D=D, d=d)
    W, b = model.lin.weight.detach().clone(), model.lin.bias.detach().clone()
    x = torch.cat([torch.eye(D, dtype=torch.float64), torch.zeros(1, D, dtype=torch.float64)])
    emb = noise_stability_embedding(model, x, K=K, zeta=zeta, noise_norm=noise_norm,
                                    include_bias=include_bias, output="features",
                                    generator=gen(0))  # [D+1, K*d]
    n = W.numel() + (b.numel() if include_bias else 0)
    theta_sq = float(W.square().sum()) + (float(b.square().sum()) if include_bias else 0.0)
    c = math.sqrt(n / K) / (zeta * math.sqrt(theta_sq))  # Eq 1-2 factor
    for k in range(K):
        blk = emb[:, k * d:(k + 1) * d] / c  # [D+1, d]
        db = blk[D]  # Δz(0) = Δb
        dW = (blk[:D] - db).T  # [d, D]: Δz(e_j) − Δz(0) = ΔW[:, j]
        if not include_bias:
            assert torch.equal(blk[D], torch.zeros(d, dtype=torch.float64))  # bias untouched
        if noise_norm == "global":
            total = math.sqrt(float(dW.square().sum() + db.square().sum()))
            assert total == pytest.approx(zeta * math.sqrt(theta_sq), rel=1e-8)
        else:
            assert float(dW.norm()) == pytest.approx(zeta * float(W.norm()), rel=1e-8)
            if include_bias:
                assert float(db.norm()) == pytest.approx(zeta * float(b.norm()), rel=1e-8)
    assert torch.equal(model.lin.weight, W) and torch.equal(model.lin.bias, b)


# --------------------------------------------------------------------------- #
# Eq 6: E‖Δẑ(x)‖² = ‖J_θ(x)‖_F²
# --------------------------------------------------------------------------- #
def test_squared_norm_approaches_jacobian_frobenius_norm():
    torch.manual_seed(0)
    model = models.build("mlp", (3,), 1, hidden=6).double().eval()
    x = torch.randn(6, 3, dtype=torch.float64, generator=gen(2))
    params = {k: v.detach() for k, v in perturbed_parameters(model, "features").items()}

    def f(p, xi):
        return torch.func.functional_call(model.mlp, {k.removeprefix("mlp."): v
                                                      for k, v in p.items()}, (xi[None],))[0]

    jac_sq = torch.stack([sum(j.square().sum() for j in torch.func.jacrev(f)(params, xi).values())
                          for xi in x])  # [N] ‖J_θ(x)‖_F² by reverse-mode AD
    errs = {}
    for K in (10, 2000):
        emb = noise_stability_embedding(model, x, K=K, zeta=1e-6, output="features",
                                        generator=gen(K), batch_size=64)
        errs[K] = float(((emb.square().sum(1) - jac_sq).abs() / jac_sq).mean())
    assert errs[2000] < 0.08
    assert errs[2000] < errs[10] / 3


# --------------------------------------------------------------------------- #
# parameters untouched, numerics of the difference modes
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("difference", ["finite", "finite64", "jvp"])
@pytest.mark.parametrize("noise_norm,perturb", [("global", "features"), ("per_tensor", "all")])
def test_parameters_bit_identical_after_scoring(difference, noise_norm, perturb):
    model = tiny_cnn().train()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    x = torch.randn(10, 1, 16, 16, generator=gen(0))
    noise_stability_embedding(model, x, K=3, zeta=1e-2, noise_norm=noise_norm, perturb=perturb,
                              difference=difference, generator=gen(0), batch_size=4)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training  # training flag restored


def test_parameters_restored_when_scoring_fails():
    model = tiny_cnn()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    calls = {"n": 0}
    forward = model.forward

    def failing(x):
        calls["n"] += 1
        if calls["n"] == 4:  # inside the second perturbed pass
            raise RuntimeError("boom")
        return forward(x)

    model.forward = failing
    with pytest.raises(RuntimeError, match="boom"):
        noise_stability_embedding(model, torch.randn(6, 1, 16, 16), K=3, output="logits",
                                  generator=gen(0), batch_size=3)
    assert all(torch.equal(before[k], model.state_dict()[k]) for k in before)


def test_finite64_matches_jvp_and_float32_is_worse_at_small_zeta():
    model = tiny_cnn(seed=1)
    x = torch.randn(20, 1, 16, 16, generator=gen(3))
    kw = dict(K=4, zeta=1e-6, output="logits", generator=None)
    emb = {m: noise_stability_embedding(model, x, **{**kw, "generator": gen(5)}, difference=m)
           for m in ("finite", "finite64", "jvp")}
    assert emb["finite64"].dtype == torch.float64 and emb["finite"].dtype == torch.float32
    assert rel(emb["finite64"], emb["jvp"]) < 1e-4  # truncation O(ζ) + float32 jvp rounding
    assert rel(emb["finite"], emb["jvp"]) > 1e-2  # cancellation in float32
    assert rel(emb["finite"], emb["jvp"]) > 100 * rel(emb["finite64"], emb["jvp"])


# --------------------------------------------------------------------------- #
# official variant = the authors' deep-copy-per-draw scoring (up to Eq 1-2's constant)
# --------------------------------------------------------------------------- #
def official_scoring(model, x, deltas):
    """Transcription of the authors' loop: copy the model per draw, add noise to every module's
    ``weight``, compare softmax outputs, divide each row by ‖clean softmax row‖, concatenate."""
    model.eval()
    with torch.no_grad():
        clean = torch.softmax(model(x), 1)
        diffs = []
        for delta in deltas:
            noisy = copy.deepcopy(model).eval()
            for name, m in noisy.named_modules():
                if hasattr(m, "weight") and isinstance(m.weight, torch.Tensor):
                    m.weight.add_(delta[f"{name}.weight"].to(m.weight.dtype))
            diff = torch.softmax(noisy(x), 1) - clean
            for j in range(diff.shape[0]):
                diff[j, :] /= clean[j].norm()
            diffs.append(diff)
    return torch.cat(diffs, 1)


@pytest.mark.parametrize("name,opts,shape", [("small_cnn", {"width": 4, "hidden": 16}, (1, 16, 16)),
                                             ("resnet18", {"width": 2}, (1, 8, 8))])
def test_official_variant_matches_authors_scoring(name, opts, shape):
    torch.manual_seed(0)
    model = models.build(name, shape, 5, **opts).double().eval()
    x = torch.randn(7, *shape, dtype=torch.float64, generator=gen(1))
    strat = strategies.build("noise_stability", variant="official", K=3)
    o = strat.opts
    assert (o["noise_norm"], o["perturb"], o["include_bias"], o["row_norm"], o["candidates"]) == \
        ("per_tensor", "all", False, "clean_output", 1000)
    emb, deltas = noise_stability_embedding(
        model, x, K=3, zeta=o["zeta"], noise_norm=o["noise_norm"], perturb=o["perturb"],
        include_bias=o["include_bias"], output="probs", row_norm=o["row_norm"],
        generator=gen(4), return_directions=True)
    for delta in deltas:  # per-tensor magnitude ζ‖W‖_F
        for pname, p in model.named_parameters():
            if pname.endswith("weight"):
                assert float(delta[pname].norm()) == pytest.approx(1e-3 * float(p.detach().norm()),
                                                                  rel=1e-9)
            else:
                assert pname not in delta
    ref = official_scoring(model, x, deltas)
    params = perturbed_parameters(model, "all", include_bias=False)
    n = sum(p.numel() for p in params.values())
    theta = math.sqrt(sum(float(p.detach().square().sum()) for p in params.values()))
    torch.testing.assert_close(emb, ref * math.sqrt(n / 3) / (1e-3 * theta), rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------- #
# options and errors
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("option,value", [("K", 0), ("zeta", 0), ("zeta", -1), ("zeta", math.inf),
                                          ("output", "softmax"), ("noise_norm", "layer"),
                                          ("selector", "greedy"), ("difference", "central"),
                                          ("kcenter_start", "random")])
def test_bad_strategy_options_name_the_option(option, value):
    with pytest.raises(ValueError, match=f"option '{option}' = "):
        strategies.build("noise_stability", **{option: value})


@pytest.mark.parametrize("option,value", [("K", 0), ("K", 2.5), ("zeta", 0), ("zeta", -1),
                                          ("output", "softmax"), ("noise_norm", "layer"),
                                          ("perturb", "head"), ("row_norm", "l1"),
                                          ("difference", "central"), ("batch_size", 0)])
def test_bad_embedding_arguments_name_the_option(option, value):
    with pytest.raises(ValueError, match=f"option '{option}' = "):
        noise_stability_embedding(tiny_cnn(), torch.randn(2, 1, 16, 16), **{option: value})


def test_cross_option_and_task_errors():
    with pytest.raises(ValueError, match="'kcenter_start'.*'selector'"):
        strategies.build("noise_stability", kcenter_start="labeled", selector="kmeanspp")
    reg = models.build("mlp", (3,), 1, hidden=4)
    with pytest.raises(ValueError, match="'output' = 'probs'"):
        noise_stability_embedding(reg, torch.randn(3, 3), output="probs")
    with pytest.raises(ValueError, match="'perturb'"):
        noise_stability_embedding(nn.Sequential(nn.Linear(2, 2)), torch.randn(3, 2),
                                  output="logits", perturb="features")


def test_variants_keep_their_identity():
    assert strategies.build("noise_stability_m").opts["selector"] == "topk_norm"
    assert strategies.build("noise_stability_m", variant="official").opts["selector"] == "topk_norm"
    assert strategies.build("noise_stability_d").opts["unit_length"] is True
    assert strategies.build("noise_stability_d", variant="official").opts["unit_length"] is True
    official = strategies.build("noise_stability", variant="official", noise_norm="global")
    assert official.opts["noise_norm"] == "global" and official.opts["perturb"] == "all"
    paper = strategies.build("noise_stability").opts
    assert (paper["K"], paper["zeta"], paper["noise_norm"], paper["perturb"]) == \
        (30, 1e-3, "global", "features")


# --------------------------------------------------------------------------- #
# selection through a Pool
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def digits_setup():
    from alstudy import data

    ds = data.load("digits", max_train=150)
    torch.manual_seed(0)
    model = models.build("resnet18", ds.input_shape, 10, width=2).eval()
    pool = Pool(ds.n_train, torch.arange(0, 150, 10))  # 15 labeled
    return ds, model, pool


@pytest.mark.parametrize("name,opts", [("noise_stability", {}),
                                       ("noise_stability", {"kcenter_start": "labeled"}),
                                       ("noise_stability_m", {}), ("noise_stability_d", {}),
                                       ("noise_stability", {"selector": "kmeanspp"}),
                                       ("noise_stability", {"selector": "kdpp", "K": 5})])
def test_select_matches_reference_selection(digits_setup, name, opts):
    ds, model, pool = digits_setup
    strat = strategies.build(name, **{"K": 3, "candidates": "all", **opts})
    picks = strat.select(model, ds, pool, 12, gen(11))
    assert picks.shape == (12,) and picks.unique().numel() == 12
    assert not bool(pool.mask[picks].any())  # unlabeled only
    assert torch.equal(strat.select(model, ds, pool, 12, gen(11)), picks)  # reproducible
    unl, lab = pool.unlabeled, pool.labeled
    if strat.opts["selector"] in ("kmeanspp", "kdpp"):
        return
    labeled_start = strat.opts["kcenter_start"] == "labeled"
    xs = torch.cat([ds.x_train[unl], ds.x_train[lab]]) if labeled_start else ds.x_train[unl]
    emb = noise_stability_embedding(model, xs, K=3, output="probs", generator=gen(11)).double()
    if strat.opts["unit_length"]:
        emb = emb / emb.norm(dim=1, keepdim=True)
    M = unl.numel()
    if strat.opts["selector"] == "topk_norm":
        ref = torch.argsort(emb.norm(dim=1), descending=True)[:12].tolist()
    else:
        ref = ref_kcenter(emb[:M], 12, emb[M:] if labeled_start else None)
    assert picks.tolist() == unl[ref].tolist()


def farthest_first_loops(X, centres, budget):
    """Gonzalez farthest-first as a plain double loop in float64 numpy: every pick is the
    point whose distance to its nearest centre is largest (first such point on ties)."""
    X = np.asarray(X, dtype=np.float64)
    centres = [np.asarray(c, dtype=np.float64) for c in centres]
    picks = []
    for _ in range(budget):
        best, best_d = None, -1.0
        for i in range(len(X)):
            if i in picks:
                continue
            d = min(math.sqrt(float(((X[i] - c) ** 2).sum())) for c in centres)
            if d > best_d:
                best, best_d = i, d
        picks.append(best)
        centres.append(X[best])
    return picks


@pytest.mark.parametrize("variant", ["paper", "official"])
def test_ns_d_starts_from_the_labeled_set_and_matches_brute_force(digits_setup, variant):
    ds, model, pool = digits_setup
    strat = strategies.build("noise_stability_d", K=30, candidates="all", variant=variant)
    picks = strat.select(model, ds, pool, 12, gen(5))
    unl, lab = pool.unlabeled, pool.labeled
    emb = strat.embedding(model, torch.cat([ds.x_train[unl], ds.x_train[lab]]), gen(5),
                          ds.task).double()  # the same noise draws as select()
    emb = emb / emb.norm(dim=1, keepdim=True)  # [M + L, K*C], unit rows
    M = unl.numel()
    ref = farthest_first_loops(emb[:M].numpy(), emb[M:].numpy(), 12)
    assert picks.tolist() == unl[ref].tolist()
    assert strat.opts["kcenter_start"] == "labeled"  # the stated default, in both variants


def test_ns_d_without_labeled_examples_starts_at_the_first_candidate(digits_setup):
    ds, model, _ = digits_setup
    pool = Pool(ds.n_train)  # nothing labeled yet
    strat = strategies.build("noise_stability_d", K=3, candidates="all")
    picks = strat.select(model, ds, pool, 5, gen(2))
    emb = strat.embedding(model, ds.x_train, gen(2), ds.task).double()
    emb = emb / emb.norm(dim=1, keepdim=True)
    assert picks.tolist() == [0] + farthest_first_loops(emb.numpy(), [emb[0].numpy()], 4)


def test_origin_start_on_unit_rows_warns():
    with pytest.warns(UserWarning, match="origin.*unit"):
        strategies.build("noise_stability_d", kcenter_start="origin")
    with pytest.warns(UserWarning, match="origin.*unit"):
        strategies.build("noise_stability", unit_length=True)


def test_select_errors_and_seeds(digits_setup):
    ds, model, pool = digits_setup
    strat = strategies.build("noise_stability", K=2, candidates=20)
    with pytest.raises(ValueError, match="budget 21 exceeds the 20"):
        strat.select(model, ds, pool, 21, gen(0))
    a = strat.select(model, ds, pool, 5, gen(1))
    assert torch.equal(a, strat.select(model, ds, pool, 5, gen(1)))
    s1 = strat.score(model, ds.x_train[:8], generator=gen(1))
    s2 = strat.score(model, ds.x_train[:8], generator=gen(2))
    assert s1.shape == (8,) and not torch.equal(s1, s2)


def test_regression_uses_features():
    torch.manual_seed(0)
    x = torch.randn(40, 6)
    ds = Dataset("toy", "regression", x, x.sum(1), x[:5], x[:5].sum(1), None, "random")
    model = models.build("mlp", (6,), 1, hidden=8).eval()
    strat = strategies.build("noise_stability", K=2)
    assert strat.embedding(model, x, gen(0), "regression").shape == (40, 2 * 8)
    picks = strat.select(model, ds, Pool(40, torch.arange(5)), 4, gen(0))
    assert picks.unique().numel() == 4 and int(picks.min()) >= 5
    with pytest.raises(ValueError, match="'output' = 'probs'"):
        strategies.build("noise_stability", output="probs").select(
            model, ds, Pool(40, torch.arange(5)), 4, gen(0))


def test_loop_integration(tmp_path):
    df = loop.run(dict(
        experiment="ns", dataset="digits", max_train=200, max_test=100, model="resnet18",
        model_options={"width": 2}, strategies=["noise_stability", "noise_stability_m",
                                                "noise_stability_d"],
        strategy_options={name: {"K": 2} for name in
                          ("noise_stability", "noise_stability_m", "noise_stability_d")},
        seeds=[0], initial_size=20, budget=10, cycles=2, candidates=60, epochs=1,
        threads=1, results_dir=str(tmp_path), progress=False))
    acc = df[df.metric == "accuracy"]
    assert set(acc.strategy) == {"noise_stability", "noise_stability_m", "noise_stability_d"}
    assert sorted(acc.n_labeled.unique()) == [20, 30, 40]
