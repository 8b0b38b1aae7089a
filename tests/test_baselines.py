"""Baseline strategies (uncertainty, MC dropout, core-set, BADGE, QBC scores) against
independent references: numpy formulas, naive loops and autograd."""

import math
from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

from alstudy import models, selection
from alstudy.data import Dataset
from alstudy.pool import Pool
from alstudy.strategies import build
from alstudy.strategies.badge import gradient_embedding, gradient_factors
from alstudy.strategies.mc_dropout import bald, mc_dropout_probs, mc_entropy, variation_ratio
from alstudy.strategies.qbc import committee_probs, consensus_kl, vote_entropy

CLASSIFICATION_ONLY = ["entropy", "margin", "least_confidence", "bald", "mc_entropy",
                       "variation_ratio", "badge", "qbc", "ll4al", "vaal"]


def gen(seed):
    return torch.Generator().manual_seed(seed)




@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return models.build("small_cnn", (1, 28, 28), 10, width=4, hidden=16, dropout=0.5).eval()


def np_softmax(logits):
    z = np.exp(logits - logits.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def np_entropy(p):
    return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)


# --------------------------------------------------------------------------- #
# single-pass uncertainty
# --------------------------------------------------------------------------- #
def test_softmax_scores_match_numpy_formulas():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(40, 6)) * 3
    logits[0] = [2.0, 2.0, -1.0, 0.0, 0.0, 0.0]  # tie between the two best: margin 0
    x = torch.tensor(logits, dtype=torch.float32)
    p = np_softmax(logits.astype(np.float32).astype(np.float64))
    srt = np.sort(p, axis=1)
    expected = {
        "entropy": np_entropy(p),
        "margin": -(srt[:, -1] - srt[:, -2]),
        "least_confidence": 1.0 - srt[:, -1],
    }
    for name, ref in expected.items():
        got = build(name).score(nn.Identity(), x).numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12, err_msg=name)
    assert build("margin").score(nn.Identity(), x)[0] == 0.0


def test_softmax_scores_rank_the_uniform_prediction_first():
    x = torch.tensor([[5.0, 0, 0], [0.0, 0, 0], [1.0, 0, 0]])
    for name in ("entropy", "margin", "least_confidence"):
        assert int(build(name).score(nn.Identity(), x).argmax()) == 1, name


# --------------------------------------------------------------------------- #
# MC dropout
# --------------------------------------------------------------------------- #
def test_mc_scores_closed_form_on_fixed_samples():
    rng = np.random.default_rng(1)
    T, M, C = 9, 25, 4
    probs = rng.dirichlet(np.ones(C) * 0.7, size=(T, M))  # [T, M, C]
    probs[:, 0] = probs[0, 0]  # identical passes: BALD 0, variation ratio 0
    t = torch.tensor(probs)
    mean = probs.mean(0)
    np.testing.assert_allclose(bald(t).numpy(), np_entropy(mean) - np_entropy(probs).mean(0),
                               atol=1e-12)
    np.testing.assert_allclose(mc_entropy(t).numpy(), np_entropy(mean), atol=1e-12)
    vr = [1 - Counter(probs[:, i].argmax(-1).tolist()).most_common(1)[0][1] / T for i in range(M)]
    np.testing.assert_allclose(variation_ratio(t).numpy(), vr, atol=1e-12)
    assert abs(float(bald(t)[0])) < 1e-12 and float(variation_ratio(t)[0]) == 0.0
    assert (bald(t) > -1e-12).all()


def test_mc_strategies_score_through_from_probs(cnn, mnist):
    x = mnist.x_train[:20]
    for name, fn in [("bald", bald), ("mc_entropy", mc_entropy), ("variation_ratio", variation_ratio)]:
        s = build(name, T=6)
        probs = mc_dropout_probs(cnn, x, 6, gen(4))
        torch.testing.assert_close(s.score(cnn, x, generator=gen(4)), fn(probs), rtol=0, atol=0)


@pytest.mark.parametrize("model_name,opts", [("small_cnn", {"width": 4, "hidden": 16, "dropout": 0.5}),
                                             ("vgg16", {"width": 4, "dropout": 0.3})])
def test_batched_mc_dropout_equals_sequential_passes(model_name, opts, mnist):
    torch.manual_seed(1)
    model = models.build(model_name, (1, 28, 28), 10, **opts).double().eval()
    x = mnist.x_train[:23].double()
    sequential = mc_dropout_probs(model, x, 8, gen(5), batch_size=7, batched=False)
    assert sequential.shape == (8, 23, 10)
    assert (sequential.std(0) > 1e-6).any(), "passes must differ"
    for replicate in ("first_dropout", "input"):
        for bs in (40, 1000):  # 5 inputs x 8 replicas per forward; all inputs at once
            batched = mc_dropout_probs(model, x, 8, gen(5), batch_size=bs, replicate=replicate)
            torch.testing.assert_close(batched, sequential, rtol=0, atol=1e-13)
    assert not torch.allclose(sequential, mc_dropout_probs(model, x, 8, gen(6)))


class _DropoutProbe(models.ALModel):
    """features = x, head = Dropout(p) then identity Linear: logits_t = x * mask_t / (1 - p)."""

    def __init__(self, d, p):
        super().__init__()
        self.bn = nn.BatchNorm1d(d)  # must stay in eval mode (identity with fresh stats)
        lin = nn.Linear(d, d, bias=False)
        lin.weight.data = torch.eye(d)
        self.head = nn.Sequential(nn.Dropout(p), lin)

    def features(self, x):
        return self.bn(x)


def test_mc_dropout_masks_are_independent_bernoulli_and_other_layers_stay_in_eval():
    p, T, M, d = 0.3, 20, 50, 8
    probe = _DropoutProbe(d, p).train()
    x = torch.rand(M, d) + 1.0  # strictly positive
    seen = []
    probe.head[1].register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
    mc_dropout_probs(probe, x, T, gen(0), batch_size=100)
    logits = torch.cat([s.view(T, -1, d) for s in seen], dim=1)  # chunks of 5 inputs -> [T, M, d]
    bn_x = x / math.sqrt(1 + probe.bn.eps)  # eval-mode BN with fresh statistics
    kept = logits != 0
    torch.testing.assert_close(logits[kept], (bn_x.expand(T, M, d) / (1 - p))[kept])
    frac = 1 - kept.double().mean().item()
    n = T * M * d
    assert abs(frac - p) < 4 * math.sqrt(p * (1 - p) / n)
    assert (kept[0] != kept[1]).any() and (kept[:, 0] != kept[:, 1]).any()
    assert probe.training, "train/eval mode of the model is restored"
    assert torch.equal(probe.bn.running_mean, torch.zeros(d)), "BN statistics untouched"


class _SideDropout(models.ALModel):
    """Has an active dropout module that never runs on the path to the output."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Dropout(0.5)
        self.head = nn.Linear(4, 3)

    def features(self, x):
        return x


def test_mc_dropout_off_the_output_path_is_an_error():
    with pytest.raises(ValueError, match="replicate='input'"):
        mc_dropout_probs(_SideDropout(), torch.randn(6, 4), 5, gen(0))


def test_mc_dropout_without_dropout_names_the_fix(mnist):
    model = models.build("small_cnn", (1, 28, 28), 10, width=4).eval()
    with pytest.raises(ValueError, match=r"dropout: 0\.5"):
        build("bald").score(model, mnist.x_train[:4], generator=gen(0))


def test_mc_dropout_options_are_validated():
    with pytest.raises(ValueError, match="'T'"):
        build("bald", T=0)
    with pytest.raises(ValueError, match="'batched'"):
        build("variation_ratio", batched="yes")
    with pytest.raises(ValueError, match="'replicate'"):
        build("mc_entropy", replicate="output")


# --------------------------------------------------------------------------- #
# generic selection contract
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name", ["entropy", "margin", "least_confidence", "bald", "mc_entropy",
                                  "variation_ratio", "coreset", "badge"])
def test_selects_budget_distinct_candidates_deterministically(name, cnn, mnist):
    labeled = torch.arange(0, 300, 10)
    pool = Pool(mnist.n_train, labeled)
    opts = {"T": 5} if name in ("bald", "mc_entropy", "variation_ratio") else {}
    s = build(name, candidates=60, **opts)
    picks = s.select(cnn, mnist, pool, 12, gen(3))
    cands = set(pool.candidates(60, gen(3)).tolist())
    assert picks.dtype == torch.long and picks.numel() == 12
    assert len(set(picks.tolist())) == 12
    assert set(picks.tolist()) <= cands
    assert not set(picks.tolist()) & set(labeled.tolist())
    assert torch.equal(picks, build(name, candidates=60, **opts).select(cnn, mnist, pool, 12, gen(3)))


def test_budget_above_candidates_is_an_error(cnn, mnist):
    pool = Pool(mnist.n_train, torch.arange(10))
    with pytest.raises(ValueError, match="budget"):
        build("coreset", candidates=5).select(cnn, mnist, pool, 6, gen(0))


# --------------------------------------------------------------------------- #
# core-set
# --------------------------------------------------------------------------- #
def naive_kcenter(X, C, budget):
    """Farthest-first traversal with initial centres C, plain numpy loops."""
    X, C = np.asarray(X, np.float64), np.asarray(C, np.float64)
    mind = np.array([min(np.linalg.norm(x - c) for c in C) for x in X])
    picks = []
    for _ in range(budget):
        mind_masked = mind.copy()
        mind_masked[picks] = -np.inf
        i = int(np.argmax(mind_masked))
        picks.append(i)
        mind = np.minimum(mind, np.linalg.norm(X - X[i], axis=1))
    return picks


def test_coreset_equals_naive_farthest_first_from_labeled(cnn, mnist):
    labeled = torch.arange(0, 300, 7)
    pool = Pool(mnist.n_train, labeled)
    picks = build("coreset").select(cnn, mnist, pool, 15, gen(0))
    unl = pool.unlabeled
    with torch.no_grad():
        fz = cnn.features(mnist.x_train[unl]).numpy()
        fl = cnn.features(mnist.x_train[labeled]).numpy()
    ref = unl[naive_kcenter(fz, fl, 15)]
    assert picks.tolist() == ref.tolist()


def _regression_data(n=80, d=6):
    g = gen(0)
    x = torch.randn(n, d, generator=g)
    y = x.sum(1)
    return Dataset("synthetic_regression", "regression", x, y, x[:10], y[:10], None, "test")


def test_coreset_works_for_regression():
    data = _regression_data()
    torch.manual_seed(0)
    model = models.build("mlp", (6,), 1, hidden=8).eval()
    pool = Pool(data.n_train, torch.arange(10))
    picks = build("coreset").select(model, data, pool, 5, gen(0))
    with torch.no_grad():
        fz = model.features(data.x_train[pool.unlabeled]).numpy()
        fl = model.features(data.x_train[:10]).numpy()
    assert picks.tolist() == pool.unlabeled[naive_kcenter(fz, fl, 5)].tolist()


@pytest.mark.parametrize("name", CLASSIFICATION_ONLY)
def test_classification_only_strategies_reject_regression(name):
    data = _regression_data()
    model = models.build("mlp", (6,), 1, hidden=8, dropout=0.5).eval()
    pool = Pool(data.n_train, torch.arange(10))
    s = build(name)
    assert "regression" not in s.tasks  # (ll4al also applies to detection)
    with pytest.raises(ValueError, match="regression"):
        s.select(model, data, pool, 5, gen(0))


# --------------------------------------------------------------------------- #
# BADGE
# --------------------------------------------------------------------------- #
def autograd_badge_embedding(model, x, bias=False):
    """Per-example gradient of CE(model(x), argmax) w.r.t. the last layer, by autograd."""
    lin = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    rows = []
    for i in range(x.shape[0]):
        model.zero_grad()
        out = model(x[i : i + 1])
        nn.functional.cross_entropy(out, out.argmax(1)).backward()
        g = [lin.weight.grad.flatten()]
        if bias:
            g.append(lin.bias.grad.flatten())
        rows.append(torch.cat(g).clone())
    return torch.stack(rows).double()  # [N, C*d (+C)]


@pytest.mark.parametrize("model_name,opts", [("small_cnn", {"width": 4, "hidden": 12, "dropout": 0.5}),
                                             ("vgg16", {"width": 4})])
def test_badge_factors_equal_autograd_last_layer_gradient(model_name, opts, mnist):
    torch.manual_seed(0)
    shape = (1, 28, 28)
    model = models.build(model_name, shape, 10, **opts).eval()
    x = mnist.x_train[:30]
    for bias in (False, True):
        a, z = gradient_factors(model, x, bias=bias)
        ref = autograd_badge_embedding(model, x, bias=bias)
        emb = gradient_embedding(a, z)
        if bias:  # a ⊗ [z, 1] orders the bias entry last in each class block
            C, d1 = a.shape[1], z.shape[1]
            emb = emb.view(-1, C, d1)
            emb = torch.cat([emb[:, :, :-1].flatten(1), emb[:, :, -1]], 1)
        torch.testing.assert_close(emb, ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("first", ["random", "max_norm"])
def test_badge_factorised_picks_equal_explicit_embedding_kmeanspp(first, mnist):
    torch.manual_seed(2)
    model = models.build("small_cnn", (1, 28, 28), 10, width=4, hidden=12).eval()
    pool = Pool(mnist.n_train, torch.arange(0, 300, 3))
    unl = pool.unlabeled
    ref_g = autograd_badge_embedding(model, mnist.x_train[unl])
    ref = unl[selection.kmeanspp(ref_g, 20, gen(9), first=first)]
    for embedding in ("factorised", "explicit"):
        picks = build("badge", first=first, embedding=embedding).select(model, mnist, pool, 20, gen(9))
        assert picks.tolist() == ref.tolist(), embedding


def test_badge_official_variant_starts_from_largest_gradient(mnist, cnn):
    s = build("badge", variant="official")
    assert s.opts["first"] == "max_norm"
    pool = Pool(mnist.n_train, torch.arange(5))
    picks = s.select(cnn, mnist, pool, 3, gen(0))
    a, z = gradient_factors(cnn, mnist.x_train[pool.unlabeled])
    norms = gradient_embedding(a, z).norm(dim=1)
    assert int(picks[0]) == int(pool.unlabeled[norms.argmax()])


def test_badge_rejects_a_head_without_final_linear():
    class Odd(models.ALModel):
        def __init__(self):
            super().__init__()
            self.head = nn.Sequential(nn.Linear(4, 3), nn.Tanh())

        def features(self, x):
            return x

    with pytest.raises(ValueError, match="nn.Linear"):
        gradient_factors(Odd(), torch.randn(5, 4))


# --------------------------------------------------------------------------- #
# QBC scores
# --------------------------------------------------------------------------- #
class _LogitTable(nn.Module):
    """Returns a fixed row of logits for input [i] (a committee member with known output)."""

    def __init__(self, table):
        super().__init__()
        self.register_buffer("table", torch.as_tensor(table, dtype=torch.float32))

    def forward(self, x):
        return self.table[x[:, 0].long()]


def test_vote_entropy_and_consensus_kl_on_a_fixed_committee():
    votes = [[0, 0, 0, 2], [0, 1, 1, 2], [0, 0, 2, 1]]  # member x item -> voted class
    members = [_LogitTable(np.eye(3)[v] * 4.0) for v in votes]
    x = torch.arange(4.0)[:, None]
    probs = committee_probs(members, x)  # [3, 4, 3]
    h = lambda *q: -sum(v * math.log(v) for v in q)  # hand formula
    expected_ve = [0.0, h(2 / 3, 1 / 3), math.log(3), h(2 / 3, 1 / 3)]
    np.testing.assert_allclose(vote_entropy(probs).numpy(), expected_ve, atol=1e-12)
    P = np_softmax(np.stack([np.eye(3)[v] * 4.0 for v in votes]))  # [3, 4, 3]
    cons = P.mean(0)
    kl = np.mean([[np.sum(P[m, i] * np.log(P[m, i] / cons[i])) for i in range(4)]
                  for m in range(3)], axis=0)
    np.testing.assert_allclose(consensus_kl(probs).numpy(), kl, rtol=1e-6)
    assert consensus_kl(probs)[0] < 1e-12


def test_qbc_options_are_validated():
    with pytest.raises(ValueError, match="'M'"):
        build("qbc", M=1)
    with pytest.raises(ValueError, match="disagreement"):
        build("qbc", disagreement="kl")
