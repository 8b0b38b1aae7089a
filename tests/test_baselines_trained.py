"""Baselines that train extra networks: QBC committees, learning loss (LL4AL) and VAAL."""

import math

import numpy as np
import pytest
import torch

from alstudy import loop, models
from alstudy.data import Dataset
from alstudy.pool import Pool
from alstudy.strategies import SelectionContext, build
from alstudy.strategies.ll4al import loss_ranking_loss
from alstudy.strategies.qbc import committee_probs
from alstudy.train import TrainConfig, fit


def gen(seed):
    return torch.Generator().manual_seed(seed)




VAAL_SMALL = dict(steps=30, width=8, disc_hidden=64, train_batch_size=32, latent_dim=8)


def tiny_cnn():
    return models.build("small_cnn", (1, 28, 28), 10, width=4, hidden=16)


def context(epochs=1):
    return SelectionContext(train_config=TrainConfig(epochs=epochs, batch_size=32),
                            build_model=tiny_cnn, device=torch.device("cpu"))


# --------------------------------------------------------------------------- #
# QBC
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("opts", [{}, {"disagreement": "consensus_kl", "resample": "bootstrap"}])
def test_qbc_selects_from_candidates_deterministically(opts, mnist):
    pool = Pool(mnist.n_train, torch.arange(0, 300, 6))
    s = build("qbc", M=3, candidates=80, **opts)
    rng_before = torch.get_rng_state()
    picks = s.select(None, mnist, pool, 10, gen(1), context())
    assert torch.equal(torch.get_rng_state(), rng_before), "global RNG untouched"
    cands = set(pool.candidates(80, gen(1)).tolist())
    assert picks.numel() == 10 and len(set(picks.tolist())) == 10
    assert set(picks.tolist()) <= cands
    again = build("qbc", M=3, candidates=80, **opts).select(None, mnist, pool, 10, gen(1), context())
    assert torch.equal(picks, again)


def test_qbc_committee_members_differ_and_score_is_their_disagreement(mnist):
    pool = Pool(mnist.n_train, torch.arange(0, 300, 6))
    s = build("qbc", M=3)
    members = s.train_committee(mnist, pool.labeled, gen(2), context(epochs=2))
    x = mnist.x_train[pool.unlabeled]
    with torch.no_grad():
        preds = torch.stack([m(x).argmax(1) for m in members])  # [M, N]
    assert not torch.equal(preds[0], preds[1])
    # vote entropy by hand: zero where all members agree, log 3 where all differ
    votes = [sorted(preds[:, i].tolist()) for i in range(x.shape[0])]
    ref = [-sum(c / 3 * math.log(c / 3) for c in np.unique(v, return_counts=True)[1]) for v in votes]
    np.testing.assert_allclose(s.disagreement(committee_probs(members, x)).numpy(), ref, atol=1e-12)


def test_qbc_needs_a_selection_context(mnist):
    with pytest.raises(ValueError, match="SelectionContext"):
        build("qbc").select(None, mnist, Pool(mnist.n_train, torch.arange(10)), 5, gen(0))


# --------------------------------------------------------------------------- #
# LL4AL
# --------------------------------------------------------------------------- #
def test_ranking_loss_equals_naive_pair_loop():
    rng = np.random.default_rng(0)
    for n in (2, 7, 10):
        pred, true = rng.normal(size=n), rng.exponential(size=n)
        true[0] = true[-1]  # a tie counts as -1
        ref = []
        for i in range(n // 2):
            j = (n // 2 * 2) - 1 - i
            sign = 1.0 if true[i] > true[j] else -1.0
            ref.append(max(0.0, 1.5 - sign * (pred[i] - pred[j])))
        got = loss_ranking_loss(torch.tensor(pred), torch.tensor(true), margin=1.5)
        assert float(got) == pytest.approx(np.mean(ref), abs=1e-12)
    assert float(loss_ranking_loss(torch.ones(1), torch.ones(1))) == 0.0


def test_ll4al_stops_the_gradient_into_the_model_after_the_stop_epoch(mnist):
    torch.manual_seed(0)
    model = tiny_cnn()
    s = build("ll4al", stop_grad_epoch=3)
    hook = s.training_hook(model, mnist)
    x, y = mnist.x_train[:16], mnist.y_train[:16]
    for epoch, reaches_model in [(2, True), (3, False)]:
        model.zero_grad(set_to_none=True)
        hook.module.zero_grad(set_to_none=True)
        out, blocks = model.intermediates(x)
        per = torch.nn.functional.cross_entropy(out, y, reduction="none")
        hook.loss(out, blocks, y, per, epoch).backward()
        got = any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
        assert got == reaches_model
        assert all(p.grad is not None for p in hook.module.parameters())


def test_ll4al_trains_jointly_and_scores_by_predicted_loss(mnist):
    torch.manual_seed(0)
    model = models.build("small_cnn", (1, 28, 28), 10, width=8)
    s = build("ll4al", candidates=100)
    hook = s.training_hook(model, mnist)
    hist = fit(model, mnist.x_train[:200], mnist.y_train[:200], TrainConfig(epochs=10, batch_size=32),
               generator=gen(0), hook=hook)
    assert hook.detach_from() == 6  # 60% of 10 epochs
    aux = hist["aux_loss"]
    assert np.mean(aux[-3:]) < aux[0], aux
    pool = Pool(mnist.n_train, torch.arange(200))
    picks = s.select(model, mnist, pool, 10, gen(0))
    cands = pool.candidates(100, gen(0))
    with torch.no_grad():
        pred = hook.module.eval()(model.eval().intermediates(mnist.x_train[cands])[1])
    assert picks.tolist() == cands[torch.argsort(pred, descending=True, stable=True)[:10]].tolist()
    with pytest.raises(ValueError, match="training_hook"):
        s.select(tiny_cnn(), mnist, pool, 10, gen(0))


def test_ll4al_keeps_its_module_when_the_same_model_trains_on():
    data = Dataset("v", "classification", torch.randn(8, 1, 28, 28), torch.zeros(8).long(),
                   torch.randn(2, 1, 28, 28), torch.zeros(2).long(), 10, "test")
    s, model = build("ll4al"), tiny_cnn()
    first = s.training_hook(model, data)
    assert s.training_hook(model, data) is first
    assert s.training_hook(tiny_cnn(), data) is not first


def test_baselines_run_through_the_loop(mnist, tmp_path):
    names = ["ll4al", "qbc", "bald", "badge", "coreset", "vaal", "margin"]
    df = loop.run(dict(dataset="mnist", max_train=300, max_test=50, model="small_cnn",
                       model_options={"width": 4, "dropout": 0.5}, strategies=names, seeds=[0],
                       strategy_options={"qbc": {"M": 2, "epochs": 1}, "bald": {"T": 5},
                                         "vaal": VAAL_SMALL},
                       initial_size=20, budget=10, cycles=1, epochs=2, results_dir=str(tmp_path),
                       progress=False), data=mnist)
    acc = df[df.metric == "accuracy"]
    for name in names:
        assert sorted(acc[acc.strategy == name].n_labeled.tolist()) == [20, 30], name


# --------------------------------------------------------------------------- #
# VAAL
# --------------------------------------------------------------------------- #
def test_vaal_smoke_on_mnist_losses_decrease_and_lowest_d_is_picked(mnist):
    pool = Pool(mnist.n_train, torch.arange(0, 300, 5))
    s = build("vaal", candidates=120, **VAAL_SMALL)
    model = tiny_cnn().eval()
    picks = s.select(model, mnist, pool, 12, gen(0))
    rec = s.history["reconstruction"]
    assert len(rec) == 30 and np.mean(rec[-5:]) < np.mean(rec[:5])
    assert np.mean(s.history["kl"][-5:]) < np.mean(s.history["kl"][:5])
    assert all(np.isfinite(s.history["discriminator"]))
    cands = pool.candidates(120, gen(0))
    assert set(picks.tolist()) <= set(cands.tolist()) and len(set(picks.tolist())) == 12
    with torch.no_grad():  # D(mu(x)) recomputed from the trained networks
        d = torch.sigmoid(s.discriminator(s.vae.encode(mnist.x_train[cands])[0]))
    chosen = torch.isin(cands, picks)
    assert d[chosen].max() <= d[~chosen].min()
    again = build("vaal", candidates=120, **VAAL_SMALL).select(model, mnist, pool, 12, gen(0))
    assert torch.equal(picks, again)


def test_vaal_mlp_fallback_on_vectors():
    g = gen(0)
    x = torch.randn(120, 7, generator=g)
    y = (x[:, 0] > 0).long()
    data = Dataset("vectors", "classification", x, y, x[:10], y[:10], 2, "test")
    s = build("vaal", steps=5, width=16, disc_hidden=16)
    picks = s.select(None, data, Pool(120, torch.arange(20)), 6, gen(0), context())
    assert picks.numel() == 6 and int(picks.min()) >= 20
    assert isinstance(s.vae.encoder[1], torch.nn.Linear)
    with pytest.raises(ValueError, match="'conv' needs"):
        build("vaal", architecture="conv").select(None, data, Pool(120, torch.arange(20)), 6, gen(0),
                                                  context())


@pytest.mark.parametrize("fresh", [False, True])
def test_vaal_fresh_batches_draw_one_batch_per_update(fresh, monkeypatch):
    from alstudy.strategies import vaal

    calls = []
    original = vaal._Cycler.next
    monkeypatch.setattr(vaal._Cycler, "next", lambda self: calls.append(self.n) or original(self))
    torch.manual_seed(0)
    x = torch.randn(40, 6)
    vaal.train_vaal(vaal.VAE((6,), 4, "mlp", 8), vaal.Discriminator(4, 8), x[:10], x[10:],
                    steps=3, batch_size=4, vae_steps=2, adv_steps=2, fresh_batches=fresh,
                    generator=gen(0))
    per_iteration = 2 * (1 + 1 + 1) if fresh else 2  # labeled + unlabeled per batch drawn
    assert len(calls) == 3 * per_iteration
    assert calls.count(10) == calls.count(30) == len(calls) // 2
