"""Labeled-pool bookkeeping and initial sets."""

import pytest
import torch

from alstudy.pool import Pool, initial_indices


def test_add_tracks_order_and_rejects_bad_indices():
    pool = Pool(10, torch.tensor([3, 1]))
    pool.add(torch.tensor([7]))
    assert pool.labeled.tolist() == [3, 1, 7]
    assert pool.unlabeled.tolist() == [0, 2, 4, 5, 6, 8, 9]
    for bad in ([1], [10], [4, 4]):
        with pytest.raises(ValueError):
            pool.add(torch.tensor(bad))


def test_candidates_are_unlabeled_random_subsets():
    pool = Pool(100, torch.arange(10))
    g = torch.Generator().manual_seed(0)
    cands = pool.candidates(20, g)
    assert cands.numel() == 20 and cands.unique().numel() == 20 and int(cands.min()) >= 10
    assert torch.equal(pool.candidates(None, g), pool.unlabeled)
    assert torch.equal(pool.candidates(1000, g), pool.unlabeled)


@pytest.mark.parametrize("mode", ["random", "balanced", "all_classes"])
def test_initial_modes(mode):
    y = torch.arange(1000) % 10
    idx = initial_indices(y, 20, mode, torch.Generator().manual_seed(1), num_classes=10)
    assert idx.numel() == 20 and idx.unique().numel() == 20
    counts = torch.bincount(y[idx], minlength=10)
    if mode == "balanced":
        assert counts.tolist() == [2] * 10
    if mode == "all_classes":
        assert bool((counts > 0).all())


def test_initial_errors():
    y = torch.arange(100) % 10
    with pytest.raises(ValueError, match="10 classes"):
        initial_indices(y, 5, "all_classes", torch.Generator(), num_classes=10)
    with pytest.raises(ValueError, match="regression"):
        initial_indices(torch.randn(50), 5, "balanced", torch.Generator(), num_classes=None)


def test_all_classes_with_one_example_per_class_never_fails():
    """initial_size == number of classes: a direct draw (one per class), for every seed."""
    from alstudy import data

    y = data.load("digits").y_train
    sets = []
    for seed in range(201):
        idx = initial_indices(y, 10, "all_classes", torch.Generator().manual_seed(seed), num_classes=10)
        assert sorted(y[idx].tolist()) == list(range(10)) and idx.unique().numel() == 10
        again = initial_indices(y, 10, "all_classes", torch.Generator().manual_seed(seed), num_classes=10)
        assert torch.equal(idx, again)
        sets.append(tuple(idx.tolist()))
    assert len(set(sets)) == len(sets)  # uniform draws within each class, not one fixed set


def test_all_classes_falls_back_to_a_direct_draw():
    y = torch.arange(200) % 10
    draw = lambda seed: initial_indices(y, 12, "all_classes", torch.Generator().manual_seed(seed),
                                        num_classes=10, max_tries=0)
    idx = draw(3)
    assert idx.numel() == 12 and idx.unique().numel() == 12
    assert torch.bincount(y[idx], minlength=10).min() >= 1
    assert torch.equal(idx, draw(3)) and not torch.equal(idx, draw(4))
    with pytest.raises(ValueError, match="class 9 has no example"):
        initial_indices(y[y != 9], 10, "all_classes", torch.Generator(), num_classes=10)
