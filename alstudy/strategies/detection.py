"""Acquisition strategies for object detection (SAAL §4.2): SAAL, Entropy and BADGE on SSD.

Every strategy here reads the detector's *pseudo boxes* — its own detections with class
probability >= ``confidence`` (at least ``min_boxes`` per image) — and the default boxes that
*correspond* to them (``corresponding``: ``source`` = the prior each detection was decoded
from; ``matched`` = the priors SSD's matching assigns to the pseudo boxes); see
:mod:`alstudy.detection.acquisition`. The paper fixes none of these choices; they are options
with the defaults below. Random and LL4AL (:mod:`.random_sampling`, :mod:`.ll4al`) apply to
detection unchanged (LL4AL's module reads SSD's source feature maps and learns the per-image
MultiBox loss, as in Yoo & Kweon's SSD experiment).

* ``saal_detection`` – "we perturb the parameters to maximize the classification loss; and use
  the summation of the perturbed loss from every corresponding detection box in the image x as
  the acquisition score for x. Afterward, we select the images with the highest scores."
  Score ``Σ_j CE(conf_j(x; θ + ε_x), ŷ_j)`` over the corresponding priors j, with
  ``ε_x = ρ g_x/‖g_x‖`` the SAM step of the summed clean loss (every parameter), top-b images.
  Open choices: ``confidence`` (0.5), ``min_boxes`` (1), ``corresponding`` (``source``),
  ``rho`` (0.05, the paper's value for classification; §4.2 does not restate it).
* ``entropy_detection`` – entropy of the (C + 1)-way class distribution (background included)
  at each corresponding prior, aggregated per image by ``aggregate`` (default ``max``, the
  most uncertain box, as in Roy et al., BMVC 2018; ``sum`` and ``mean`` are options).
* ``badge_detection`` – k-means++ seeding on gradient embeddings: the gradient, w.r.t. the
  class-score convolutions of every source map (SSD's last classification layer), of the same
  summed pseudo-box classification loss SAAL perturbs. The exact gradient is compressed with a
  fixed CountSketch to ``sketch_dim`` dimensions (inner products and distances preserved in
  expectation; ``null`` keeps it exact), drawn from the selection generator.
"""

from __future__ import annotations

import torch

from ..detection.acquisition import (CORRESPONDING, box_entropies, conf_head_gradients,
                                     perturbed_detection_losses, pseudo_boxes, pseudo_targets)
from ..selection import kmeanspp, topk
from .base import Strategy, check_budget, choice, integer, number, register

__all__ = ["SAALDetection", "EntropyDetection", "BADGEDetection", "AGGREGATES"]

AGGREGATES = ("max", "sum", "mean")


class _PseudoBoxStrategy(Strategy):
    """Shared options and steps: candidates, pseudo boxes and their corresponding priors."""

    tasks = ("detection",)
    options = {
        "confidence": number(0.5, 0.0, 1.0, help="smallest class probability of a pseudo box"),
        "min_boxes": integer(1, 0, help="pseudo boxes every image keeps at least (best first)"),
        "corresponding": choice("source", CORRESPONDING,
                                "priors carrying a pseudo box's loss: its source prior or SSD's matches"),
        "batch_size": integer(64, 1, help="images per inference batch"),
    }

    def _pseudo(self, model, x):
        o = self.opts
        dets = pseudo_boxes(model, x, confidence=o["confidence"], min_boxes=o["min_boxes"],
                            batch_size=o["batch_size"])
        return dets, pseudo_targets(dets, model.priors, o["corresponding"])

    def _prepare(self, model, data, pool, budget, generator):
        self.check_task(data.task)
        cands = self.candidate_indices(pool, generator)  # [M]
        check_budget(budget, cands.numel())
        model.eval()
        return cands, data.x_train[cands]


@register
class SAALDetection(_PseudoBoxStrategy):
    """SAAL on a detector: summed perturbed classification loss of the pseudo boxes (§4.2)."""

    name = "saal_detection"
    options = {
        **_PseudoBoxStrategy.options,
        "rho": number(0.05, 0.0, help="perturbation radius ρ"),
        "chunk_size": integer(None, 1, allow_none=True, help="images per batched chunk"),
    }

    def score(self, model, x, *, generator=None) -> torch.Tensor:
        """Perturbed pseudo-box loss ``[M]`` of each image (higher = label first).

        Args:
            model: Trained SSD.
            x: Candidate images ``[M, C, H, W]``.
            generator: Unused (the score is deterministic).

        Returns:
            Scores ``[M]`` (CPU).
        """
        _, targets = self._pseudo(model, x)
        perturbed, _, _ = perturbed_detection_losses(model, x, targets, rho=self.opts["rho"],
                                                     chunk_size=self.opts["chunk_size"])
        return perturbed

    def select(self, model, data, pool, budget, generator, context=None) -> torch.Tensor:
        """Top-``budget`` candidates by :meth:`score`.

        Args:
            model: Trained SSD.
            data: Detection dataset.
            pool: Labeled / unlabeled bookkeeping.
            budget: Images to select.
            generator: CPU generator (candidate subset).
            context: Unused.

        Returns:
            LongTensor ``[budget]`` of training-set indices.

        Raises:
            ValueError: A dataset that is not a detection task, or a budget above the candidates.
        """
        cands, x = self._prepare(model, data, pool, budget, generator)
        return cands[topk(self.score(model, x), budget)]


@register
class EntropyDetection(_PseudoBoxStrategy):
    """Entropy of the pseudo boxes' class distributions, aggregated per image (max by default)."""

    name = "entropy_detection"
    options = {
        **_PseudoBoxStrategy.options,
        "aggregate": choice("max", AGGREGATES, "image score from the box entropies"),
    }

    def score(self, model, x, *, generator=None) -> torch.Tensor:
        """Aggregated box entropy ``[M]`` of each image (an image without pseudo boxes: 0).

        Args:
            model: Trained SSD.
            x: Candidate images ``[M, C, H, W]``.
            generator: Unused.

        Returns:
            Scores ``[M]`` (float64, CPU).
        """
        _, targets = self._pseudo(model, x)
        h = box_entropies(model, x, targets, self.opts["batch_size"])  # [M, K]
        w = targets.weight.double()
        agg = self.opts["aggregate"]
        if agg == "max":
            return torch.where(w > 0, h, torch.zeros_like(h)).max(1).values
        if agg == "sum":
            return (h * w).sum(1)
        return (h * w).sum(1) / w.sum(1).clamp_min(1)

    def select(self, model, data, pool, budget, generator, context=None) -> torch.Tensor:
        """Top-``budget`` candidates by :meth:`score` (see :meth:`SAALDetection.select`)."""
        cands, x = self._prepare(model, data, pool, budget, generator)
        return cands[topk(self.score(model, x), budget)]


@register
class BADGEDetection(_PseudoBoxStrategy):
    """k-means++ seeding on the pseudo-box loss gradient of SSD's class-score layer."""

    name = "badge_detection"
    options = {
        **_PseudoBoxStrategy.options,
        "first": choice("random", ("random", "max_norm"),
                        "first k-means++ centre: uniform (paper) or largest norm (BADGE's code)"),
        "sketch_dim": integer(1024, 1, allow_none=True,
                              help="CountSketch dimension of the gradient (null = exact)"),
        "chunk_size": integer(None, 1, allow_none=True, help="images per batched chunk"),
    }

    def embeddings(self, model, x, generator: torch.Generator) -> torch.Tensor:
        """Gradient embeddings ``[M, D]`` of the candidates (sketched unless ``sketch_dim`` is null).

        Args:
            model: Trained SSD.
            x: Candidate images.
            generator: CPU generator of the CountSketch hash (drawn first).

        Returns:
            float64 ``[M, D]``.
        """
        _, targets = self._pseudo(model, x)
        dim = self.opts["sketch_dim"]
        bucket = sign = None
        if dim is not None:
            n = sum(p.numel() for p in model.head.conf.parameters())
            bucket = torch.randint(dim, (n,), generator=generator)
            sign = torch.randint(2, (n,), generator=generator).double() * 2 - 1
        return conf_head_gradients(model, x, targets, chunk_size=self.opts["chunk_size"],
                                   sketch=bucket, sketch_sign=sign, sketch_dim=dim)

    def select(self, model, data, pool, budget, generator, context=None) -> torch.Tensor:
        """k-means++ seeding of ``budget`` candidates on :meth:`embeddings`.

        Args:
            model: Trained SSD.
            data: Detection dataset.
            pool: Labeled / unlabeled bookkeeping.
            budget: Images to select.
            generator: CPU generator (candidate subset, sketch hash, D² sampling).
            context: Unused.

        Returns:
            LongTensor ``[budget]`` of training-set indices, in pick order.
        """
        cands, x = self._prepare(model, data, pool, budget, generator)
        emb = self.embeddings(model, x, generator)
        return cands[kmeanspp(emb, budget, generator, first=self.opts["first"])]
