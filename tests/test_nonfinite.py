"""Candidates with non-finite scores follow one rule in every scorer-based strategy: a warning
names how many, they are ranked last, and none is picked while a finite candidate remains.

The non-finite scores come from real models: a few candidate images are NaN, so every score
computed from them (softmax, dropout votes, gradients, perturbed losses, NoiseStability
deviations, predicted losses, committee votes) is NaN as well."""

import math
import warnings

import pytest
import torch

from alstudy import models, selection
from alstudy.data import Dataset
from alstudy.pool import Pool
from alstudy.strategies import SelectionContext, build
from alstudy.strategies.badge import gradient_factors
from alstudy.strategies.mc_dropout import variation_ratio
from alstudy.strategies.noise_stability import noise_stability_embedding
from alstudy.strategies.qbc import vote_entropy
from alstudy.strategies.saal import saal_scores
from alstudy.train import TrainConfig

N_POOL, N_LABELED = 60, 20
BAD = [3, 7, 11, 20]  # candidates whose image is NaN
N_CAND = N_POOL - N_LABELED
WARNING = rf"{len(BAD)} of {N_CAND} candidates have non-finite"


def gen(seed):
    return torch.Generator().manual_seed(seed)


def tiny_cnn():
    return models.build("small_cnn", (1, 28, 28), 10, width=4, hidden=16, dropout=0.5)


@pytest.fixture(scope="module")
def setup(mnist):
    x = mnist.x_train[:N_POOL].clone()
    x[BAD] = math.nan
    data = Dataset("mnist-with-nan", "classification", x, mnist.y_train[:N_POOL],
                   mnist.x_test[:10], mnist.y_test[:10], 10, "test fixture")
    pool = Pool(N_POOL, torch.arange(N_CAND, N_POOL))  # candidates 0..39, labeled 40..59
    torch.manual_seed(0)
    model = tiny_cnn().eval()
    ctx = SelectionContext(train_config=TrainConfig(epochs=1, batch_size=32),
                           build_model=tiny_cnn, device=torch.device("cpu"))
    return data, pool, model, ctx


STRATEGIES = [
    ("entropy", {}), ("margin", {}), ("least_confidence", {}),
    ("bald", {"T": 4}), ("mc_entropy", {"T": 4}), ("variation_ratio", {"T": 4}),
    ("badge", {}), ("badge", {"first": "max_norm"}), ("coreset", {}),
    ("ll4al", {}), ("qbc", {"M": 2}), ("qbc", {"M": 2, "disagreement": "consensus_kl"}),
    ("saal", {}), ("saal", {"method": "functorch"}),
    ("saal", {"variant": "official"}), ("saal", {"variant": "official", "method": "functorch"}),
    ("saal", {"diversity": "kmeans_gradients"}),
    ("noise_stability", {"K": 2}), ("noise_stability", {"K": 2, "kcenter_start": "labeled"}),
    ("noise_stability_m", {"K": 2}), ("noise_stability_d", {"K": 2}),
    ("noise_stability", {"K": 2, "selector": "kmeanspp"}),
    ("noise_stability", {"K": 6, "selector": "kdpp"}),  # rank K*(C-1) >= the 36 finite rows
]


@pytest.mark.parametrize("name,opts", STRATEGIES, ids=lambda v: str(v))
def test_nonfinite_candidates_warn_rank_last_and_are_never_picked_early(setup, name, opts):
    data, pool, model, ctx = setup
    strat = build(name, candidates="all", **opts)
    if name == "ll4al":
        strat.training_hook(model, data)  # an untrained loss module still scores
    with pytest.warns(RuntimeWarning, match=WARNING):
        picks = strat.select(model, data, pool, 12, gen(0), ctx)
    assert picks.unique().numel() == 12 and not set(picks.tolist()) & set(BAD)
    with pytest.warns(RuntimeWarning, match=WARNING):
        every = strat.select(model, data, pool, N_CAND, gen(0), ctx)
    assert sorted(every.tolist()) == list(range(N_CAND))
    assert every[-len(BAD):].tolist() == BAD  # last, in index order


def test_warning_is_a_runtime_warning_subclass_with_a_count(setup):
    data, pool, model, ctx = setup
    with pytest.warns(selection.NonFiniteScoreWarning, match=WARNING + r" scores \(4 NaN"):
        build("entropy", candidates="all").select(model, data, pool, 3, gen(0))
    assert issubclass(selection.NonFiniteScoreWarning, RuntimeWarning)


def test_finite_candidates_select_without_a_warning(setup):
    data, pool, model, ctx = setup
    finite = Pool(N_POOL, torch.tensor(BAD + list(range(N_CAND, N_POOL))))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        build("saal", candidates="all", variant="official").select(model, data, finite, 5, gen(0))


def test_saal_fast_and_functorch_paths_agree_on_nan(setup):
    data, _, model, _ = setup
    x = data.x_train[:N_CAND]
    fast = saal_scores(model, x, method="fast")
    slow = saal_scores(model, x, method="functorch")
    assert torch.isnan(fast[BAD]).all() and torch.isnan(slow[BAD]).all()
    keep = [i for i in range(N_CAND) if i not in BAD]
    torch.testing.assert_close(fast[keep], slow[keep], rtol=1e-4, atol=1e-6)
    for steps in (1, 3):
        assert torch.isnan(saal_scores(model, x, method="fast", ascent_steps=steps)[BAD]).all()


def test_vote_based_scores_are_nan_for_nonfinite_probabilities():
    probs = torch.full((5, 3, 4), 0.25, dtype=torch.float64)  # [T, M, C]
    probs[:, 0] = torch.tensor([0.7, 0.1, 0.1, 0.1], dtype=torch.float64)  # unanimous: 0
    probs[2, 1, 0] = math.nan  # one pass of candidate 1 is NaN
    probs[:, 2] = math.nan
    for fn in (variation_ratio, vote_entropy):
        s = fn(probs)
        assert float(s[0]) == 0.0 and torch.isnan(s[1:]).all(), fn.__name__


def test_badge_names_nonfinite_outputs_not_a_wrong_head(setup):
    data, _, model, _ = setup
    a, z = gradient_factors(model, data.x_train[:N_CAND])  # no error about the head
    bad = ~torch.isfinite(a).all(1)
    assert bad.nonzero()[:, 0].tolist() == BAD


def test_noise_stability_names_nonfinite_parameters():
    model = tiny_cnn().eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        model.conv[0].weight[0, 0, 0, 0] = math.nan
    with pytest.raises(ValueError, match="non-finite") as err:
        noise_stability_embedding(model, x, K=1)
    assert "zero norm" not in str(err.value)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    with pytest.raises(ValueError, match="zero norm"):
        noise_stability_embedding(model, x, K=1)
