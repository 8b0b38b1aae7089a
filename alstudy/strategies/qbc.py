"""Query-by-committee (Seung, Opper & Sompolinsky, 1992; Freund et al., 1997).

A committee of M models is trained on the labeled set each cycle, from different random
initialisations (``resample: seeds``, the deep-AL practice) or on bootstrap resamples of the
labeled set (``resample: bootstrap``, query-by-bagging, Abe & Mamitsuka 1998). Candidates are
ranked by the committee's disagreement (Settles, *Active Learning Literature Survey*, 2009,
Section 3.2):

* ``vote_entropy`` (Dagan & Engelson, 1995; survey Eq. 3.1):
  −Σ_c (V(c)/M) log(V(c)/M), with V(c) the number of members whose arg-max class is c.
* ``consensus_kl`` (McCallum & Nigam, 1998; survey Eq. 3.2):
  (1/M) Σ_m KL(P_m ‖ P_C), with the consensus P_C = (1/M) Σ_m P_m.

Members are built with the run's model factory and trained with the run's
:class:`alstudy.train.TrainConfig` (``epochs`` can shorten it). Every member's seed is drawn
from the selection generator, so the committee, and hence the selection, is deterministic.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from ..selection import topk
from ..train import fit
from ._seeding import draw_seed, seeded
from .base import Strategy, check_budget, choice, integer, register
from .uncertainty import entropy, softmax_probs

__all__ = ["committee_probs", "vote_entropy", "consensus_kl", "QBC"]


def committee_probs(members, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Softmax outputs of every committee member.

    Args:
        members: Sequence of M trained classifiers.
        x: Inputs ``[N, ...]``.
        batch_size: Inference batch size.

    Returns:
        Probabilities ``[M, N, C]`` (float64, CPU).
    """
    outs = []
    for m in members:
        m.eval()
        outs.append(softmax_probs(m, x, batch_size))  # [N, C]
    return torch.stack(outs)  # [M, N, C]


def vote_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Vote entropy −Σ_c (V(c)/M) log(V(c)/M) (Dagan & Engelson 1995; Settles Eq. 3.1).

    Args:
        probs: Committee outputs ``[M, N, C]``; each member votes for its arg-max class.

    Returns:
        ``[N]`` vote entropies in nats (0 = unanimous); NaN for an input on which any member
        has a non-finite probability (its vote would be arbitrary).
    """
    M, _, C = probs.shape
    votes = F.one_hot(probs.argmax(-1), C).sum(0).double()  # [N, C]
    bad = ~torch.isfinite(probs).all(-1).all(0)  # [N]
    return entropy(votes / M).masked_fill(bad, float("nan"))


def consensus_kl(probs: torch.Tensor) -> torch.Tensor:
    """Mean KL divergence of each member from the consensus (McCallum & Nigam 1998; Settles
    Eq. 3.2): (1/M) Σ_m Σ_c P_m,c log(P_m,c / P_C,c).

    Args:
        probs: Committee outputs ``[M, N, C]``.

    Returns:
        ``[N]`` disagreements in nats (>= 0; 0 = identical members).
    """
    consensus = probs.mean(0, keepdim=True)  # [1, N, C]
    log_ratio = torch.log(probs.clamp_min(1e-300)) - torch.log(consensus.clamp_min(1e-300))
    return (probs * log_ratio).sum(-1).mean(0)  # [N]


@register
class QBC(Strategy):
    """Committee of M retrained models; rank candidates by the committee's disagreement."""

    name = "qbc"
    tasks = ("classification",)
    options = {
        "M": integer(5, 2, help="committee size"),
        "disagreement": choice("vote_entropy", ("vote_entropy", "consensus_kl"),
                               help="disagreement measure"),
        "resample": choice("seeds", ("seeds", "bootstrap"),
                           help="members differ by initial seed only, or are trained on "
                                "bootstrap resamples of the labeled set"),
        "epochs": integer(None, 1, allow_none=True,
                          help="training epochs per member (null = the run's epochs)"),
        "batch_size": integer(1024, 1, help="inference batch size"),
    }

    def disagreement(self, probs: torch.Tensor) -> torch.Tensor:
        """The configured disagreement ``[N]`` of committee outputs ``[M, N, C]``.

        Args:
            probs: Committee outputs ``[M, N, C]``.

        Returns:
            ``[N]`` scores (higher = label first).
        """
        fn = vote_entropy if self.opts["disagreement"] == "vote_entropy" else consensus_kl
        return fn(probs)

    def train_committee(self, data, labeled: torch.Tensor, generator: torch.Generator,
                        context) -> list[torch.nn.Module]:
        """Train the M committee members on the labeled set.

        Args:
            data: The dataset.
            labeled: Labeled training indices ``[L]``.
            generator: CPU generator; one seed per member is drawn from it.
            context: :class:`alstudy.strategies.SelectionContext` (model factory, training
                config, device).

        Returns:
            The trained members (eval mode, on ``context.device``).
        """
        cfg = context.train_config
        if self.opts["epochs"] is not None:
            cfg = dataclasses.replace(cfg, epochs=self.opts["epochs"])
        x_l, y_l = data.x_train[labeled], data.y_train[labeled]  # [L, ...], [L]
        members = []
        for _ in range(self.opts["M"]):
            seed = draw_seed(generator)
            shuffle = torch.Generator().manual_seed(seed)
            idx = torch.arange(labeled.numel())  # [L]
            if self.opts["resample"] == "bootstrap":
                idx = torch.randint(labeled.numel(), (labeled.numel(),), generator=shuffle)  # [L]
            with seeded(seed, context.device):  # weight init and dropout masks
                net = context.build_model()
                fit(net, x_l[idx], y_l[idx], cfg, task=data.task, generator=shuffle,
                    device=context.device)
            members.append(net.eval())
        return members

    def select(self, model, data, pool, budget, generator, context=None) -> torch.Tensor:
        """Train a committee and pick the ``budget`` candidates it disagrees on most.

        Args:
            model: The task model (unused: the committee is trained afresh).
            data: The dataset.
            pool: Labeled / unlabeled bookkeeping.
            budget: Number of examples to select.
            generator: CPU generator (candidate subset and member seeds).
            context: Required; supplies ``build_model``, ``train_config`` and ``device``.

        Returns:
            LongTensor ``[budget]`` of training-set indices, most disagreed first.

        Raises:
            ValueError: Regression data, no context, no labeled data, or a budget above the
                number of candidates.
        """
        self.check_task(data.task)
        if context is None:
            raise ValueError("strategy 'qbc' trains a committee and needs the SelectionContext "
                             "(build_model, train_config, device) passed by the AL loop")
        labeled = pool.labeled
        if labeled.numel() == 0:
            raise ValueError("strategy 'qbc' needs labeled examples to train its committee; "
                             "set initial_size >= 1")
        cands = self.candidate_indices(pool, generator)  # [K]
        check_budget(budget, cands.numel())
        members = self.train_committee(data, labeled, generator, context)
        probs = committee_probs(members, data.x_train[cands], self.opts["batch_size"])  # [M, K, C]
        return cands[topk(self.disagreement(probs), budget, label=self.label)]
