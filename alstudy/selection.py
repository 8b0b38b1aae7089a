"""Subset-selection primitives for deep active learning.

Every selector takes a feature matrix ``X`` ([N, D]) and a ``budget`` and
returns a 1-D ``torch.LongTensor`` of ``budget`` distinct row indices, always on
the CPU (indices are small; the CPU is where datasets are indexed).

* :func:`kcenter_greedy` - Gonzalez farthest-first traversal (Core-Set k-center
  greedy, Sener & Savarese 2018; NoiseStability's diversity step).
* :func:`kmeanspp` - k-means++ D^2 seeding as used by BADGE (Ash et al. 2020).
* :func:`kdpp` - exact k-DPP sampling (Kulesza & Taskar 2011).
* :func:`topk` - the ``budget`` largest scores, deterministic ties.
* :func:`select_subset` - dispatch by name over the three set selectors.
* :func:`finite_first` - the one rule for candidates with non-finite scores
  (NaN or +-inf): a :class:`NonFiniteScoreWarning` says how many, they are
  ranked last and never picked while a finite candidate remains. Every
  scorer-based strategy goes through it (:func:`topk` does).

The greedy and k-means++ selectors are built on "from_sqdist" kernels that
only ever need the squared distances from one point to all points
(``sq_dist_to(i) -> [N]``), so that a caller with a factorised distance (e.g.
BADGE's gradient embeddings, ``||g_i - g_j||^2`` computed from the factors)
never has to materialise the embedding matrix, and nothing here ever builds an
N x N matrix (except :func:`kdpp`, whose kernel matrix is N x N by definition).

This module deliberately imports nothing from ``alstudy``.
"""

import math
import warnings

import numpy as np
import torch

__all__ = [
    "kcenter_greedy",
    "kcenter_greedy_from_sqdist",
    "kmeanspp",
    "kmeanspp_from_sqdist",
    "kdpp",
    "kdpp_from_eig",
    "topk",
    "select_subset",
    "finite_rows",
    "finite_first",
    "finite_centers",
    "NonFiniteScoreWarning",
]

# Upper bound on the number of elements of one [N, m] block when distances to
# a set of centres are computed chunk by chunk (2**23 float32 = 32 MiB).
_CHUNK_ELEMENTS = 1 << 23
# Elements of one [rows, centres] block of expanded squared distances in the
# k-center initialisation (2**21 float32 = 8 MiB: as fast as larger blocks on
# 60000 x 300 points and 5000 centres, with less peak memory).
_BLOCK_ELEMENTS = 1 << 21


# --------------------------------------------------------------------------- #
# validation helpers
# --------------------------------------------------------------------------- #
def _check_budget(budget, n=None):
    """Validate ``budget`` (a non-negative Python/numpy int, at most ``n``)."""
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)):
        raise ValueError(
            f"budget must be an int in [0, N], got {budget!r} "
            f"(type {type(budget).__name__})"
        )
    budget = int(budget)
    if budget < 0:
        upper = "N" if n is None else f"N={n}"
        raise ValueError(f"budget must be an int in [0, {upper}], got budget={budget}")
    if n is not None and budget > n:
        raise ValueError(
            f"budget={budget} exceeds the number of points N={n}; "
            f"budget must be in [0, {n}]"
        )
    return budget


def _check_X(X, name="X"):
    """Validate a 2-D finite feature matrix and return it as a float tensor.

    float64 input stays float64; every other dtype is computed in float32.
    """
    if not isinstance(X, torch.Tensor):
        X = torch.as_tensor(np.asarray(X))
    if X.dim() != 2:
        raise ValueError(
            f"{name} must be a 2-D tensor [N, D], got {X.dim()}-D with shape "
            f"{tuple(X.shape)}"
        )
    if X.dtype != torch.float64:
        X = X.to(torch.float32)
    # amax/amin propagate NaN and expose +-inf without allocating an [N, D] mask
    if X.numel() and not (math.isfinite(float(X.amax())) and math.isfinite(float(X.amin()))):
        n_bad = int((~torch.isfinite(X)).sum())
        raise ValueError(f"{name} contains {n_bad} non-finite values (NaN/inf); all must be finite")
    return X


def _check_generator(generator):
    if not isinstance(generator, torch.Generator):
        raise ValueError(
            f"generator must be a torch.Generator on the CPU, got {generator!r}"
        )
    if generator.device.type != "cpu":
        raise ValueError(
            f"generator must be a CPU torch.Generator, got one on device {generator.device}"
        )
    return generator


def _sample_index(weights, generator):
    """Draw one index with probability proportional to ``weights``.

    Args:
        weights: [n] non-negative float64 CPU tensor with a positive, finite sum.
        generator: CPU ``torch.Generator`` supplying the single uniform draw.

    Returns:
        int: an index ``j`` with ``weights[j] > 0``.
    """
    cdf = torch.cumsum(weights, 0)  # [n], non-decreasing
    total = cdf[-1]
    u = torch.rand((), generator=generator, dtype=torch.float64)
    r = u * total
    j = int(torch.searchsorted(cdf, r.reshape(1), right=True)[0])
    # r < total in exact arithmetic, so cdf[j] > r >= cdf[j-1] and weights[j] > 0;
    # guard against the rounding case r == total.
    if j >= weights.numel() or not weights[j] > 0:
        j = int(torch.nonzero(weights > 0)[-1, 0])
    return j


# --------------------------------------------------------------------------- #
# k-center greedy (farthest-first traversal)
# --------------------------------------------------------------------------- #
def kcenter_greedy_from_sqdist(sq_dist_to, init_min_sq, budget):
    """Farthest-first traversal driven by a squared-distance oracle.

    At each step the point whose squared distance to its nearest chosen centre
    is largest is picked (``torch.argmax``, which returns the first maximum, so
    ties go to the lowest index), then the running minimum is updated with the
    distances to the new centre only: O(N) memory beyond the oracle.

    Args:
        sq_dist_to: Callable ``sq_dist_to(i: int) -> Tensor[N]`` returning the
            squared distances from point ``i`` to all N points (any device,
            must be >= 0 up to rounding; it is clamped at 0). Only argmax and
            minimum are used, so any fixed increasing transform of the distance
            (e.g. plain distances) gives the same picks, provided
            ``init_min_sq`` uses the same transform.
        init_min_sq: [N] tensor of initial squared distances of every point
            to its nearest pre-existing centre (``+inf`` where there is none,
            ``||x||^2`` for an origin start). Must be >= 0 and not NaN.
            Not modified.
        budget: Number of points to pick, an int in [0, N].

    Returns:
        torch.LongTensor: [budget] distinct indices on the CPU, in pick order.

    Raises:
        ValueError: If ``init_min_sq`` is not 1-D, contains NaN or negative
            values, if ``budget`` is not an int in [0, N], or if the oracle
            returns a tensor of the wrong shape.
    """
    if not isinstance(init_min_sq, torch.Tensor) or init_min_sq.dim() != 1:
        raise ValueError(
            "init_min_sq must be a 1-D tensor [N], got "
            f"{getattr(init_min_sq, 'shape', type(init_min_sq).__name__)}"
        )
    n = init_min_sq.numel()
    budget = _check_budget(budget, n)
    if budget == 0:
        return torch.empty(0, dtype=torch.long)
    if bool(torch.isnan(init_min_sq).any()) or bool((init_min_sq < 0).any()):
        raise ValueError("init_min_sq must contain squared distances >= 0 (no NaN, no negatives)")
    if not init_min_sq.is_floating_point():
        init_min_sq = init_min_sq.to(torch.float32)
    min_sq = init_min_sq.clone()  # [N]; chosen points are set to -inf
    picks = []
    for _ in range(budget):
        i = int(torch.argmax(min_sq))  # first maximum -> lowest index on ties
        picks.append(i)
        d = sq_dist_to(i)  # [N]
        if d.shape != (n,):
            raise ValueError(f"sq_dist_to({i}) returned shape {tuple(d.shape)}, expected ({n},)")
        d = d.to(device=min_sq.device, dtype=min_sq.dtype).clamp_min(0)
        torch.minimum(min_sq, d, out=min_sq)
        min_sq[i] = -math.inf  # never picked again (real distances are >= 0)
    return torch.tensor(picks, dtype=torch.long)


def _dist_to_row(X, c):
    """Euclidean distances from every row of X to one row c.

    Args:
        X: [N, D] float tensor.
        c: [1, D] tensor, same dtype/device.

    Returns:
        Tensor: [N] distances. ``torch.cdist`` in direct (non-matmul) mode: no
        [N, D] temporary, one pass over X, exactly 0 for identical rows.
    """
    return torch.cdist(X, c, compute_mode="donot_use_mm_for_euclid_dist")[:, 0]  # [N, 1] -> [N]


def _row_sq_norms(X):
    """Exact (sum of squares) squared row norms, in row chunks of bounded size.

    Args:
        X: [N, D] float tensor.

    Returns:
        Tensor: [N] ``sum_d X[n, d]**2``; temporaries are at most
        ``_CHUNK_ELEMENTS`` elements instead of a full [N, D] copy.
    """
    rows = max(1, _CHUNK_ELEMENTS // max(X.shape[1], 1))  # rows per [rows, D] temporary
    out = X.new_empty(X.shape[0])  # [N]
    for s in range(0, X.shape[0], rows):
        out[s : s + rows] = X[s : s + rows].square().sum(dim=1)
    return out


def _min_dist_to_centers(X, C):
    """Distance of each row of X to its nearest row of C, exact for coinciding rows.

    The nearest centre is found with the matmul expansion
    ``||x - mu||^2 - 2 (x - mu).(c - mu) + ||c - mu||^2`` on data centred at the centres' mean
    ``mu`` (fast, and centring removes any large common offset, whose square would otherwise
    swamp the differences in float32), in blocks of at most ``_BLOCK_ELEMENTS`` distances over
    rows of X and centres; the distance to that centre is then recomputed from the direct
    difference ``x - c``. The result is the distance to the true nearest centre up to float32
    rounding of that difference (exactly 0 for a row equal to a centre); only centres tied
    with the nearest one within the expansion's rounding can be chosen instead.

    Args:
        X: [N, D] float tensor.
        C: [M, D] tensor with the same dtype/device as X, M >= 1.

    Returns:
        Tensor: [N] minimum Euclidean distances.
    """
    n, d = X.shape
    mu = C.mean(dim=0, dtype=torch.float64).to(X.dtype)  # [D]
    Cc = C - mu  # [M, D], centred centres
    c_sq = _row_sq_norms(Cc)  # [M]
    rows = max(1, min(n, 4096, _CHUNK_ELEMENTS // max(d, 1)))  # rows of X per [rows, D] temporary
    cols = max(1, _BLOCK_ELEMENTS // rows)  # centres per [rows, cols] block
    best = torch.full((n,), math.inf, dtype=X.dtype, device=X.device)  # [N] min expanded sq dist
    nearest = torch.zeros(n, dtype=torch.long, device=X.device)  # [N] index of that centre
    out = X.new_empty(n)  # [N]
    for s in range(0, n, rows):
        Xb = X[s : s + rows] - mu  # [r, D], centred rows
        x_sq = Xb.square().sum(dim=1, keepdim=True)  # [r, 1]
        b_best, b_near = best[s : s + rows], nearest[s : s + rows]  # views, [r]
        for t in range(0, C.shape[0], cols):
            block = (Xb @ Cc[t : t + cols].T).mul_(-2).add_(x_sq).add_(c_sq[t : t + cols])  # [r, c]
            v, j = block.min(dim=1)  # [r], [r]
            better = v < b_best
            b_best.copy_(torch.where(better, v, b_best))
            b_near.copy_(torch.where(better, j + t, b_near))
        # direct difference to the nearest centre: no cancellation, 0 for identical rows
        out[s : s + rows] = torch.linalg.vector_norm(X[s : s + rows] - C[b_near], dim=1)
    return out


def kcenter_greedy(X, budget, centers=None):
    """Greedy k-center (Gonzalez farthest-first traversal).

    Each pick is the point farthest (Euclidean) from its nearest centre. The
    running min-distance vector [N] is updated against the newest centre only
    (one pass over X per pick, O(N*D) memory, never an N x N matrix).

    Start:
      * ``centers=None``: start from the origin, i.e. the initial distance of
        x is ``||x||`` and the first pick is the largest-norm row (behaviour of
        the official NoiseStability code).
      * ``centers`` [M, D]: already chosen points (e.g. labeled-set
        embeddings, the Core-Set k-center); initial distances are computed
        against them in blocks of at most ~2**21 distances. With M == 0 every
        initial distance is +inf, so the first pick is index 0.

    Per-pick distances (and the origin start) use ``torch.cdist`` in direct
    (non-matmul) mode, which is exact for identical rows (distance 0) and
    needs no [N, D] temporary; the chunked initialisation against ``centers``
    finds each point's nearest centre with the matmul form on data centred at
    the centres' mean (for speed) and then recomputes the distance to that
    centre from the direct difference, so it matches a brute-force float64
    computation to float32 precision, also under a large common offset, and is
    exactly 0 for a point equal to a centre. Plain distances are tracked (the argmax is the
    same as with squared ones). Computation is in float32, or float64 if X is
    float64, on X's device. Ties go to the lowest index; points are never
    returned twice (a point equal to a centre may still be picked once all
    others are at distance 0).

    Args:
        X: [N, D] float tensor of features, any device.
        budget: Number of points to pick, an int in [0, N].
        centers: Optional [M, D] tensor of pre-existing centres.

    Returns:
        torch.LongTensor: [budget] distinct indices into X on the CPU, in pick
        order.

    Raises:
        ValueError: If X or centers is not 2-D / not finite, the feature
            dimensions differ, or budget is not an int in [0, N].
    """
    X = _check_X(X)  # [N, D]
    n = X.shape[0]
    budget = _check_budget(budget, n)
    if centers is None:
        origin = torch.zeros(1, X.shape[1], dtype=X.dtype, device=X.device)  # [1, D]
        init = _dist_to_row(X, origin)  # [N], ||x||, same kernel as the per-pick distances
    else:
        C = _check_X(centers, name="centers").to(device=X.device, dtype=X.dtype)  # [M, D]
        if C.shape[1] != X.shape[1]:
            raise ValueError(
                f"centers has D={C.shape[1]} columns but X has D={X.shape[1]}; they must match"
            )
        if C.shape[0] == 0:
            init = torch.full((n,), math.inf, dtype=X.dtype, device=X.device)  # [N]
        else:
            init = _min_dist_to_centers(X, C)  # [N]
    if budget == 0:
        return torch.empty(0, dtype=torch.long)

    # Plain (not squared) distances: the traversal only uses argmax/minimum, so any
    # monotone transform gives the same picks, and not squaring keeps exact ties exact.
    return kcenter_greedy_from_sqdist(lambda i: _dist_to_row(X, X[i : i + 1]), init, budget)


# --------------------------------------------------------------------------- #
# k-means++ seeding (BADGE)
# --------------------------------------------------------------------------- #
def kmeanspp_from_sqdist(sq_dist_to, n, budget, generator, first_index=None):
    """k-means++ D^2 seeding driven by a squared-distance oracle.

    The first centre is ``first_index`` or, if None, uniform over ``range(n)``;
    each next centre is drawn with probability proportional to D(x)^2, the
    squared distance of x to its nearest chosen centre (running minimum, O(N)
    memory). Chosen points have D = 0 and are excluded explicitly, so indices
    never repeat; if every unchosen point has D^2 = 0 (e.g. duplicated rows)
    the draw falls back to uniform over the unchosen indices. All randomness
    comes from ``generator`` (one uniform per pick), so the same generator
    state gives the same picks.

    Args:
        sq_dist_to: Callable ``sq_dist_to(i: int) -> Tensor[n]`` of squared
            distances from point ``i`` to all points (any device; clamped at 0).
        n: Number of points, an int >= 0.
        budget: Number of centres, an int in [0, n].
        generator: CPU ``torch.Generator``.
        first_index: Optional int in [0, n) forcing the first centre (no
            randomness is consumed for it).

    Returns:
        torch.LongTensor: [budget] distinct indices on the CPU, in pick order.

    Raises:
        ValueError: On a bad ``n``, ``budget``, ``generator`` or
            ``first_index``, or if the oracle returns a wrong shape or NaN.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    n = int(n)
    budget = _check_budget(budget, n)
    _check_generator(generator)
    if first_index is not None:
        if (
            isinstance(first_index, bool)
            or not isinstance(first_index, (int, np.integer))
            or not 0 <= first_index < n
        ):
            raise ValueError(f"first_index must be an int in [0, {n}), got {first_index!r}")
        first_index = int(first_index)
    if budget == 0:
        return torch.empty(0, dtype=torch.long)

    def dist(i):
        d = sq_dist_to(i)
        if d.shape != (n,):
            raise ValueError(f"sq_dist_to({i}) returned shape {tuple(d.shape)}, expected ({n},)")
        d = d.detach().to(device="cpu", dtype=torch.float64)  # [n]
        if bool(torch.isnan(d).any()):
            raise ValueError(f"sq_dist_to({i}) returned NaN distances")
        return d.clamp_min_(0)

    if first_index is None:
        first_index = int(torch.randint(n, (1,), generator=generator)[0])
    picks = [first_index]
    chosen = torch.zeros(n, dtype=torch.bool)  # [n]
    chosen[first_index] = True
    min_sq = dist(first_index)  # [n]
    for _ in range(budget - 1):
        w = min_sq.masked_fill(chosen, 0.0)  # [n]
        if bool(torch.isinf(w).any()):  # overflowed distances: uniform among them
            w = torch.isinf(w).to(torch.float64)
        elif not float(w.sum()) > 0:  # all remaining D^2 == 0 -> uniform on unchosen
            w = (~chosen).to(torch.float64)
        j = _sample_index(w, generator)
        picks.append(j)
        chosen[j] = True
        torch.minimum(min_sq, dist(j), out=min_sq)
    return torch.tensor(picks, dtype=torch.long)


def kmeanspp(X, budget, generator, first="random"):
    """k-means++ D^2 seeding as used by BADGE (Ash et al., ICLR 2020).

    Plain D^2 sampling: each next centre is drawn with probability
    proportional to the squared Euclidean distance to its nearest chosen
    centre; there is no "ghost" centre at the origin and indices never repeat
    (uniform fallback over unchosen points when all remaining D^2 are 0).
    sklearn's ``kmeans_plusplus`` is not reused because it does greedy local
    trials (2 + log k candidates per step) with a numpy RandomState, which is a
    different distribution from BADGE's single D^2 draw.

    Args:
        X: [N, D] float tensor (any device; float32, or float64 if given).
        budget: Number of centres, an int in [0, N].
        generator: CPU ``torch.Generator`` used for all randomness.
        first: How the first centre is chosen: ``"random"`` (default; uniform,
            the k-means++ of Arthur & Vassilvitskii) or ``"max_norm"`` (the
            largest-norm row, lowest index on ties - what BADGE's released
            code does).

    Returns:
        torch.LongTensor: [budget] distinct indices on the CPU, in pick order.

    Raises:
        ValueError: If X is not a finite 2-D tensor, budget is not an int in
            [0, N], generator is not a CPU torch.Generator, or ``first`` is not
            one of "random", "max_norm".
    """
    X = _check_X(X)  # [N, D]
    n = X.shape[0]
    budget = _check_budget(budget, n)
    _check_generator(generator)
    if first not in ("random", "max_norm"):
        raise ValueError(f"first must be 'random' or 'max_norm', got {first!r}")
    if budget == 0:
        return torch.empty(0, dtype=torch.long)
    first_index = int(torch.argmax(_row_sq_norms(X))) if first == "max_norm" else None

    return kmeanspp_from_sqdist(
        lambda i: _dist_to_row(X, X[i : i + 1]).square(), n, budget, generator, first_index=first_index
    )


# --------------------------------------------------------------------------- #
# exact k-DPP sampling
# --------------------------------------------------------------------------- #
def _log_esp(log_lam, k):
    """Log elementary symmetric polynomials table.

    Args:
        log_lam: [N] float64 numpy array of log eigenvalues (``-inf`` for 0).
        k: Largest order needed.

    Returns:
        np.ndarray: [k+1, N+1] with ``out[l, m] = log e_l(lam_1..lam_m)``,
        via ``e_l^m = e_l^{m-1} + lam_m e_{l-1}^{m-1}`` in log space.
    """
    n = log_lam.shape[0]
    out = np.full((k + 1, n + 1), -np.inf)  # [k+1, N+1]
    out[0, :] = 0.0  # e_0 = 1
    for m in range(1, n + 1):
        out[1:, m] = np.logaddexp(out[1:, m - 1], log_lam[m - 1] + out[:-1, m - 1])
    return out


def kdpp_from_eig(eigvals, eigvecs, budget, generator):
    """Exact k-DPP sample given the eigendecomposition of the kernel L.

    Phase 1 (Kulesza & Taskar, DPP monograph Alg. 8): pick k eigenvectors,
    going from the last eigenvalue to the first, keeping eigenvector m with
    probability ``lam_m e_{l-1}^{m-1} / e_l^m`` (l = number still needed),
    with the elementary symmetric polynomials computed in log space (float64).
    Phase 2 (Alg. 1): sample the projection DPP with kernel ``V V^T``: each
    item is drawn with probability proportional to the squared row norm of V
    projected orthogonally to the chosen items' coordinates. This is
    implemented in the equivalent incremental Gram-Schmidt/Cholesky form
    (O(N k) per item instead of re-orthogonalising V).

    Args:
        eigvals: [N] eigenvalues of L (values below the rank tolerance
            ``max|lam| * N * eps`` are treated as 0).
        eigvecs: [N, N] orthonormal eigenvectors (columns) of L.
        budget: Subset size k, an int in [0, N].
        generator: CPU ``torch.Generator`` used for all randomness.

    Returns:
        torch.LongTensor: [budget] distinct indices on the CPU, in pick order.

    Raises:
        ValueError: If shapes disagree, budget is not an int in [0, N],
            the generator is invalid, or rank(L) < budget (a k-DPP then has
            no subset with positive probability; no jitter is added).
    """
    lam = torch.as_tensor(eigvals).detach().to("cpu", torch.float64)  # [N]
    V_all = torch.as_tensor(eigvecs).detach().to("cpu", torch.float64)  # [N, N]
    if lam.dim() != 1 or V_all.dim() != 2 or V_all.shape[0] != lam.numel() or V_all.shape[1] != lam.numel():
        raise ValueError(
            f"eigvals must be [N] and eigvecs [N, N], got {tuple(lam.shape)} and {tuple(V_all.shape)}"
        )
    n = lam.numel()
    budget = _check_budget(budget, n)
    _check_generator(generator)
    if budget == 0:
        return torch.empty(0, dtype=torch.long)
    tol = float(lam.abs().max()) * n * float(torch.finfo(torch.float64).eps)
    lam = torch.where(lam > tol, lam, torch.zeros_like(lam))
    rank = int((lam > 0).sum())
    if rank < budget:
        raise ValueError(
            f"kernel rank {rank} < budget={budget}: every subset of size {budget} has "
            "det(L_S) = 0, so the k-DPP is undefined (use a kernel of higher rank, e.g. "
            "kernel='rbf', or a smaller budget)"
        )

    # Phase 1: choose the eigenvectors.
    with np.errstate(divide="ignore"):
        log_lam = np.log(lam.numpy())  # [N]
    E = _log_esp(log_lam, budget)  # [k+1, N+1]
    u = torch.rand(n, generator=generator, dtype=torch.float64).numpy()  # [N]
    sel = []
    need = budget
    for m in range(n, 0, -1):
        if need == 0:
            break
        if m == need:
            p = 1.0
        else:
            # python floats: -inf - -inf -> nan (p = nan never accepts), no numpy warning
            p = math.exp(float(log_lam[m - 1]) + float(E[need - 1, m - 1]) - float(E[need, m]))
        if u[m - 1] < p:
            sel.append(m - 1)
            need -= 1
    V = V_all[:, sel]  # [N, k], orthonormal columns

    # Phase 2: sample from the projection DPP K = V V^T.
    k = budget
    norms2 = V.square().sum(dim=1)  # [N], diag of K; sums to k
    C = torch.zeros(n, k, dtype=torch.float64)  # [N, k] incremental Cholesky factor of K
    chosen = torch.zeros(n, dtype=torch.bool)  # [N]
    picks = []
    for t in range(k):
        w = norms2.clamp_min(0).masked_fill(chosen, 0.0)  # [N]
        if not float(w.sum()) > 0:  # only possible through rounding
            w = (~chosen).to(torch.float64)
        j = _sample_index(w, generator)
        picks.append(j)
        chosen[j] = True
        c = V @ V[j] - C[:, :t] @ C[j, :t]  # [N], K[:, j] minus projections
        c = c / math.sqrt(max(float(norms2[j]), 1e-300))
        C[:, t] = c
        norms2 = norms2 - c.square()
    return torch.tensor(picks, dtype=torch.long)


def kdpp(X, budget, generator, kernel="linear", gamma=None):
    """Exact k-DPP sampling (Kulesza & Taskar, ICML 2011 "k-DPPs").

    Builds ``L`` in float64, eigendecomposes it with ``torch.linalg.eigh`` and
    calls :func:`kdpp_from_eig`; P(S) = det(L_S) / sum_{|S'|=k} det(L_S').
    The N x N kernel makes this O(N^2) memory and O(N^3) time: fine for N up
    to a few thousand. No maintained DPP package is available in this
    environment (dppy is not installed), so this is a self-contained
    implementation.

    Args:
        X: [N, D] float tensor of features (any device).
        budget: Subset size k, an int in [0, N].
        generator: CPU ``torch.Generator`` used for all randomness.
        kernel: ``"linear"`` (``L = X X^T``, rank <= D) or ``"rbf"``
            (``L_ij = exp(-gamma ||x_i - x_j||^2)``).
        gamma: RBF bandwidth > 0; default ``1 / median`` of the pairwise
            squared distances over pairs i < j that are > 0 (median
            heuristic; 1.0 if all points coincide). Ignored for "linear".

    Returns:
        torch.LongTensor: [budget] distinct indices on the CPU.

    Raises:
        ValueError: If X is not a finite 2-D tensor, budget is not an int in
            [0, N], kernel is unknown, gamma is not > 0, the generator is not a
            CPU torch.Generator, or rank(L) < budget (no jitter is added; for
            the linear kernel this happens whenever budget > D).
    """
    X = _check_X(X)  # [N, D]
    n = X.shape[0]
    budget = _check_budget(budget, n)
    _check_generator(generator)
    if kernel not in ("linear", "rbf"):
        raise ValueError(f"kernel must be 'linear' or 'rbf', got {kernel!r}")
    if gamma is not None and not (isinstance(gamma, (int, float)) and gamma > 0 and math.isfinite(gamma)):
        raise ValueError(f"gamma must be a finite number > 0 or None, got {gamma!r}")
    if budget == 0:
        return torch.empty(0, dtype=torch.long)
    X64 = X.to(torch.float64)  # [N, D]
    if kernel == "linear":
        L = X64 @ X64.T  # [N, N]
    else:
        sq = torch.cdist(X64, X64).square()  # [N, N]
        if gamma is None:
            iu = torch.triu_indices(n, n, offset=1, device=sq.device)
            pair = sq[iu[0], iu[1]]  # [N(N-1)/2]
            pair = pair[pair > 0]
            gamma = 1.0 / float(pair.median()) if pair.numel() else 1.0
        L = torch.exp(-gamma * sq)  # [N, N]
    L = 0.5 * (L + L.T)  # exact symmetry for eigh
    lam, V = torch.linalg.eigh(L)  # [N], [N, N]
    return kdpp_from_eig(lam, V, budget, generator)


# --------------------------------------------------------------------------- #
# top-k and dispatch
# --------------------------------------------------------------------------- #
class NonFiniteScoreWarning(RuntimeWarning):
    """Some candidates had non-finite scores (NaN or +-inf) and were ranked last."""


def _as_rows(t, n=None):
    """``t`` as a 2-D [N, -1] view (a 1-D [N] tensor becomes [N, 1])."""
    if not isinstance(t, torch.Tensor):
        t = torch.as_tensor(np.asarray(t))
    if t.dim() == 0:
        raise ValueError(f"values must have a first (candidate) dimension, got a scalar {t!r}")
    if n is not None and t.shape[0] != n:
        raise ValueError(
            f"all values must have the same number of rows N={n}, got {tuple(t.shape)}"
        )
    return t[:, None] if t.dim() == 1 else t.flatten(1)


def finite_rows(*tensors):
    """Which rows are entirely finite in every given tensor.

    Args:
        *tensors: One or more tensors with the same first dimension N (any
            shape ``[N, ...]``, any device, any real dtype).

    Returns:
        torch.BoolTensor: [N] on the CPU, True where every entry of that row
        in every tensor is finite (not NaN, not +-inf).
    """
    rows = [_as_rows(tensors[0])]
    rows += [_as_rows(t, rows[0].shape[0]) for t in tensors[1:]]
    ok = torch.ones(rows[0].shape[0], dtype=torch.bool)  # [N]
    for r in rows:
        if not r.is_floating_point() or r.numel() == 0:
            continue
        # amax/amin propagate NaN: the common all-finite case needs no [N, D] mask
        if math.isfinite(float(r.amax())) and math.isfinite(float(r.amin())):
            continue
        ok &= torch.isfinite(r).all(dim=1).cpu()
    return ok


def finite_first(values, budget, select, *, label="selection", what="scores"):
    """Select ``budget`` candidates, ranking those with non-finite values last.

    The rule shared by every scorer: ``select`` runs on the candidates whose
    values are all finite; candidates with a NaN or +-inf value fill whatever
    budget is left, in index order, so none is picked while a finite
    candidate remains. When any value is non-finite a
    :class:`NonFiniteScoreWarning` names how many candidates are affected.

    Args:
        values: [N] or [N, ...] tensor, or a tuple of such tensors with the
            same N; a candidate is finite when all its entries in all of them are.
        budget: Number of candidates, an int in [0, N].
        select: Callable ``select(keep, k) -> LongTensor[k]`` returning
            positions into ``keep`` ([F] ascending CPU indices of the finite
            candidates), with ``k = min(budget, F)`` >= 1.
        label: Who selects; starts the warning (e.g. ``"strategy 'saal'"``).
        what: What the values are, for the warning (e.g. ``"scores"``).

    Returns:
        torch.LongTensor: [budget] distinct indices into range(N) on the CPU;
        the finite candidates' picks (in ``select``'s order) come first.

    Raises:
        ValueError: If the tensors' first dimensions differ or ``budget`` is
            not an int in [0, N].
    """
    tensors = values if isinstance(values, (tuple, list)) else (values,)
    ok = finite_rows(*tensors)  # [N]
    n = ok.numel()
    budget = _check_budget(budget, n)
    n_bad = n - int(ok.sum())
    if n_bad:
        detail = ""
        first = _as_rows(tensors[0])
        if len(tensors) == 1 and first.shape[1] == 1 and first.is_floating_point():
            v = first[:, 0].detach().cpu()
            detail = (f" ({int(torch.isnan(v).sum())} NaN, {int((v == math.inf).sum())} +inf, "
                      f"{int((v == -math.inf).sum())} -inf)")
        warnings.warn(
            f"{label}: {n_bad} of {n} candidates have non-finite {what}{detail}; they are "
            f"ranked last and picked only after every finite candidate",
            NonFiniteScoreWarning,
            stacklevel=3,
        )
    keep = torch.nonzero(ok)[:, 0]  # [F], ascending
    k = min(budget, keep.numel())
    picks = keep[select(keep, k).to("cpu", torch.long)] if k else torch.empty(0, dtype=torch.long)
    rest = torch.nonzero(~ok)[:, 0][: budget - k]  # non-finite, lowest index first
    return torch.cat([picks, rest]).to(torch.long)


def finite_centers(centers, *, label="selection", what="embeddings"):
    """Drop pre-existing centres (e.g. labeled examples) whose rows are not finite.

    Args:
        centers: [M, D] tensor or None.
        label: Who selects; starts the warning.
        what: What the rows are, for the warning.

    Returns:
        ``centers`` without its non-finite rows (None stays None); a
        :class:`NonFiniteScoreWarning` says how many were dropped.
    """
    if centers is None:
        return None
    ok = finite_rows(centers)  # [M]
    n_bad = ok.numel() - int(ok.sum())
    if not n_bad:
        return centers
    warnings.warn(
        f"{label}: {n_bad} of {ok.numel()} labeled examples have non-finite {what}; they are "
        f"not used as k-center centres",
        NonFiniteScoreWarning,
        stacklevel=2,
    )
    return centers[ok.to(centers.device)]


def topk(scores, budget, *, label="topk"):
    """Indices of the ``budget`` largest scores, deterministic ties.

    A stable descending sort, so among equal scores the lower index comes
    first. Non-finite scores (NaN, +inf, -inf) follow :func:`finite_first`:
    a warning says how many, they are ranked after every finite score, among
    themselves in index order.

    Args:
        scores: [N] tensor or array-like of scores (any device, any real dtype).
        budget: Number of indices, an int in [0, N].
        label: Who ranks, for the warning (e.g. ``"strategy 'entropy'"``).

    Returns:
        torch.LongTensor: [budget] distinct indices on the CPU, best first.

    Raises:
        ValueError: If scores is not 1-D or budget is not an int in [0, N].
    """
    if not isinstance(scores, torch.Tensor):
        scores = torch.as_tensor(np.asarray(scores))
    if scores.dim() != 1:
        raise ValueError(f"scores must be 1-D [N], got shape {tuple(scores.shape)}")
    n = scores.numel()
    budget = _check_budget(budget, n)
    s = scores.detach().to("cpu")  # [N]
    if s.dtype == torch.bool or s.is_complex():
        raise ValueError(f"scores must be real numbers, got dtype {s.dtype}")

    def by_score(keep, k):
        return torch.sort(s[keep], descending=True, stable=True).indices[:k]  # [k]

    return finite_first(s, budget, by_score, label=label, what="scores")


def _select_kcenter(X, budget, generator, centers):
    return kcenter_greedy(X, budget, centers=centers)


def _select_kmeanspp(X, budget, generator, centers):
    if centers is not None:
        raise ValueError("centers is only supported by method='kcenter', got centers for 'kmeanspp'")
    return kmeanspp(X, budget, generator)


def _select_kdpp(X, budget, generator, centers):
    if centers is not None:
        raise ValueError("centers is only supported by method='kcenter', got centers for 'kdpp'")
    return kdpp(X, budget, generator)


_METHODS = {
    "kcenter": _select_kcenter,
    "kmeanspp": _select_kmeanspp,
    "kdpp": _select_kdpp,
}


def select_subset(method, X, budget, generator, centers=None):
    """Select ``budget`` rows of X with a named set-selection method.

    Args:
        method: One of ``"kcenter"`` (:func:`kcenter_greedy`, deterministic,
            ``generator`` unused and may be None), ``"kmeanspp"``
            (:func:`kmeanspp`, first centre uniform) or ``"kdpp"``
            (:func:`kdpp`, linear kernel).
        X: [N, D] float tensor of features.
        budget: Number of points, an int in [0, N].
        generator: CPU ``torch.Generator`` (required for the random methods).
        centers: Optional [M, D] pre-existing centres; only for "kcenter".

    Returns:
        torch.LongTensor: [budget] distinct indices on the CPU.

    Raises:
        ValueError: For an unknown method (the message lists the allowed
            names), ``centers`` given to a method other than "kcenter", or any
            error of the underlying selector.
    """
    fn = _METHODS.get(method) if isinstance(method, str) else None
    if fn is None:
        raise ValueError(f"unknown method {method!r}; allowed: {sorted(_METHODS)}")
    return fn(X, budget, generator, centers)
