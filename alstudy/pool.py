"""Labeled / unlabeled bookkeeping for the AL loop: initial set, acquisitions, candidate subsets."""

from __future__ import annotations

import torch

__all__ = ["Pool", "initial_indices", "INITIAL_MODES"]

INITIAL_MODES = ("random", "balanced", "all_classes")


class Pool:
    """Which training examples are labeled, in the order they were acquired.

    Args:
        n: Size of the training pool.
        labeled: Initially labeled indices.
        candidates: Default candidate-subset size per cycle (``None`` = every unlabeled example).
    """

    def __init__(self, n: int, labeled: torch.Tensor | None = None, candidates: int | None = None):
        self.n = int(n)
        self.mask = torch.zeros(self.n, dtype=torch.bool)  # [n] True = labeled
        self.order: list[int] = []
        self.default_candidates = candidates
        if labeled is not None:
            self.add(labeled)

    @property
    def labeled(self) -> torch.Tensor:
        """Labeled indices in acquisition order ``[n_labeled]``."""
        return torch.tensor(self.order, dtype=torch.long)

    @property
    def unlabeled(self) -> torch.Tensor:
        """Unlabeled indices, ascending ``[n_unlabeled]``."""
        return (~self.mask).nonzero().flatten()

    @property
    def n_labeled(self) -> int:
        return len(self.order)

    def add(self, indices: torch.Tensor) -> None:
        """Label ``indices`` (must be in range, unlabeled and distinct)."""
        idx = torch.as_tensor(indices, dtype=torch.long).flatten()
        if idx.numel() == 0:
            return
        if int(idx.min()) < 0 or int(idx.max()) >= self.n:
            raise ValueError(f"indices out of range [0, {self.n}): min {int(idx.min())}, max {int(idx.max())}")
        if idx.unique().numel() != idx.numel():
            raise ValueError("indices to label contain duplicates")
        if bool(self.mask[idx].any()):
            raise ValueError(f"indices already labeled: {idx[self.mask[idx]].tolist()[:10]}")
        self.mask[idx] = True
        self.order.extend(idx.tolist())

    def candidates(self, size: int | None, generator: torch.Generator) -> torch.Tensor:
        """A random subset of ``size`` unlabeled indices (ascending), or all when ``size`` is None."""
        pool = self.unlabeled
        size = self.default_candidates if size is None else size
        if size is None or size >= pool.numel():
            return pool
        pick = torch.randperm(pool.numel(), generator=generator)[:size]
        return pool[pick].sort().values


def initial_indices(y: torch.Tensor, size: int, mode: str, generator: torch.Generator,
                    num_classes: int | None = None, max_tries: int = 10_000) -> torch.Tensor:
    """Draw the initial labeled set.

    Args:
        y: Training targets ``[N]``.
        size: Number of examples.
        mode: ``random``; ``balanced`` (``size // C`` per class, remainder at random);
            ``all_classes`` (uniform draws repeated until every class is present; for
            ``size == C``, or when ``max_tries`` draws all miss a class, one random member of
            each class and the rest uniformly from the remaining examples).
        generator: Seeded CPU generator.
        num_classes: Number of classes (``None`` for regression: only ``random`` applies).
        max_tries: Redraw limit for ``all_classes`` before it builds the set directly.

    Returns:
        Sorted indices ``[size]``.
    """
    n = y.shape[0]
    if not 0 <= size <= n:
        raise ValueError(f"initial size must be in [0, {n}], got {size}")
    if mode not in INITIAL_MODES:
        raise ValueError(f"unknown initial mode {mode!r}; allowed: {list(INITIAL_MODES)}")
    if mode != "random" and num_classes is None:
        raise ValueError(f"initial mode {mode!r} needs class labels; use 'random' for regression")
    if mode == "random":
        return torch.randperm(n, generator=generator)[:size].sort().values
    if mode == "all_classes":
        if size < num_classes:
            raise ValueError(f"initial size {size} < {num_classes} classes: 'all_classes' is impossible")
        if size == num_classes:  # one per class is exactly the uniform draw among covering sets
            return _one_per_class_then_random(y, size, generator, num_classes)
        for _ in range(max_tries):
            idx = torch.randperm(n, generator=generator)[:size]
            if y[idx].unique().numel() == num_classes:
                return idx.sort().values
        return _one_per_class_then_random(y, size, generator, num_classes)
    per = size // num_classes
    chosen = []
    for c in range(num_classes):
        members = (y == c).nonzero().flatten()
        if members.numel() < per:
            raise ValueError(f"class {c} has {members.numel()} examples, fewer than {per} per class")
        chosen.append(members[torch.randperm(members.numel(), generator=generator)[:per]])
    idx = torch.cat(chosen)
    rest = size - idx.numel()
    if rest:
        mask = torch.ones(n, dtype=torch.bool)
        mask[idx] = False
        others = mask.nonzero().flatten()
        idx = torch.cat([idx, others[torch.randperm(others.numel(), generator=generator)[:rest]]])
    return idx.sort().values


def _one_per_class_then_random(y: torch.Tensor, size: int, generator: torch.Generator,
                               num_classes: int) -> torch.Tensor:
    """One uniformly drawn member of every class, then ``size - C`` uniform others (sorted).

    For ``size == C`` this is exactly a uniform draw among the sets that hold every class.

    Raises:
        ValueError: A class has no example.
    """
    firsts = []
    for c in range(num_classes):
        members = (y == c).nonzero().flatten()
        if members.numel() == 0:
            raise ValueError(f"class {c} has no example: 'all_classes' is impossible")
        firsts.append(members[torch.randint(members.numel(), (1,), generator=generator)])
    idx = torch.cat(firsts)  # [C]
    mask = torch.ones(y.shape[0], dtype=torch.bool)
    mask[idx] = False
    others = mask.nonzero().flatten()
    rest = others[torch.randperm(others.numel(), generator=generator)[: size - num_classes]]
    return torch.cat([idx, rest]).sort().values
