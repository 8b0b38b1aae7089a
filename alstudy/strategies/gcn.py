"""Sequential graph convolutional networks for active learning: UncertainGCN and CoreGCN
(Caramalau, Bhattarai & Kim, "Sequential Graph Convolutional Network for Active Learning",
CVPR 2021).

The learner's features z = f(x) of the M unlabeled candidates and the L labeled examples are
the nodes of one graph. With the rows of Z l2-normalised (v_i = z_i / ‖z_i‖) and S = V Vᵀ the
cosine similarities, the adjacency is (as in the paper)

    A = D⁻¹ (S − I) + I,      D = diag(rowsum(S − I)),

i.e. self-similarity removed, rows normalised by the degree, self-loops added. A two-layer GCN
(Kipf & Welling's graph convolution H' = A H W + b) maps nodes to a confidence of being labeled,

    h = ReLU(A V W₁ + b₁)  (dropout),   s = σ(A h W₂ + b₂),

trained full-batch to separate labeled (1) from unlabeled (0) nodes with the λ-weighted binary
cross-entropy of the paper

    L = −(1/L) Σ_{i ∈ labeled} log s_i − λ (1/M) Σ_{i ∈ unlabeled} log(1 − s_i).

* **UncertainGCN** picks the candidates whose confidence is closest to the margin:
  the ``budget`` smallest |s_i − s_margin|.
* **CoreGCN** runs greedy k-center (Sener & Savarese's Algorithm 1,
  :func:`alstudy.selection.kcenter_greedy`) on the GCN's node embeddings, starting from the
  labeled nodes as centres.

Defaults follow the authors' code: 128 hidden units, dropout 0.3, Adam lr 1e-3 with weight
decay 5e-4, λ = 1.2, s_margin = 0.1, 200 full-batch epochs; CoreGCN's embedding is the
concatenation [h, A h W₂ + b₂] (hidden layer and pre-sigmoid output, the third output of the
authors' GCN). Choices, each an option:

* ``adjacency``: the code computes (S − I) D⁻¹ + I, i.e. normalises **columns** (the transpose
  of the paper's A for the symmetric S); ``variant: official`` sets ``adjacency: column``.
* ``embedding`` (CoreGCN): ``hidden_output`` ([h, logit], authors' code) or ``hidden`` (h only).
* The authors sample 10,000 unlabeled candidates per cycle; here the run's ``candidates``
  setting decides.

Edge cases (not in the paper): a node whose degree is not positive (a zero feature vector, or
signed features whose similarities sum to ≤ 0) gets 0 in D⁻¹ instead of a division by zero or
a sign flip (with row normalisation it keeps only its self-loop); the losses use
log σ(·) in its numerically stable form. Candidates with non-finite features are left out of
the graph with a warning and ranked after every finite candidate (lowest index first), so the
picks never repeat; labeled examples with non-finite features are left out of the graph.

Only the learner's features are used, never labels, so both apply to regression as well.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..models import model_device
from ..selection import kcenter_greedy, topk
from ._seeding import draw_seed, seeded
from .base import Strategy, check_budget, choice, integer, number, register
from .coreset import embed_features

__all__ = ["normalised_adjacency", "GraphConvolution", "GCN", "gcn_loss", "train_gcn",
           "UncertainGCN", "CoreGCN"]

ADJACENCY = ("row", "column")


def normalised_adjacency(features: torch.Tensor, normalisation: str = "row") -> torch.Tensor:
    """Adjacency of the feature graph (Caramalau et al.): D⁻¹(S − I) + I.

    Args:
        features: Node features ``[N, d]`` (finite; rows are l2-normalised here).
        normalisation: ``row`` = D⁻¹(S − I) + I (paper) or ``column`` = (S − I)D⁻¹ + I
            (authors' code).

    Returns:
        ``[N, N]`` adjacency in the features' dtype. A node of non-positive degree gets 0 in
        D⁻¹: with ``row`` it aggregates only itself, with ``column`` no other node reads it.

    Raises:
        ValueError: Not a 2-D tensor or an unknown ``normalisation``.
    """
    if features.dim() != 2:
        raise ValueError(f"features must be 2-D [N, d], got shape {tuple(features.shape)}")
    if normalisation not in ADJACENCY:
        raise ValueError(f"unknown adjacency normalisation {normalisation!r}; allowed: "
                         f"{list(ADJACENCY)}")
    v = F.normalize(features, dim=1)  # [N, d], zero rows stay zero
    n = v.shape[0]
    eye = torch.eye(n, dtype=v.dtype, device=v.device)  # [N, N]
    a = v @ v.T - eye  # [N, N], S - I
    deg = a.sum(1)  # [N]
    inv = torch.where(deg > 0, 1.0 / deg.clamp_min(torch.finfo(v.dtype).tiny),
                      torch.zeros_like(deg))  # [N], 0 for non-positive degrees
    a = inv[:, None] * a if normalisation == "row" else a * inv[None, :]  # D^-1 (S-I) | (S-I) D^-1
    return a + eye  # [N, N]


class GraphConvolution(nn.Module):
    """Kipf & Welling's graph convolution H' = A H W + b (initialised U(±1/√out), as in the
    authors' code).

    Args:
        in_features: Input dimension.
        out_features: Output dimension.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        bound = 1.0 / math.sqrt(out_features)
        self.weight = nn.Parameter(torch.empty(in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))

    def forward(self, h: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        """``A (h W) + b`` ``[N, out]`` for node features ``[N, in]`` and adjacency ``[N, N]``."""
        return adj @ (h @ self.weight) + self.bias


class GCN(nn.Module):
    """Two graph convolutions: h = dropout(ReLU(A V W₁ + b₁)), logit = A h W₂ + b₂.

    Args:
        in_features: Node feature dimension d.
        hidden: Hidden units (128 in the authors' code).
        dropout: Dropout rate on h (0.3 in the authors' code).
    """

    def __init__(self, in_features: int, hidden: int = 128, dropout: float = 0.3):
        super().__init__()
        self.gc1 = GraphConvolution(in_features, hidden)
        self.gc2 = GraphConvolution(hidden, 1)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of "labeled" ``[N]`` and the hidden embedding ``[N, hidden]``."""
        h = F.dropout(torch.relu(self.gc1(x, adj)), self.dropout, self.training)  # [N, hidden]
        return self.gc2(h, adj).squeeze(1), h


def gcn_loss(logits: torch.Tensor, labeled: torch.Tensor, weight: float = 1.2) -> torch.Tensor:
    """λ-weighted binary cross-entropy of labeled vs unlabeled nodes (Caramalau et al.).

    Args:
        logits: Pre-sigmoid outputs ``[N]``.
        labeled: Boolean mask ``[N]`` (True = labeled node).
        weight: λ, weight of the unlabeled term.

    Returns:
        −mean_{labeled} log σ(logit) − λ mean_{unlabeled} log(1 − σ(logit)); an empty group
        contributes 0.
    """
    lab = -F.logsigmoid(logits[labeled])  # [L]
    unl = -F.logsigmoid(-logits[~labeled])  # [M]
    zero = logits.sum() * 0.0
    return (lab.mean() if lab.numel() else zero) + weight * (unl.mean() if unl.numel() else zero)


def train_gcn(gcn: GCN, x: torch.Tensor, adj: torch.Tensor, labeled: torch.Tensor, *,
              epochs: int = 200, lr: float = 1e-3, weight_decay: float = 5e-4,
              weight: float = 1.2) -> list[float]:
    """Full-batch Adam training of the GCN on :func:`gcn_loss` (dropout from the global RNG).

    Args:
        gcn: The network (trained in place, left in eval mode).
        x: Node features ``[N, d]``.
        adj: Adjacency ``[N, N]``.
        labeled: Boolean mask ``[N]``.
        epochs: Number of full-batch steps.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        weight: λ.

    Returns:
        The loss before each step.
    """
    opt = torch.optim.Adam(gcn.parameters(), lr=lr, weight_decay=weight_decay)
    gcn.train()
    losses = []
    for _ in range(epochs):
        opt.zero_grad(set_to_none=True)
        loss = gcn_loss(gcn(x, adj)[0], labeled, weight)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    gcn.eval()
    return losses


def _finite_rows(z: torch.Tensor) -> torch.Tensor:
    """Boolean mask ``[N]`` of the rows of ``z`` ``[N, d]`` whose entries are all finite."""
    return torch.isfinite(z).all(1)


def _finite_first(ranked: torch.Tensor, finite: torch.Tensor, budget: int) -> torch.Tensor:
    """Positions into the candidates: ``ranked`` (positions among the finite candidates, best
    first) mapped back, then the non-finite candidates in ascending order, ``budget`` in all.

    Args:
        ranked: LongTensor of positions into ``finite.nonzero()``.
        finite: Boolean mask ``[M]`` of candidates with finite features.
        budget: Number of picks.

    Returns:
        LongTensor ``[budget]`` of distinct candidate positions.
    """
    order = torch.cat([finite.nonzero().flatten()[ranked], (~finite).nonzero().flatten()])
    return order[:budget]


class _SequentialGCN(Strategy):
    """Shared part of UncertainGCN and CoreGCN: the feature graph and the trained GCN."""

    options = {
        "hidden": integer(128, 1, help="GCN hidden units"),
        "dropout": number(0.3, 0.0, 1.0, help="dropout on the GCN hidden layer"),
        "epochs": integer(200, 1, help="full-batch GCN training steps"),
        "lr": number(1e-3, 0.0, low_open=True, help="Adam learning rate of the GCN"),
        "weight_decay": number(5e-4, 0.0, help="Adam weight decay of the GCN"),
        "lambda_loss": number(1.2, 0.0, help="λ, weight of the unlabeled term of the loss"),
        "adjacency": choice("row", ADJACENCY,
                            help="D^-1(S-I)+I (paper) or (S-I)D^-1+I (authors' code)"),
        "batch_size": integer(1024, 1, help="inference batch size for the learner's features"),
    }
    variants = {"official": {"adjacency": "column"}}
    tasks = ("classification", "regression")

    def __init__(self, **opts):
        super().__init__(**opts)
        self.gcn: GCN | None = None
        self.history: list[float] = []
        self.node_logits: torch.Tensor | None = None
        self.node_hidden: torch.Tensor | None = None
        self.candidate_finite: torch.Tensor | None = None

    def fit_graph(self, model, data, labeled: torch.Tensor, cands: torch.Tensor,
                  generator: torch.Generator, device: torch.device | str = "cpu"
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Build the graph of candidate + labeled nodes and train a fresh GCN on it.

        Args:
            model: Trained task model (its ``features`` are the node features).
            data: The dataset.
            labeled: Labeled training indices ``[L]``.
            cands: Candidate training indices ``[M]``.
            generator: CPU generator (one seed is drawn for initialisation and dropout).
            device: Where to train the GCN.

        Returns:
            ``(logits, hidden, is_labeled, finite)``: GCN outputs of the graph's nodes
            ``[N']`` and ``[N', hidden]`` (eval mode, on the CPU), the labeled mask ``[N']`` of
            those nodes (candidates first, in order, then labeled) and the mask ``[M]`` of
            candidates in the graph (finite features). Also kept on the instance.
        """
        model.eval()
        bs = self.opts["batch_size"]
        z = embed_features(model, data.x_train[torch.cat([cands, labeled])], bs)  # [M+L, d]
        finite = _finite_rows(z)  # [M+L]
        n_bad = int((~finite).sum())
        if n_bad:
            m_bad = int((~finite[: cands.numel()]).sum())
            warnings.warn(f"{self.name}: {n_bad} of {finite.numel()} graph nodes have non-finite "
                          f"features ({m_bad} candidates, {n_bad - m_bad} labeled); they are left "
                          f"out of the graph and such candidates are ranked last", RuntimeWarning,
                          stacklevel=3)
        is_labeled = torch.cat([torch.zeros(cands.numel(), dtype=torch.bool),
                                torch.ones(labeled.numel(), dtype=torch.bool)])[finite]  # [N']
        device = torch.device(device)
        x = z[finite].to(device)  # [N', d]
        adj = normalised_adjacency(x, self.opts["adjacency"])  # [N', N']
        x = F.normalize(x, dim=1)  # the GCN reads the l2-normalised features, as A does
        with seeded(draw_seed(generator), device):
            self.gcn = GCN(x.shape[1], self.opts["hidden"], self.opts["dropout"]).to(device)
            self.history = train_gcn(self.gcn, x, adj, is_labeled.to(device),
                                     epochs=self.opts["epochs"], lr=self.opts["lr"],
                                     weight_decay=self.opts["weight_decay"],
                                     weight=self.opts["lambda_loss"])
        with torch.no_grad():
            logits, hidden = self.gcn(x, adj)
        self.node_logits, self.node_hidden = logits.cpu(), hidden.cpu()
        self.candidate_finite = finite[: cands.numel()]
        return self.node_logits, self.node_hidden, is_labeled, self.candidate_finite

    def select(self, model, data, pool, budget, generator, context=None) -> torch.Tensor:
        """Train the GCN on candidates + labeled nodes and pick ``budget`` candidates.

        Args:
            model: Trained task model.
            data: The dataset.
            pool: Labeled / unlabeled bookkeeping.
            budget: Number of examples to select.
            generator: CPU generator (candidate subset, then the GCN seed).
            context: Optional; its ``device`` is used for the GCN.

        Returns:
            LongTensor ``[budget]`` of training-set indices, in pick order.

        Raises:
            ValueError: If ``budget`` exceeds the number of candidates.
        """
        self.check_task(data.task)
        cands = self.candidate_indices(pool, generator)  # [M]
        check_budget(budget, cands.numel())
        device = context.device if context is not None else model_device(model)
        logits, hidden, is_labeled, finite = self.fit_graph(model, data, pool.labeled, cands,
                                                            generator, device)
        ranked = self.rank(logits, hidden, is_labeled, min(budget, int(finite.sum())))
        return cands[_finite_first(ranked, finite, budget)]

    def rank(self, logits: torch.Tensor, hidden: torch.Tensor, is_labeled: torch.Tensor,
             budget: int) -> torch.Tensor:
        """Positions of the chosen candidate nodes among the candidate nodes, best first."""
        raise NotImplementedError


@register
class UncertainGCN(_SequentialGCN):
    """Candidates whose GCN confidence of being labeled is closest to s_margin."""

    name = "uncertaingcn"
    options = {**_SequentialGCN.options,
               "s_margin": number(0.1, 0.0, 1.0, help="confidence margin s_margin")}

    def rank(self, logits, hidden, is_labeled, budget) -> torch.Tensor:
        """The ``budget`` candidate nodes of smallest |σ(logit) − s_margin| (ties: lower first).

        Args:
            logits: GCN logits of all graph nodes ``[N']``.
            hidden: Unused.
            is_labeled: Labeled mask ``[N']``.
            budget: Number of picks.

        Returns:
            LongTensor ``[budget]`` of positions among the candidate nodes.
        """
        confidence = torch.sigmoid(logits[~is_labeled].double())  # [M']
        return topk(-(confidence - self.opts["s_margin"]).abs(), budget)


@register
class CoreGCN(_SequentialGCN):
    """Greedy k-center on the GCN's node embeddings, labeled nodes as initial centres."""

    name = "coregcn"
    options = {**_SequentialGCN.options,
               "embedding": choice("hidden_output", ("hidden_output", "hidden"),
                                   help="k-center on [h, logit] (authors' code) or on h")}

    def embedding(self, logits: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """Node embeddings for k-center: ``[N', hidden + 1]`` ([h, logit]) or ``[N', hidden]``."""
        if self.opts["embedding"] == "hidden":
            return hidden
        return torch.cat([hidden, logits[:, None]], 1)

    def rank(self, logits, hidden, is_labeled, budget) -> torch.Tensor:
        """Greedy k-center picks among the candidate nodes, from the labeled nodes as centres.

        Args:
            logits: GCN logits ``[N']``.
            hidden: GCN hidden embeddings ``[N', hidden]``.
            is_labeled: Labeled mask ``[N']``.
            budget: Number of picks.

        Returns:
            LongTensor ``[budget]`` of positions among the candidate nodes, in pick order.
        """
        e = self.embedding(logits, hidden)  # [N', e]
        return kcenter_greedy(e[~is_labeled], budget, centers=e[is_labeled])
