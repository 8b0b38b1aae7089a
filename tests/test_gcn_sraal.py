"""UncertainGCN, CoreGCN and SRAAL against independent references: hand computations on tiny
graphs and batches, numpy loops, brute-force k-center."""

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from alstudy import loop, models
from alstudy.data import Dataset
from alstudy.pool import Pool
from alstudy.strategies import build
from alstudy.strategies.gcn import GCN, gcn_loss, normalised_adjacency
from alstudy.strategies.sraal import train_sraal, uncertainty_indicator
from alstudy.strategies.vaal import VAE, Discriminator

GCN_SMALL = dict(epochs=30, hidden=16)
SRAAL_SMALL = dict(steps=30, width=8, disc_hidden=32, train_batch_size=32, latent_dim=8,
                   classifier_hidden=32)
SMALL = {"uncertaingcn": GCN_SMALL, "coregcn": GCN_SMALL, "sraal": SRAAL_SMALL}


def gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return models.build("small_cnn", (1, 28, 28), 10, width=4, hidden=16).eval()


# --------------------------------------------------------------------------- #
# GCN pieces
# --------------------------------------------------------------------------- #
Z5 = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [1.0, 1.0], [2.0, 0.0]])


def hand_adjacency(z, column=False):
    """A = D^-1 (S - I) + I with S the cosine similarities, by explicit loops."""
    n = len(z)
    v = [row / math.sqrt(sum(t * t for t in row)) for row in z]
    s = [[sum(a * b for a, b in zip(v[i], v[j])) for j in range(n)] for i in range(n)]
    deg = [sum(s[i][j] for j in range(n)) - 1.0 for i in range(n)]
    a = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            off = s[i][j] - (1.0 if i == j else 0.0)
            a[i, j] = off / (deg[j] if column else deg[i]) + (1.0 if i == j else 0.0)
    return a


def test_normalised_adjacency_matches_hand_computation_on_five_nodes():
    got = normalised_adjacency(torch.tensor(Z5), "row").numpy()
    np.testing.assert_allclose(got, hand_adjacency(Z5), atol=1e-12)
    # node 0 = (1, 0): cosines to the others 0, 1/√2, 1/√2, 1 -> degree 1 + √2
    r = 1 / math.sqrt(2)
    np.testing.assert_allclose(got[0], np.array([0, 0, r, r, 1]) / (1 + 2 * r) + [1, 0, 0, 0, 0],
                               atol=1e-12)
    np.testing.assert_allclose(got.sum(1), 2.0, atol=1e-12)  # each off-diagonal row sums to 1
    col = normalised_adjacency(torch.tensor(Z5), "column").numpy()
    np.testing.assert_allclose(col, hand_adjacency(Z5, column=True), atol=1e-12)
    np.testing.assert_allclose(col - np.eye(5), (got - np.eye(5)).T, atol=1e-12)


def test_a_zero_feature_vector_keeps_only_its_self_loop():
    z = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    a = normalised_adjacency(z)
    assert torch.isfinite(a).all()
    assert torch.equal(a[1], torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="normalisation"):
        normalised_adjacency(z, "sym")


def test_gcn_forward_matches_hand_computation_on_five_nodes():
    adj = torch.tensor(hand_adjacency(Z5))
    x = torch.tensor(Z5)
    gcn = GCN(2, hidden=3, dropout=0.3).double().eval()
    w1 = np.array([[0.5, -1.0, 0.25], [1.0, 0.5, -0.5]])
    b1 = np.array([0.1, -0.2, 0.0])
    w2 = np.array([[1.0], [-2.0], [0.5]])
    b2 = np.array([0.3])
    with torch.no_grad():
        gcn.gc1.weight.copy_(torch.tensor(w1))
        gcn.gc1.bias.copy_(torch.tensor(b1))
        gcn.gc2.weight.copy_(torch.tensor(w2))
        gcn.gc2.bias.copy_(torch.tensor(b2))
        logits, hidden = gcn(x, adj)
    A, n = hand_adjacency(Z5), 5
    xw = [[sum(Z5[i][k] * w1[k][j] for k in range(2)) for j in range(3)] for i in range(n)]
    h = [[max(0.0, sum(A[i][m] * xw[m][j] for m in range(n)) + b1[j]) for j in range(3)]
         for i in range(n)]
    hw = [sum(h[i][j] * w2[j][0] for j in range(3)) for i in range(n)]
    out = [sum(A[i][m] * hw[m] for m in range(n)) + b2[0] for i in range(n)]
    np.testing.assert_allclose(hidden.numpy(), h, atol=1e-12)
    np.testing.assert_allclose(logits.numpy(), out, atol=1e-12)
    gcn.train()
    torch.manual_seed(0)
    assert not torch.allclose(gcn(x, adj)[1], hidden)  # dropout is active in training


def test_gcn_loss_is_the_weighted_binary_cross_entropy():
    logits = torch.tensor([2.0, -1.0, 0.5, -3.0, 40.0], dtype=torch.float64)
    labeled = torch.tensor([True, False, True, False, False])
    sig = [1 / (1 + math.exp(-t)) for t in logits.tolist()]
    ref = -(math.log(sig[0]) + math.log(sig[2])) / 2 - 1.2 * (
        math.log(1 - sig[1]) + math.log(1 - sig[3]) + (-40.0 - math.log1p(math.exp(-40.0)))) / 3
    assert float(gcn_loss(logits, labeled, 1.2)) == pytest.approx(ref, rel=1e-12)
    assert math.isfinite(float(gcn_loss(torch.tensor([200.0]), torch.tensor([False]))))


# --------------------------------------------------------------------------- #
# UncertainGCN and CoreGCN picks
# --------------------------------------------------------------------------- #
def naive_kcenter(X, C, budget):
    """Farthest-first traversal from the centres C, numpy double loop."""
    X, C = np.asarray(X, np.float64), np.asarray(C, np.float64)
    mind = np.array([min(np.linalg.norm(x - c) for c in C) for x in X])
    picks = []
    for _ in range(budget):
        i = max((j for j in range(len(X)) if j not in picks), key=lambda j: (mind[j], -j))
        picks.append(i)
        mind = np.array([min(mind[j], np.linalg.norm(X[j] - X[i])) for j in range(len(X))])
    return picks


def test_uncertaingcn_picks_are_the_argsort_of_the_margin_distance(cnn, mnist):
    pool = Pool(mnist.n_train, torch.arange(0, 300, 10))
    s = build("uncertaingcn", candidates=80, **GCN_SMALL)
    picks = s.select(cnn, mnist, pool, 12, gen(0))
    cands = pool.candidates(80, gen(0))
    conf = 1 / (1 + np.exp(-s.node_logits[:80].double().numpy()))  # candidate nodes come first
    ref = np.argsort(np.abs(conf - 0.1), kind="stable")[:12]
    assert picks.tolist() == cands[ref].tolist()
    assert s.history[-1] < s.history[0]


@pytest.mark.parametrize("embedding", ["hidden_output", "hidden"])
def test_coregcn_picks_equal_brute_force_kcenter_on_its_gcn_features(embedding, cnn, mnist):
    labeled = torch.arange(0, 300, 10)
    pool = Pool(mnist.n_train, labeled)
    s = build("coregcn", candidates=60, embedding=embedding, **GCN_SMALL)
    picks = s.select(cnn, mnist, pool, 8, gen(1))
    cands = pool.candidates(60, gen(1))
    e = s.node_hidden.numpy()
    if embedding == "hidden_output":
        e = np.concatenate([e, s.node_logits.numpy()[:, None]], 1)
    assert e.shape[0] == 60 + labeled.numel()
    ref = naive_kcenter(e[:60], e[60:], 8)
    assert picks.tolist() == cands[ref].tolist()


def test_gcn_graph_uses_the_learner_features_of_candidates_and_labeled(cnn, mnist):
    """The GCN's input: l2-normalised learner features of [candidates, labeled], in order."""
    pool = Pool(mnist.n_train, torch.arange(0, 300, 15))
    s = build("coregcn", candidates=40, epochs=1)
    s.select(cnn, mnist, pool, 4, gen(2))
    cands = pool.candidates(40, gen(2))
    with torch.no_grad():
        z = nn.functional.normalize(cnn.features(mnist.x_train[torch.cat([cands, pool.labeled])]), dim=1)
        adj = normalised_adjacency(z, "row")
        logits, hidden = s.gcn.eval()(z, adj)
    torch.testing.assert_close(logits, s.node_logits)
    torch.testing.assert_close(hidden, s.node_hidden)


def test_gcn_official_variant_normalises_columns():
    assert build("coregcn", variant="official").opts["adjacency"] == "column"
    assert build("uncertaingcn").opts["adjacency"] == "row"
    assert build("sraal", variant="official").opts["indicator_variance"] == "mixed"


def test_gcn_and_sraal_options_are_validated():
    with pytest.raises(ValueError, match="'s_margin'"):
        build("uncertaingcn", s_margin=1.5)
    with pytest.raises(ValueError, match="'adjacency'"):
        build("coregcn", adjacency="symmetric")
    with pytest.raises(ValueError, match="'embedding'"):
        build("coregcn", embedding="logit")
    with pytest.raises(ValueError, match="'latent_dim'"):
        build("sraal", latent_dim=1)
    with pytest.raises(ValueError, match="unknown option"):
        build("coregcn", s_margin=0.1)


# --------------------------------------------------------------------------- #
# generic selection contract
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name", ["uncertaingcn", "coregcn", "sraal"])
def test_selects_distinct_unlabeled_candidates_deterministically(name, cnn, mnist):
    labeled = torch.arange(0, 300, 10)
    pool = Pool(mnist.n_train, labeled)
    rng = torch.get_rng_state()
    picks = build(name, candidates=50, **SMALL[name]).select(cnn, mnist, pool, 10, gen(3))
    assert torch.equal(torch.get_rng_state(), rng), "global RNG untouched"
    cands = set(pool.candidates(50, gen(3)).tolist())
    assert picks.dtype == torch.long and picks.numel() == 10 == len(set(picks.tolist()))
    assert set(picks.tolist()) <= cands and not set(picks.tolist()) & set(labeled.tolist())
    again = build(name, candidates=50, **SMALL[name]).select(cnn, mnist, pool, 10, gen(3))
    assert torch.equal(picks, again)
    other = build(name, candidates=50, **SMALL[name]).select(cnn, mnist, pool, 10, gen(4))
    assert not torch.equal(picks, other)


class _Passthrough(models.ALModel):
    """features = the input itself (so non-finite inputs give non-finite features)."""

    def __init__(self, d):
        super().__init__()
        self.head = nn.Linear(d, 2)

    def features(self, x):
        return x


def _vectors(n=60, d=5, bad=(), seed=0):
    x = torch.rand(n, d, generator=gen(seed)) + 0.1
    for i in bad:
        x[i, 1] = math.nan if i % 2 else math.inf
    y = (x[:, 0] > 0.6).long()
    return Dataset("vectors", "classification", x, y, x[:5], y[:5], 2, "test")


@pytest.mark.parametrize("name", ["uncertaingcn", "coregcn"])
def test_non_finite_features_warn_rank_last_and_never_repeat(name):
    bad = (12, 17, 33, 3)  # 3 is labeled, the others unlabeled
    data = _vectors(bad=bad)
    model = _Passthrough(5).eval()
    pool = Pool(data.n_train, torch.arange(0, 10))
    with pytest.warns(RuntimeWarning, match=r"4 of 60 graph nodes have non-finite features "
                                            r"\(3 candidates, 1 labeled\)"):
        picks = build(name, **GCN_SMALL).select(model, data, pool, 50, gen(0))
    assert len(set(picks.tolist())) == 50 and int(picks.min()) >= 10
    assert picks[-3:].tolist() == [12, 17, 33]  # the non-finite candidates come last, in order
    with pytest.warns(RuntimeWarning, match="non-finite"):
        few = build(name, **GCN_SMALL).select(model, data, pool, 20, gen(0))
    assert not set(few.tolist()) & {12, 17, 33}
    clean = _vectors()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build(name, **GCN_SMALL).select(model, clean, pool, 5, gen(0))


def test_gcn_strategies_work_for_regression():
    g = gen(0)
    x = torch.randn(80, 6, generator=g)
    data = Dataset("r", "regression", x, x.sum(1), x[:5], x[:5].sum(1), None, "test")
    torch.manual_seed(0)
    model = models.build("mlp", (6,), 1, hidden=8).eval()
    for name in ("uncertaingcn", "coregcn"):
        picks = build(name, **GCN_SMALL).select(model, data, Pool(80, torch.arange(10)), 5, gen(0))
        assert picks.numel() == 5 and int(picks.min()) >= 10


# --------------------------------------------------------------------------- #
# SRAAL
# --------------------------------------------------------------------------- #
def test_uncertainty_indicator_equals_the_formula_on_a_hand_made_batch():
    p = torch.tensor([[1.0, 0.0, 0.0],      # one-hot: P = P_min, ind = 1 - 1 = 0
                      [1 / 3, 1 / 3, 1 / 3],  # uniform: ratio 1 by convention, ind = 2/3
                      [0.5, 0.5, 0.0],      # V(P_min) = 1/72, V(P) = 1/18, ind = 1 - 0.5/4
                      [0.6, 0.2, 0.2],      # P = P_min: ind = 1 - 0.6
                      [math.nan, 0.5, 0.5]], dtype=torch.float64)  # non-finite: state 1
    np.testing.assert_allclose(uncertainty_indicator(p).numpy(), [0.0, 2 / 3, 0.875, 0.4, 1.0],
                               atol=1e-12)
    # authors' convention: the ratio carries an extra (C - 1) / C = 2/3
    np.testing.assert_allclose(uncertainty_indicator(p, "mixed").numpy(),
                               [1 / 3, 7 / 9, 1 - 0.5 / 6, 1 - 0.4, 1.0], atol=1e-12)
    with pytest.raises(ValueError, match="variance"):
        uncertainty_indicator(p, "sample")


def test_uncertainty_indicator_equals_explicit_min_variance_vectors():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(7) * 0.4, size=50)
    ref = []
    for row in probs:
        pmin = np.full(7, (1 - row.max()) / 6)
        pmin[0] = row.max()
        ref.append(1 - row.max() * np.var(pmin) / np.var(row))
    got = uncertainty_indicator(torch.tensor(probs)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    assert (got >= 1 - probs.max(1) - 1e-12).all() and (got < 1).all()


def test_sraal_relabels_the_unlabeled_states_from_the_task_model(cnn, mnist):
    pool = Pool(mnist.n_train, torch.arange(0, 300, 10))
    s = build("sraal", **SRAAL_SMALL)
    s.select(cnn, mnist, pool, 5, gen(0))
    with torch.no_grad():
        p = torch.softmax(cnn(mnist.x_train[pool.unlabeled]).double(), 1)
    torch.testing.assert_close(s.states, uncertainty_indicator(p), rtol=1e-6, atol=1e-7)


def test_sraal_non_finite_predictions_keep_the_unlabeled_state(mnist):
    class NaNModel(models.ALModel):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(1, 10)

        def features(self, x):
            f = x.flatten(1)[:, :1].clone()
            f[::4] = math.nan
            return f

    s = build("sraal", **SRAAL_SMALL)
    with pytest.warns(RuntimeWarning, match="8 of 30 unlabeled predictions are non-finite"):
        states = s.relabel(NaNModel(), mnist.x_train[:30])
    assert torch.equal(states[::4], torch.ones(8, dtype=torch.float64))
    assert torch.isfinite(states).all()


def _sraal_nets(d=6, latent=4):
    torch.manual_seed(0)
    return (VAE((d,), latent, "mlp", 16, decode_dims=latent // 2), Discriminator(latent, 32, 4),
            nn.Sequential(nn.Linear(latent - latent // 2, 16), nn.ReLU(), nn.Linear(16, 2)))


@pytest.mark.parametrize("state", [0.0, 1.0])
def test_state_discriminator_learns_the_relabelled_states(state):
    g = gen(0)
    x_lab = torch.randn(64, 6, generator=g) + 2.0
    y_lab = (x_lab[:, 0] > 2.0).long()
    x_unl = torch.randn(256, 6, generator=g)
    vae, disc, clf = _sraal_nets()
    hist = train_sraal(vae, disc, clf, x_lab, y_lab, x_unl, torch.full((256,), state), steps=150,
                       batch_size=32, adversary_weight=0.0, lr=2e-3, lr_decays=0, generator=g)
    with torch.no_grad():
        d_unl = torch.sigmoid(disc(vae.encode(x_unl)[0])).mean()
        d_lab = torch.sigmoid(disc(vae.encode(x_lab)[0])).mean()
    assert d_lab < 0.25  # labeled state 0
    assert (d_unl > 0.75) if state == 1.0 else (d_unl < 0.25)
    assert np.mean(hist["label"][-10:]) < np.mean(hist["label"][:10])
    assert np.mean(hist["reconstruction"][-10:]) < np.mean(hist["reconstruction"][:10])


def test_sraal_learning_rate_decays_thirty_times_as_in_the_authors_code():
    g = gen(0)
    vae, disc, clf = _sraal_nets()
    seen = []
    step = torch.optim.Adam.step

    def spy(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *a, **k)

    torch.optim.Adam.step = spy
    try:
        train_sraal(vae, disc, clf, torch.randn(8, 6), torch.zeros(8).long(), torch.randn(16, 6),
                    torch.ones(16), steps=60, batch_size=8, vae_steps=1, lr=1.0, generator=g)
    finally:
        torch.optim.Adam.step = step
    d_lrs = seen[1::2]  # one generator step, then one D step per iteration
    assert d_lrs[0] == 1.0 and d_lrs[1] == 1.0 and d_lrs[2] == pytest.approx(0.85)
    assert d_lrs[-1] == pytest.approx(0.85 ** 29)


def test_sraal_picks_the_highest_state_probability(cnn, mnist):
    pool = Pool(mnist.n_train, torch.arange(0, 300, 5))
    s = build("sraal", candidates=90, **SRAAL_SMALL)
    picks = s.select(cnn, mnist, pool, 9, gen(5))
    cands = pool.candidates(90, gen(5))
    with torch.no_grad():
        d = torch.sigmoid(s.discriminator(s.vae.encode(mnist.x_train[cands])[0]))
    chosen = torch.isin(cands, picks)
    assert d[chosen].min() >= d[~chosen].max()
    assert s.vae.decode_dims == 4 and len(s.discriminator.net) == 9  # 4 hidden layers


def test_new_strategies_run_through_the_loop(mnist, tmp_path):
    names = ["uncertaingcn", "coregcn", "sraal"]
    df = loop.run(dict(dataset="mnist", max_train=300, max_test=50, model="small_cnn",
                       model_options={"width": 4}, strategies=names, seeds=[0],
                       strategy_options=SMALL, initial_size=20, budget=10, cycles=1, epochs=2,
                       results_dir=str(tmp_path), progress=False), data=mnist)
    acc = df[df.metric == "accuracy"]
    for name in names:
        assert sorted(acc[acc.strategy == name].n_labeled.tolist()) == [20, 30], name


def test_the_cli_lists_the_new_strategies_with_their_options(capsys):
    from alstudy import cli

    assert cli.main(["strategies"]) == 0
    sections, name = {}, None
    for line in capsys.readouterr().out.splitlines():
        if line and not line[0].isspace():
            name = line.split()[0]
        elif name:
            sections.setdefault(name, []).append(line.strip())
    for name, options in [("coregcn", ["embedding = 'hidden_output'", "lambda_loss = 1.2"]),
                          ("uncertaingcn", ["s_margin = 0.1", "dropout = 0.3", "epochs = 200"]),
                          ("sraal", ["indicator_variance = 'population'", "disc_layers = 4"])]:
        for option in options:
            assert any(line.startswith(option) for line in sections[name]), (name, option)
