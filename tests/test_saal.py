"""SAAL scores (batched, both implementations) against a plain per-instance reference."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from alstudy import data as data_mod
from alstudy import loop, models, strategies
from alstudy.persample import _unfold, fast_path_problem, perturbed_losses
from alstudy.pool import Pool
from alstudy.selection import kmeanspp
from alstudy.strategies.saal import (_kmeanspp_scaled_embeddings, gradient_embedding_factors,
                                     saal_scores)


# ----------------------------------------------------------------------------- reference


def reference_scores(model, x, rho, perturbation="sam", eta=0.0, steps=1):
    """One candidate at a time: backward, move the parameters, forward, restore.

    Returns ``[N, 3]``: best perturbed loss, clean loss, plain gradient norm (float64).
    ``steps > 1``: ε̃ ← Π_ρ(ε̃ + ρ T g/‖T g‖), ε = T ε̃, best loss over the iterates.
    """
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for i in range(x.shape[0]):
        xi = x[i:i + 1]
        out = model(xi)
        y = out.argmax(1)
        clean = F.cross_entropy(out, y)
        g = torch.autograd.grad(clean, params)
        plain = torch.sqrt(sum((gg ** 2).sum() for gg in g))
        t = [p.detach().abs() + eta if perturbation == "asam" else torch.ones_like(p) for p in params]
        saved = [p.detach().clone() for p in params]
        tilde = [torch.zeros_like(p) for p in params]
        best = -float("inf")
        for step in range(steps):
            tg = [ti * gi for ti, gi in zip(t, g)]
            norm = torch.sqrt(sum((v ** 2).sum() for v in tg))
            tilde = [e + rho * v / (norm + 1e-12) for e, v in zip(tilde, tg)]
            tn = torch.sqrt(sum((v ** 2).sum() for v in tilde))
            tilde = [v * min(1.0, rho / (float(tn) + 1e-12)) for v in tilde]
            with torch.no_grad():
                for p, s, ti, e in zip(params, saved, t, tilde):
                    p.copy_(s + ti * e)
            loss = F.cross_entropy(model(xi), y)
            best = max(best, loss.item())
            if step + 1 < steps:
                g = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for p, s in zip(params, saved):
                    p.copy_(s)
        rows.append([best, clean.item(), plain.item()])
    return torch.tensor(rows, dtype=x.dtype)


def _bn_statistics(model, shape, dtype):
    """Give BatchNorm layers non-trivial running statistics and affine parameters."""
    g = torch.Generator().manual_seed(1)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(16, *shape, generator=g, dtype=dtype))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=g, dtype=dtype))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g, dtype=dtype))
    model.eval()
    return model


# (input shape, model options, dtype): float64 where it is cheap; ResNet-18 in float32 (CPU
# float64 convolutions are slow) where 1e-4 relative agreement is still far above rounding.
MODELS = {
    "small_cnn": ((1, 28, 28), {}, torch.float64),
    "resnet18": ((3, 32, 32), {"width": 8}, torch.float32),
}


def _model(name, dtype=None, seed=0):
    shape, opts, default = MODELS[name]
    dtype = dtype or default
    torch.manual_seed(seed)
    m = models.build(name, shape, 10, **opts).to(dtype)
    return _bn_statistics(m, shape, dtype), shape


@pytest.fixture(scope="module")
def nets():
    out = {}
    for name in MODELS:
        m, shape = _model(name)
        x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(2), dtype=MODELS[name][2])
        out[name] = (m, x)
    return out


# ----------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("perturbation", ["sam", "asam"])
def test_batched_scores_match_per_instance_reference(nets, name, perturbation):
    model, x = nets[name]
    ref = reference_scores(model, x, 0.3, perturbation)
    assert (ref[:, 0] > ref[:, 1]).all()  # the perturbation does change the loss
    for method in ["fast", "functorch"]:
        res = perturbed_losses(model, x, rho=0.3, perturbation=perturbation, method=method, chunk_size=3)
        assert res.method == method
        torch.testing.assert_close(res.perturbed, ref[:, 0], rtol=1e-4, atol=0)
        torch.testing.assert_close(res.clean, ref[:, 1], rtol=1e-4, atol=0)
        torch.testing.assert_close(res.grad_norm, ref[:, 2], rtol=1e-4, atol=0)


def test_float32_scores_match_float64_reference():
    model, shape = _model("small_cnn", torch.float32)
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(3))
    ref = reference_scores(model.double(), x.double(), 0.05, "asam")
    model.float()
    for method in ["fast", "functorch"]:
        s = saal_scores(model, x, perturbation="asam", method=method)
        torch.testing.assert_close(s.double(), ref[:, 0], rtol=1e-4, atol=0)


@pytest.mark.parametrize("perturbation", ["sam", "asam"])
def test_multi_step_ascent_matches_reference_and_dominates_one_step(nets, perturbation):
    model, x = nets["small_cnn"]
    ref = reference_scores(model, x[:3], 0.5, perturbation, eta=0.01, steps=3)
    one = perturbed_losses(model, x[:3], rho=0.5, perturbation=perturbation, eta=0.01)
    for method in ["fast", "functorch"]:
        res = perturbed_losses(model, x[:3], rho=0.5, perturbation=perturbation, eta=0.01,
                               ascent_steps=3, method=method, chunk_size=2)
        torch.testing.assert_close(res.perturbed, ref[:, 0], rtol=1e-4, atol=0)
        assert (res.perturbed >= one.perturbed - 1e-12).all()


def test_frozen_parameters_and_batchnorm1d_match_reference():
    """Only trainable parameters are perturbed; BatchNorm1d (eval) and a linear layer whose
    weight is frozen but bias is not go through the fast path too."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 8),
                          nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).double()
    model[0].bias.requires_grad_(False)
    model[3].weight.requires_grad_(False)
    model.train()
    with torch.no_grad():
        model(torch.randn(32, 2, 6, 6, dtype=torch.float64))
    x = torch.randn(5, 2, 6, 6, dtype=torch.float64)
    for perturbation in ["sam", "asam"]:
        ref = reference_scores(model, x, 0.4, perturbation, eta=0.1)
        for method in ["fast", "functorch"]:
            res = perturbed_losses(model, x, rho=0.4, perturbation=perturbation, eta=0.1, method=method)
            torch.testing.assert_close(res.perturbed, ref[:, 0], rtol=1e-4, atol=0)


def test_vgg_with_inplace_relu_matches_reference():
    torch.manual_seed(0)
    model = _bn_statistics(models.build("vgg16", (3, 32, 32), 10, width=4), (3, 32, 32),
                           torch.float32)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    ref = reference_scores(model, x, 0.3, "sam")
    res = perturbed_losses(model, x, rho=0.3, method="fast")
    torch.testing.assert_close(res.perturbed, ref[:, 0], rtol=1e-4, atol=0)


# ----------------------------------------------------------------------------- properties


def test_rho_zero_gives_the_clean_loss(nets):
    model, x = nets["small_cnn"]
    with torch.no_grad():
        out = model(x)
    clean = F.cross_entropy(out, out.argmax(1), reduction="none")
    for method in ["fast", "functorch"]:
        s = saal_scores(model, x, rho=0.0, perturbation="asam", method=method)
        torch.testing.assert_close(s, clean, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("perturbation", ["sam", "asam"])
def test_convex_model_score_is_at_least_loss_plus_first_order_term(perturbation):
    """For multinomial logistic regression ℓ(θ) is convex, so ℓ(θ+ε) ≥ ℓ(θ) + gᵀε with
    gᵀε = ρ‖g‖ (SAM) or ρ‖Tg‖ (ASAM): the score is at least clean + that term."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4)).double()
    x = torch.randn(30, 3, 4, dtype=torch.float64)
    s, det = saal_scores(model, x, rho=0.5, perturbation=perturbation, return_details=True)
    params = list(model.parameters())
    for i in range(x.shape[0]):
        g = torch.autograd.grad(F.cross_entropy(model(x[i:i + 1]), det.labels[i:i + 1]), params)
        t = [p.detach().abs() if perturbation == "asam" else torch.ones_like(p) for p in params]
        first_order = 0.5 * torch.sqrt(sum(((ti * gi) ** 2).sum() for ti, gi in zip(t, g)))
        assert s[i] >= det.clean[i] + first_order - 1e-10
        assert s[i] >= det.clean[i]


def test_diff_is_max_minus_clean_and_labels_are_argmax(nets):
    model, x = nets["small_cnn"]
    smax, det = saal_scores(model, x, score="max", return_details=True)
    sdiff = saal_scores(model, x, score="diff")
    torch.testing.assert_close(sdiff, smax - det.clean, rtol=0, atol=1e-12)
    with torch.no_grad():
        assert torch.equal(det.labels, model(x).argmax(1))


def test_scoring_leaves_parameters_bit_identical_and_restores_mode(nets):
    model, x = nets["resnet18"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    try:
        for method in ["fast", "functorch"]:
            saal_scores(model, x[:3], perturbation="asam", ascent_steps=2, method=method)
            assert model.training
    finally:
        model.eval()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())
    assert "forward" not in vars(model.stem[0])  # the fast path's patches are removed


def test_unsupported_models_fall_back_to_functorch_and_still_match():
    class Twice(nn.Module):  # the same linear layer runs twice per forward
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(6, 6)
            self.out = nn.Linear(6, 3)

        def forward(self, x):
            return self.out(torch.tanh(self.lin(torch.tanh(self.lin(x)))))

    torch.manual_seed(0)
    x = torch.randn(5, 6, dtype=torch.float64)
    grouped = nn.Sequential(nn.Linear(6, 8), nn.GroupNorm(2, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    assert "GroupNorm" in fast_path_problem(grouped)
    for model in [grouped, Twice().double()]:
        ref = reference_scores(model, x, 0.2)
        res = perturbed_losses(model, x, rho=0.2)  # auto
        assert res.method == "functorch"
        torch.testing.assert_close(res.perturbed, ref[:, 0], rtol=1e-4, atol=0)
        with pytest.raises(ValueError, match="fast"):
            perturbed_losses(model, x, method="fast")


@pytest.mark.parametrize("k,s,p,d", [(5, 1, 0, 1), (3, 2, 1, 1), (3, 1, 2, 2), (1, 2, 0, 1)])
def test_strided_unfold_equals_torch_unfold(k, s, p, d):
    conv = nn.Conv2d(3, 4, k, stride=s, padding=p, dilation=d)
    a = torch.randn(2, 3, 9, 11)
    assert torch.equal(_unfold(a, conv), F.unfold(a, k, dilation=d, padding=p, stride=s))


def test_bad_options_raise_clear_errors(nets):
    model, x = nets["small_cnn"]
    with pytest.raises(ValueError, match="rho"):
        saal_scores(model, x, rho=-0.1)
    with pytest.raises(ValueError, match="perturbation"):
        saal_scores(model, x, perturbation="adam")
    with pytest.raises(ValueError, match="score"):
        saal_scores(model, x, score="min")
    with pytest.raises(ValueError, match="ascent_steps"):
        saal_scores(model, x, ascent_steps=0)
    with pytest.raises(ValueError, match=r"'rho'.*\[0\.0, inf\]"):
        strategies.build("saal", rho=-1.0)
    with pytest.raises(ValueError, match="unknown option"):
        strategies.build("saal", rhoo=0.1)
    with pytest.raises(ValueError, match="'diversity'"):
        strategies.build("saal", diversity="badge")
    with pytest.raises(ValueError, match="classification"):
        strategies.build("saal").select(model, SimpleNamespace(task="regression"), None, 1, None)


def test_official_variant_presets_the_authors_choices():
    s = strategies.build("saal", variant="official")
    assert (s.opts["perturbation"], s.opts["diversity"], s.opts["eta"]) == ("asam", "kmeans_scores", 0.0)
    assert strategies.build("saal", variant="official", perturbation="sam").opts["perturbation"] == "sam"
    assert strategies.build("saal").opts["candidates"] == 2000


# ----------------------------------------------------------------------------- selection


@pytest.fixture(scope="module")
def digits():
    d = data_mod.load("digits")
    torch.manual_seed(0)
    model = models.build("small_cnn", d.input_shape, d.num_classes, width=4, hidden=16).eval()
    pool = Pool(d.n_train, torch.arange(0, 40))
    return d, model, pool


@pytest.mark.parametrize("diversity", ["none", "kmeans_scores", "kmeans_gradients"])
def test_select_returns_distinct_unlabeled_candidates_reproducibly(digits, diversity):
    d, model, pool = digits
    strat = strategies.build("saal", candidates=150, diversity=diversity)
    cands = strat.candidate_indices(pool, torch.Generator().manual_seed(7))
    picks = strat.select(model, d, pool, 12, torch.Generator().manual_seed(7))
    again = strat.select(model, d, pool, 12, torch.Generator().manual_seed(7))
    assert torch.equal(picks, again)
    assert picks.numel() == 12 == picks.unique().numel()
    assert set(picks.tolist()) <= set(cands.tolist())
    assert not set(picks.tolist()) & set(pool.labeled.tolist())
    scores = saal_scores(model, d.x_train[cands])
    if diversity == "none":  # the top 12 scores
        assert set(picks.tolist()) == set(cands[scores.argsort(descending=True)[:12]].tolist())
    else:  # k-means++ seeding starts from the highest score
        assert int(picks[0]) == int(cands[scores.argmax()])


def test_gradient_embedding_seeding_equals_kmeanspp_on_explicit_embeddings(digits):
    d, model, _ = digits
    x = d.x_train[:60]
    scores, det = saal_scores(model, x, return_details=True)
    delta, z = gradient_embedding_factors(model, x, det.labels)
    # explicit BADGE embedding: gradient of the loss w.r.t. the last linear weight, per sample
    last = model.head[-1]
    for i in range(3):
        model.zero_grad()
        F.cross_entropy(model(x[i:i + 1]), det.labels[i:i + 1]).backward()
        torch.testing.assert_close(torch.outer(delta[i], z[i]).float(), last.weight.grad,
                                   rtol=1e-4, atol=1e-6)
    model.zero_grad(set_to_none=True)
    emb = torch.einsum("nc,nd->ncd", delta, z).flatten(1)  # [N, C*d]
    emb = scores.double()[:, None] * emb / emb.norm(dim=1, keepdim=True)
    want = kmeanspp(emb, 10, torch.Generator().manual_seed(3), first="max_norm")
    got = _kmeanspp_scaled_embeddings(delta, z, scores, 10, torch.Generator().manual_seed(3))
    assert torch.equal(got, want)


def test_loop_runs_saal_with_sam_training(tmp_path):
    frame = loop.run(dict(dataset="digits", model="small_cnn", model_options={"width": 4, "hidden": 16},
                          strategies={"saal_official": {"strategy": "saal", "variant": "official",
                                                        "candidates": 60}},
                          seeds=[0], initial_size=20, budget=5, cycles=1, epochs=1,
                          optimizer="sam", sam_base="sgd", lr=0.05, max_train=300, max_test=100,
                          results_dir=str(tmp_path), progress=False))
    assert set(frame["cycle"]) == {0, 1}
    assert frame.loc[frame.metric == "accuracy", "n_labeled"].tolist() == [20, 25]
