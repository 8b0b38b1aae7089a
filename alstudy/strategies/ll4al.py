"""Learning loss for active learning, LL4AL (Yoo & Kweon, CVPR 2019).

A loss-prediction module reads the task model's inner blocks (``model.intermediates``): each
block goes through global average pooling, a fully connected layer and a ReLU; the results
are concatenated and a last fully connected layer predicts the task loss l̂ (paper Fig. 3;
128 units per block in the authors' code). It is trained jointly with the task model
(paper Eq. 4):

    L = L_target(ŷ, y) + λ · L_loss(l̂, l),

where L_loss compares the two halves of the mini-batch as pairs p = (x_i, x_j) with the
margin ranking loss (paper Eq. 2–3)

    L_loss(l̂_p, l_p) = max(0, −𝟙(l_i, l_j) · (l̂_i − l̂_j) + ξ),   𝟙 = +1 if l_i > l_j else −1,

averaged over the pairs, with the true losses l treated as constants. Paper values: λ = 1,
ξ = 1. After 120 of 200 epochs the gradient from the module into the task model is stopped
(the blocks are detached); ``stop_grad_fraction`` = 0.6 keeps that ratio for any epoch count
(``stop_grad_epoch`` sets it directly). Pairs follow the authors' code: sample i of the first
half is paired with sample B − 1 − i (an odd last sample is left out), and a tie l_i = l_j
counts as −1. Candidates are ranked by the predicted loss l̂(x).

The strategy builds the module in :meth:`LearningLoss.training_hook` and keeps it to score
the candidates of the model it was trained with.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

from ..models import model_device, predict
from .base import Strategy, integer, number, register

__all__ = ["LossPredictionModule", "loss_ranking_loss", "LossPredictionHook", "LearningLoss"]


def _pool(block: torch.Tensor) -> torch.Tensor:
    """Global average pooling of a block ``[B, C, ...] -> [B, C]`` (vectors unchanged)."""
    return block.flatten(2).mean(2) if block.dim() > 2 else block


class LossPredictionModule(nn.Module):
    """Yoo & Kweon's loss-prediction module: per block GAP → FC → ReLU, concat, FC → 1.

    Args:
        channels: Channel (or feature) count of each block.
        hidden: Units of each block's fully connected layer.
    """

    def __init__(self, channels: list[int], hidden: int = 128):
        super().__init__()
        self.fcs = nn.ModuleList(nn.Linear(c, hidden) for c in channels)
        self.out = nn.Linear(hidden * len(channels), 1)

    def forward(self, blocks: list[torch.Tensor]) -> torch.Tensor:
        """Predicted loss ``[B]`` from the blocks ``[[B, C_k, ...]]``."""
        h = [torch.relu(fc(_pool(b))) for fc, b in zip(self.fcs, blocks)]  # [B, hidden] each
        return self.out(torch.cat(h, 1)).squeeze(1)  # [B]


def loss_ranking_loss(pred: torch.Tensor, target: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Margin ranking loss between predicted and true losses (Yoo & Kweon, Eq. 2–3).

    Args:
        pred: Predicted losses ``[B]``.
        target: True per-sample losses ``[B]`` (no gradient flows into them).
        margin: ξ.

    Returns:
        Scalar mean over the ⌊B/2⌋ pairs (i, B−1−i); 0 for a batch of fewer than 2.
    """
    n = pred.shape[0] // 2 * 2
    if n < 2:
        return pred.sum() * 0.0
    pred, target = pred[:n], target[:n].detach()
    d_pred = (pred - pred.flip(0))[: n // 2]  # [n/2], l̂_i − l̂_j
    d_true = (target - target.flip(0))[: n // 2]  # [n/2], l_i − l_j
    sign = 2.0 * torch.sign(torch.clamp(d_true, min=0)) - 1.0  # +1 if l_i > l_j else −1
    return torch.clamp(margin - sign * d_pred, min=0).mean()


class LossPredictionHook:
    """The :class:`alstudy.train.TrainingHook` of LL4AL: module + weighted ranking loss.

    Args:
        module: The :class:`LossPredictionModule`.
        weight: λ.
        margin: ξ.
        stop_grad_epoch: First (0-based) epoch whose blocks are detached; ``None`` = derived
            from ``stop_grad_fraction`` and the epoch count given to :meth:`setup`.
        stop_grad_fraction: Fraction of the epochs after which the blocks are detached.
    """

    def __init__(self, module: LossPredictionModule, weight: float = 1.0, margin: float = 1.0,
                 stop_grad_epoch: int | None = None, stop_grad_fraction: float = 0.6):
        self.module = module
        self.weight = weight
        self.margin = margin
        self.stop_grad_epoch = stop_grad_epoch
        self.stop_grad_fraction = stop_grad_fraction
        self.epochs: int | None = None

    def setup(self, cfg) -> None:
        """Read the epoch count of the training run (called by :func:`alstudy.train.fit`).

        Args:
            cfg: The :class:`alstudy.train.TrainConfig`.
        """
        self.epochs = int(cfg.epochs)

    def detach_from(self) -> int:
        """First epoch (0-based) whose blocks are detached from the task model.

        Returns:
            The epoch index.

        Raises:
            RuntimeError: If neither ``stop_grad_epoch`` nor the epoch count is known.
        """
        if self.stop_grad_epoch is not None:
            return self.stop_grad_epoch
        if self.epochs is None:
            raise RuntimeError("LL4AL needs the number of training epochs to place the gradient "
                               "stop; set the option 'stop_grad_epoch' or train with alstudy.train.fit")
        return int(round(self.stop_grad_fraction * self.epochs))

    def loss(self, out, blocks, y, per_sample_loss, epoch) -> torch.Tensor:
        """λ · L_loss of the batch (Yoo & Kweon, Eq. 4 without the task loss).

        Args:
            out: Model output ``[B, C]`` (unused).
            blocks: Inner blocks from ``model.intermediates``.
            y: Targets ``[B]`` (unused).
            per_sample_loss: True task losses ``[B]``.
            epoch: Current epoch (0-based).

        Returns:
            Scalar auxiliary loss.
        """
        if epoch >= self.detach_from():
            blocks = [b.detach() for b in blocks]
        pred = self.module(blocks)  # [B]
        return self.weight * loss_ranking_loss(pred, per_sample_loss, self.margin)


@register
class LearningLoss(Strategy):
    """Rank candidates by the loss predicted by a jointly trained module (Yoo & Kweon 2019)."""

    name = "ll4al"
    tasks = ("classification", "segmentation", "detection")  # segmentation: the image's mean pixel loss; detection: SSD's source maps, per-image MultiBox loss
    options = {
        "weight": number(1.0, 0.0, help="λ, weight of the loss-prediction loss"),
        "margin": number(1.0, 0.0, help="ξ, margin of the ranking loss"),
        "hidden": integer(128, 1, help="units per block in the loss-prediction module"),
        "stop_grad_fraction": number(0.6, 0.0, 1.0,
                                     help="fraction of epochs after which the module stops "
                                          "back-propagating into the model (paper: 120/200)"),
        "stop_grad_epoch": integer(None, 0, allow_none=True,
                                   help="explicit first detached epoch (overrides the fraction)"),
        "batch_size": integer(1024, 1, help="inference batch size"),
    }

    def __init__(self, **opts):
        super().__init__(**opts)
        self.hook: LossPredictionHook | None = None
        self._model_ref = None

    def training_hook(self, model, data) -> LossPredictionHook:
        """Build a loss-prediction module sized to ``model.intermediates``.

        A model trained further (warm start: the same model object as in the previous call)
        keeps its module, as in the authors' code; a new model gets a fresh module.

        Args:
            model: The task model about to be trained.
            data: The dataset (one input is run through the model to size the module).

        Returns:
            The hook to pass to :func:`alstudy.train.fit`; it is kept for scoring.

        Raises:
            ValueError: A task other than classification or segmentation.
        """
        self.check_task(data.task)
        if self.hook is not None and self._model_ref is not None and self._model_ref() is model:
            return self.hook
        was_training = model.training
        model.eval()
        with torch.no_grad():
            _, blocks = model.intermediates(data.x_train[:1].to(model_device(model)))
        model.train(was_training)
        module = LossPredictionModule([b.shape[1] for b in blocks], self.opts["hidden"])
        self.hook = LossPredictionHook(module, self.opts["weight"], self.opts["margin"],
                                       self.opts["stop_grad_epoch"], self.opts["stop_grad_fraction"])
        self._model_ref = weakref.ref(model)
        return self.hook

    def score(self, model, x, *, generator=None) -> torch.Tensor:
        """Predicted loss l̂(x) of each candidate (higher = label first).

        Args:
            model: The task model trained with this strategy's hook.
            x: Candidate inputs ``[M, ...]``.
            generator: Unused.

        Returns:
            Predicted losses ``[M]``.

        Raises:
            ValueError: If no module was trained alongside ``model``.
        """
        if self.hook is None or self._model_ref is None or self._model_ref() is not model:
            raise ValueError("strategy 'll4al' scores with the loss-prediction module trained "
                             "jointly with the model: call training_hook(model, data) and pass the "
                             "hook to alstudy.train.fit before selecting")
        module = self.hook.module.eval()
        model.eval()
        return predict(model, x, self.opts["batch_size"],
                       fn=lambda m, b: module(m.intermediates(b)[1]))  # [M]
