"""Tests for alstudy.selection against naive, obviously-correct references."""

import itertools
import math
import warnings
from collections import Counter

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from alstudy.selection import (
    NonFiniteScoreWarning,
    finite_centers,
    finite_first,
    finite_rows,
    kcenter_greedy,
    kcenter_greedy_from_sqdist,
    kdpp,
    kdpp_from_eig,
    kmeanspp,
    kmeanspp_from_sqdist,
    select_subset,
    topk,
)

P_MIN = 1e-3  # chi-square acceptance threshold


def gen(seed):
    return torch.Generator().manual_seed(seed)


def pairwise_dist(A, B):
    """[n, m] Euclidean distances, float64, by broadcasting (the naive way)."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    return np.sqrt(((A[:, None, :] - B[None, :, :]) ** 2).sum(-1))


# --------------------------------------------------------------------------- #
# k-center greedy
# --------------------------------------------------------------------------- #
def ref_kcenter(X, budget, centers=None):
    """Brute-force farthest-first: full distance matrix + python loop."""
    X = np.asarray(X, dtype=np.float64)
    n = len(X)
    D = pairwise_dist(X, X)
    if centers is None:
        mind = np.sqrt((X**2).sum(1))  # start from the origin
    elif len(centers) == 0:
        mind = np.full(n, np.inf)
    else:
        mind = pairwise_dist(X, centers).min(1)
    chosen = []
    for _ in range(budget):
        best = None
        for i in range(n):
            if i in chosen:
                continue
            if best is None or mind[i] > mind[best]:  # strict: first max wins
                best = i
        chosen.append(best)
        mind = np.minimum(mind, D[best])
    return chosen


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("with_centers", [False, True])
def test_kcenter_matches_bruteforce(seed, with_centers):
    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(5, 60)), int(rng.integers(1, 8))
    X = rng.normal(size=(n, d)) * rng.uniform(0.1, 10)
    C = rng.normal(size=(int(rng.integers(1, 10)), d)) if with_centers else None
    budget = int(rng.integers(0, n + 1))
    got = kcenter_greedy(
        torch.tensor(X, dtype=torch.float32), budget,
        centers=None if C is None else torch.tensor(C, dtype=torch.float32),
    )
    assert got.dtype == torch.long and got.shape == (budget,)
    assert got.tolist() == ref_kcenter(X.astype(np.float32), budget, C)


def test_kcenter_float64_and_origin_start():
    rng = np.random.default_rng(10)
    X = rng.normal(size=(40, 3))
    got = kcenter_greedy(torch.tensor(X), 15)  # float64 input
    assert got.tolist() == ref_kcenter(X, 15)
    assert got[0].item() == int(np.argmax(np.linalg.norm(X, axis=1)))  # largest norm first


def test_kcenter_ties_lowest_index_and_duplicates():
    # small-integer grid with repeated rows: distances are exact, many exact ties
    grid = np.array(list(itertools.product(range(3), range(3))), dtype=np.float32)
    X = np.concatenate([grid, grid[::-1], grid[:4]])  # duplicates
    n = len(X)
    for centers in (None, grid[:2], np.zeros((0, 2), np.float32)):
        got = kcenter_greedy(
            torch.tensor(X), n, centers=None if centers is None else torch.tensor(centers)
        ).tolist()
        assert got == ref_kcenter(X, n, centers)
        assert sorted(got) == list(range(n))  # budget == N: a permutation, no repeats


def _offset_instance(seed, n=300, m=40, d=16, n_dup=25):
    """Points with a large common offset (||x|| ~ 1200) and spacing ~ 6, some of them exact
    copies of the centres (their distance to the centres is exactly 0)."""
    rng = np.random.default_rng(seed)
    offset = rng.normal(size=d)
    offset *= 1200.0 / np.linalg.norm(offset)
    X = (offset + rng.normal(size=(n, d)) * 6.0 / math.sqrt(2 * d)).astype(np.float32)  # [n, d]
    C = (offset + rng.normal(size=(m, d)) * 6.0 / math.sqrt(2 * d)).astype(np.float32)  # [m, d]
    dup = rng.choice(n, n_dup, replace=False)
    X[dup] = C[rng.integers(0, m, n_dup)]
    return X, C, dup


@pytest.mark.parametrize("seed", range(20))
def test_kcenter_large_offset_matches_float64_bruteforce(seed):
    from alstudy.selection import _min_dist_to_centers

    X, C, dup = _offset_instance(seed)
    init = _min_dist_to_centers(torch.tensor(X), torch.tensor(C)).numpy()  # [n], float32
    ref = pairwise_dist(X, C).min(1)  # [n], float64 from the same float32 inputs
    assert np.all(init[dup] == 0.0)  # exact copies of a centre: distance exactly 0
    np.testing.assert_allclose(init, ref, rtol=1e-6, atol=0)  # float32 precision
    budget = 60
    got = kcenter_greedy(torch.tensor(X), budget, centers=torch.tensor(C))
    assert got.tolist() == ref_kcenter(X, budget, C)


def test_kcenter_empty_centers_start_at_index_zero():
    X = torch.randn(10, 3)
    assert kcenter_greedy(X, 1, centers=torch.zeros(0, 3)).tolist() == [0]


def test_kcenter_from_sqdist_equals_wrapper():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(30, 4))
    D2 = pairwise_dist(X, X) ** 2
    got = kcenter_greedy_from_sqdist(lambda i: torch.tensor(D2[i]), torch.tensor((X**2).sum(1)), 12)
    assert got.tolist() == ref_kcenter(X, 12)


def test_kcenter_budget_zero_and_errors():
    X = torch.randn(5, 2)
    assert kcenter_greedy(X, 0).shape == (0,)
    with pytest.raises(ValueError, match="budget=6.*N=5"):
        kcenter_greedy(X, 6)
    with pytest.raises(ValueError, match="-1"):
        kcenter_greedy(X, -1)
    with pytest.raises(ValueError, match=r"2\.0"):
        kcenter_greedy(X, 2.0)
    with pytest.raises(ValueError, match=r"\(5,\)"):
        kcenter_greedy(torch.randn(5), 1)
    with pytest.raises(ValueError, match="D=3"):
        kcenter_greedy(X, 1, centers=torch.randn(2, 3))
    with pytest.raises(ValueError, match="non-finite"):
        kcenter_greedy(torch.tensor([[0.0, float("nan")]]), 1)


# --------------------------------------------------------------------------- #
# k-means++
# --------------------------------------------------------------------------- #
def test_kmeanspp_never_repeats():
    base = torch.randn(6, 3, generator=gen(0))
    dup = torch.cat([base, base, base[:2]])  # duplicated rows -> D^2 = 0 ties
    const = torch.ones(7, 2)  # all rows equal -> uniform fallback
    for seed in range(30):
        for X in (dup, const, torch.randn(12, 2, generator=gen(100 + seed))):
            for first in ("random", "max_norm"):
                got = kmeanspp(X, len(X), gen(seed), first=first).tolist()
                assert sorted(got) == list(range(len(X)))
            got = kmeanspp(X, 4, gen(seed)).tolist()
            assert len(set(got)) == 4


def test_kmeanspp_reproducible():
    X = torch.randn(200, 5, generator=gen(1))
    a = kmeanspp(X, 20, gen(7))
    b = kmeanspp(X, 20, gen(7))
    c = kmeanspp(X, 20, gen(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    g = gen(9)
    g.manual_seed(9)
    assert torch.equal(kmeanspp(X, 20, g), kmeanspp(X, 20, gen(9)))
    # max_norm: first pick is the largest-norm row
    assert kmeanspp(X, 3, gen(0), first="max_norm")[0].item() == int(X.norm(dim=1).argmax())


def test_kmeanspp_second_pick_distribution():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 2))
    D2 = pairwise_dist(X, X) ** 2
    first = int(np.argmax(np.linalg.norm(X, axis=1)))
    g = gen(123)
    n_draws = 20000
    counts = Counter(
        kmeanspp_from_sqdist(lambda i: torch.tensor(D2[i]), 5, 2, g, first_index=first)[1].item()
        for _ in range(n_draws)
    )
    assert first not in counts
    p = D2[first] / D2[first].sum()  # D^2 / sum D^2 (p[first] == 0)
    others = [j for j in range(5) if j != first]
    stat = chisquare([counts[j] for j in others], [n_draws * p[j] for j in others])
    assert stat.pvalue > P_MIN
    # the public wrapper (first="max_norm") agrees with the low-level call
    got = kmeanspp(torch.tensor(X), 2, gen(5), first="max_norm")
    assert got[0].item() == first


def test_kmeanspp_joint_three_picks_distribution():
    """Ordered triples (uniform first, then D^2 w.r.t. the NEAREST chosen centre)."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(5, 2))
    D2 = pairwise_dist(X, X) ** 2
    exact = {}
    for a, b, c in itertools.permutations(range(5), 3):
        m1 = D2[a]
        m2 = np.minimum(D2[a], D2[b])
        exact[(a, b, c)] = (1 / 5) * (m1[b] / m1.sum()) * (m2[c] / m2.sum())
    assert math.isclose(sum(exact.values()), 1.0)
    g = gen(321)
    n_draws = 20000
    counts = Counter(
        tuple(kmeanspp_from_sqdist(lambda i: torch.tensor(D2[i]), 5, 3, g).tolist())
        for _ in range(n_draws)
    )
    assert set(counts) <= set(exact)
    keys = sorted(exact)
    stat = chisquare([counts[k] for k in keys], [n_draws * exact[k] for k in keys])
    assert stat.pvalue > P_MIN


def test_kmeanspp_errors():
    X = torch.randn(5, 2)
    with pytest.raises(ValueError, match="budget=6"):
        kmeanspp(X, 6, gen(0))
    with pytest.raises(ValueError, match="generator"):
        kmeanspp(X, 2, None)
    with pytest.raises(ValueError, match="'furthest'"):
        kmeanspp(X, 2, gen(0), first="furthest")
    with pytest.raises(ValueError, match="first_index"):
        kmeanspp_from_sqdist(lambda i: torch.zeros(5), 5, 2, gen(0), first_index=5)
    assert kmeanspp(X, 0, gen(0)).shape == (0,)


# --------------------------------------------------------------------------- #
# k-DPP
# --------------------------------------------------------------------------- #
def exact_kdpp_probs(L, k):
    subsets = list(itertools.combinations(range(len(L)), k))
    dets = np.array([np.linalg.det(L[np.ix_(s, s)]) for s in subsets])
    return dict(zip(subsets, dets / dets.sum()))


def check_kdpp_frequencies(draw, L, k, n_draws):
    exact = exact_kdpp_probs(L, k)
    assert min(exact.values()) * n_draws >= 5  # chi-square validity
    counts = Counter()
    for _ in range(n_draws):
        s = draw()
        assert len(set(s)) == k
        counts[tuple(sorted(s))] += 1
    keys = sorted(exact)
    stat = chisquare([counts[s] for s in keys], [n_draws * exact[s] for s in keys])
    assert stat.pvalue > P_MIN, (stat, counts)


@pytest.mark.parametrize("k", [2, 3])
def test_kdpp_linear_matches_exact(k):
    rng = np.random.default_rng(k)
    F = np.eye(6) + 0.5 * rng.normal(size=(6, 6))  # full-rank features
    L = F @ F.T
    g = gen(k)
    Xt = torch.tensor(F)
    check_kdpp_frequencies(lambda: kdpp(Xt, k, g).tolist(), L, k, 10000)


def test_kdpp_rbf_matches_exact_via_eig():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(6, 2))
    gamma = 0.7
    L = np.exp(-gamma * pairwise_dist(X, X) ** 2)
    lam, V = np.linalg.eigh(L)
    g = gen(11)
    lam_t, V_t = torch.tensor(lam), torch.tensor(V)
    check_kdpp_frequencies(lambda: kdpp_from_eig(lam_t, V_t, 3, g).tolist(), L, 3, 10000)
    # the public wrapper builds the same kernel: same generator -> same picks
    assert torch.equal(
        kdpp(torch.tensor(X), 3, gen(4), kernel="rbf", gamma=gamma), kdpp_from_eig(lam_t, V_t, 3, gen(4))
    )


def test_kdpp_misc():
    X = torch.randn(30, 4, generator=gen(0))
    assert sorted(kdpp(X, 4, gen(1)).tolist()) == sorted(set(kdpp(X, 4, gen(1)).tolist()))
    assert torch.equal(kdpp(X, 4, gen(1)), kdpp(X, 4, gen(1)))
    Y = torch.randn(8, 8, generator=gen(2))
    assert sorted(kdpp(Y, 8, gen(0)).tolist()) == list(range(8))  # budget == N == rank
    assert sorted(kdpp(X, 30, gen(0), kernel="rbf").tolist()) == list(range(30))
    assert kdpp(X, 0, gen(0)).shape == (0,)
    with pytest.raises(ValueError, match="rank 4 < budget=5"):
        kdpp(X, 5, gen(0))  # linear kernel with D = 4
    with pytest.raises(ValueError, match="'poly'"):
        kdpp(X, 2, gen(0), kernel="poly")
    with pytest.raises(ValueError, match="-1"):
        kdpp(X, 2, gen(0), kernel="rbf", gamma=-1.0)


# --------------------------------------------------------------------------- #
# top-k
# --------------------------------------------------------------------------- #
def test_topk_ties_lower_index_first():
    s = torch.tensor([1.0, 3.0, 3.0, 2.0, 3.0, 2.0])
    assert topk(s, 6).tolist() == [1, 2, 4, 3, 5, 0]
    assert topk(s, 2).tolist() == [1, 2]
    assert topk(torch.tensor([5, 7, 7, 1]), 3).tolist() == [1, 2, 0]  # int scores


def test_topk_nonfinite_warns_and_ranks_last():
    s = torch.tensor([float("nan"), 1.0, float("inf"), float("nan"), -5.0, -float("inf")])
    with pytest.warns(NonFiniteScoreWarning, match=r"4 of 6 candidates have non-finite scores "
                                                   r"\(2 NaN, 1 \+inf, 1 -inf\)"):
        got = topk(s, 6).tolist()
    assert got == [1, 4, 0, 2, 3, 5]  # finite first, then non-finite in index order
    with pytest.warns(NonFiniteScoreWarning):
        assert topk(s, 2).tolist() == [1, 4]
    with pytest.warns(NonFiniteScoreWarning):
        assert topk(torch.full((4,), float("nan")), 4).tolist() == [0, 1, 2, 3]


def test_finite_first_is_the_rule_for_any_selector():
    X = torch.randn(8, 3, generator=gen(0))
    X[[1, 5], 2] = float("nan")
    a = torch.zeros(8, 2)
    a[6, 0] = float("inf")
    seen = []

    def select(keep, k):
        seen.append((keep.tolist(), k))
        return torch.arange(k).flip(0)  # positions into keep, in reverse

    with pytest.warns(NonFiniteScoreWarning, match="3 of 8 candidates have non-finite rows"):
        got = finite_first((X, a), 7, select, label="test", what="rows")
    assert seen == [([0, 2, 3, 4, 7], 5)]
    assert got.tolist() == [7, 4, 3, 2, 0, 1, 5]  # then the non-finite, lowest index first
    assert finite_rows(X, a).tolist() == [True, False, True, True, True, False, False, True]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert finite_first(torch.ones(4), 2, lambda keep, k: torch.arange(k)).tolist() == [0, 1]
    with pytest.raises(ValueError, match="same number of rows"):
        finite_first((torch.ones(4), torch.ones(3)), 2, lambda keep, k: torch.arange(k))
    C = torch.ones(3, 2)
    C[1, 1] = float("nan")
    with pytest.warns(NonFiniteScoreWarning, match="1 of 3 labeled examples"):
        assert finite_centers(C).shape == (2, 2)


@pytest.mark.parametrize("seed", range(5))
def test_topk_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 10, size=200).astype(np.float64)  # many ties
    if seed % 2:
        s = rng.normal(size=200)
    for k in (0, 1, 17, 200):
        ref = np.argsort(-s, kind="stable")[:k]
        assert topk(torch.tensor(s), k).tolist() == ref.tolist()
        assert topk(torch.tensor(s, dtype=torch.float32), k).tolist() == np.argsort(
            -s.astype(np.float32), kind="stable"
        )[:k].tolist()


def test_topk_errors():
    with pytest.raises(ValueError, match="budget=4.*N=3"):
        topk(torch.zeros(3), 4)
    with pytest.raises(ValueError, match="-2"):
        topk(torch.zeros(3), -2)
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        topk(torch.zeros(2, 2), 1)


# --------------------------------------------------------------------------- #
# dispatch and shared validation
# --------------------------------------------------------------------------- #
def test_select_subset_dispatch():
    X = torch.randn(50, 6, generator=gen(0))
    C = torch.randn(5, 6, generator=gen(1))
    assert torch.equal(select_subset("kcenter", X, 7, None, centers=C), kcenter_greedy(X, 7, centers=C))
    assert torch.equal(select_subset("kmeanspp", X, 7, gen(3)), kmeanspp(X, 7, gen(3)))
    assert torch.equal(select_subset("kdpp", X, 5, gen(3)), kdpp(X, 5, gen(3)))
    with pytest.raises(ValueError, match="'bald'.*kcenter.*kdpp.*kmeanspp"):
        select_subset("bald", X, 3, gen(0))
    with pytest.raises(ValueError, match="centers"):
        select_subset("kmeanspp", X, 3, gen(0), centers=C)


@pytest.mark.parametrize("method", ["kcenter", "kmeanspp", "kdpp"])
def test_errors_name_bad_value(method):
    X = torch.randn(5, 3)
    with pytest.raises(ValueError, match="budget=6.*N=5"):
        select_subset(method, X, 6, gen(0))
    with pytest.raises(ValueError, match="budget=-1"):
        select_subset(method, X, -1, gen(0))
    with pytest.raises(ValueError, match=r"3-D.*\(2, 2, 2\)"):
        select_subset(method, torch.randn(2, 2, 2), 1, gen(0))
    with pytest.raises(ValueError, match="True"):
        select_subset(method, X, True, gen(0))
