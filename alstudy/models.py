"""Task models, each written as ``T = g ∘ f``.

Every model exposes

* ``features(x)`` – the feature extractor ``z = f(x; θ)`` (NoiseStability perturbs θ),
* ``head`` – the predictor ``g`` (an ``nn.Module``),
* ``forward(x) = head(features(x))``,
* ``intermediates(x)`` – ``(output, [block outputs])`` for strategies that read inner layers
  (learning loss); the default returns the features as the only block.

Models are built by name through :func:`build`; options are checked against the constructor.
"""

from __future__ import annotations

import inspect
from typing import Sequence

import torch
from torch import nn

from .detection.ssd import SSD

__all__ = ["ALModel", "SmallCNN", "VGG", "ResNet18", "MLPRegressor", "MODELS", "build",
           "model_options", "feature_parameters", "model_device", "predict"]


class ALModel(nn.Module):
    """Base class of the ``g ∘ f`` contract (subclasses define ``features`` and ``head``)."""

    head: nn.Module
    #: ``"classification"`` models return logits ``[N, C]``; ``"regression"`` returns ``[N]``.
    task: str = "classification"

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Return ``z = f(x)`` of shape ``[N, d]``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.features(x))
        return out.squeeze(-1) if self.task == "regression" else out

    def intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Return ``(output, blocks)``; ``blocks`` are inner activations (default: the features)."""
        z = self.features(x)
        out = self.head(z)
        return (out.squeeze(-1) if self.task == "regression" else out), [z]

    @property
    def feature_dim(self) -> int:
        """Dimension d of ``features(x)``."""
        return self._feature_dim


def feature_parameters(model: ALModel) -> dict[str, nn.Parameter]:
    """Named parameters of the feature extractor f (everything outside ``model.head``)."""
    head_ids = {id(p) for p in model.head.parameters()}
    return {n: p for n, p in model.named_parameters() if id(p) not in head_ids}


def _dropout(p: float) -> nn.Module:
    return nn.Dropout(p) if p > 0 else nn.Identity()


class SmallCNN(ALModel):
    """The NoiseStability paper's MNIST CNN (its Table 1), input size generalised.

    conv(1→32, k5) → maxpool 2 → ReLU → conv(32→64, k5) → maxpool 2 → ReLU → fc(·→128) is f;
    an optional dropout and fc(128→C) is g. As in Table 1 (and the authors' ``SmallNet``)
    there is no activation between the two linear layers; ``hidden_relu=True`` adds a ReLU
    after fc(·→128) (the layout of the package's earlier runs). For 28×28 inputs the
    flattened size is 64·4·4 = 1024 as in the paper. Inputs smaller than 16×16 (e.g. 8×8
    digits) get "same" padding so that both 5×5 convolutions fit.
    """

    def __init__(self, input_shape: Sequence[int], num_outputs: int, width: int = 32,
                 hidden: int = 128, dropout: float = 0.0, hidden_relu: bool = False):
        super().__init__()
        c, h, w = input_shape
        pad = 0 if min(h, w) >= 16 else 2
        self.conv = nn.Sequential(
            nn.Conv2d(c, width, 5, padding=pad), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 5, padding=pad), nn.MaxPool2d(2), nn.ReLU(),
        )
        with torch.no_grad():
            flat = self.conv(torch.zeros(1, c, h, w)).numel()
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(flat, hidden),
                                *([nn.ReLU()] if hidden_relu else []))
        self.head = nn.Sequential(_dropout(dropout), nn.Linear(hidden, num_outputs))
        self._feature_dim = hidden

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x))  # [N, hidden]

    def intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        a = self.conv[:3](x)  # [N, width, ., .]
        b = self.conv[3:](a)  # [N, 2*width, ., .]
        z = self.fc(b)
        return self.head(z), [a, b, z]


_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGG(ALModel):
    """CIFAR-style VGG-16 with batch norm (3×3 convs, classifier 512-512-C with dropout).

    ``width`` scales every channel count (64 = the standard network); f ends at the
    penultimate ReLU, g is the last linear layer.
    """

    def __init__(self, input_shape: Sequence[int], num_outputs: int, width: int = 64,
                 dropout: float = 0.5, batch_norm: bool = True):
        super().__init__()
        c, h, w = input_shape
        layers: list[nn.Module] = []
        blocks: list[int] = []
        for v in _VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2) if min(h, w) >= 2 else nn.Identity())
                h, w = max(h // 2, 1), max(w // 2, 1)
                blocks.append(len(layers))
                continue
            out = max(1, v * width // 64)
            layers += [nn.Conv2d(c, out, 3, padding=1)]
            layers += [nn.BatchNorm2d(out)] if batch_norm else []
            layers += [nn.ReLU(inplace=True)]
            c = out
        self.convs = nn.Sequential(*layers)
        self._block_ends = blocks
        dim = 512 * width // 64
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),  # 1×1 already for 32×32 inputs
            nn.Dropout(dropout), nn.Linear(dim, dim), nn.ReLU(True),
            nn.Dropout(dropout), nn.Linear(dim, dim), nn.ReLU(True),
        )
        self.head = nn.Linear(dim, num_outputs)
        self._feature_dim = dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.convs(x))  # [N, dim]

    def intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        maps, start = [], 0
        for end in self._block_ends[1::2] + [len(self.convs)]:
            x = self.convs[start:end](x)
            maps.append(x)
            start = end
        z = self.classifier(x)
        return self.head(z), maps[:-1] + [z]


class _BasicBlock(nn.Module):
    """Residual unit of two 3×3 convolutions (ResNet; DRN's with ``dilation``):
    ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``, a 1×1 projection as the shortcut
    when the stride or the channels change.

    Args:
        c_in: Input channels.
        c_out: Output channels.
        stride: Stride of the first convolution.
        dilation: Dilation of both convolutions, or ``(d1, d2)`` for each (1 = ResNet).
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1,
                 dilation: int | tuple[int, int] = 1):
        super().__init__()
        d1, d2 = (dilation, dilation) if isinstance(dilation, int) else dilation
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, padding=d1, dilation=d1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, padding=d2, dilation=d2, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(ALModel):
    """CIFAR-style ResNet-18: 3×3 stem (no max-pool), four stages of two basic blocks.

    ``width`` is the stem width (64 = standard; 16 gives a narrow CPU version);
    f ends at global average pooling, g is the final linear layer (with optional dropout).
    """

    def __init__(self, input_shape: Sequence[int], num_outputs: int, width: int = 64,
                 dropout: float = 0.0):
        super().__init__()
        c = input_shape[0]
        self.stem = nn.Sequential(nn.Conv2d(c, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())
        stages, c_in = [], width
        for i, stride in enumerate([1, 2, 2, 2]):
            c_out = width * 2**i
            stages.append(nn.Sequential(_BasicBlock(c_in, c_out, stride), _BasicBlock(c_out, c_out, 1)))
            c_in = c_out
        self.stages = nn.ModuleList(stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(_dropout(dropout), nn.Linear(c_in, num_outputs))
        self._feature_dim = c_in

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.pool(x)  # [N, 8*width]

    def intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.stem(x)
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return self.head(self.pool(x)), maps


class MLPRegressor(ALModel):
    """Four hidden ReLU layers (f) and a linear predictor (g), for tabular regression."""

    task = "regression"

    def __init__(self, input_shape: Sequence[int], num_outputs: int = 1, hidden: int = 128,
                 dropout: float = 0.0):
        super().__init__()
        (d,) = input_shape
        layers: list[nn.Module] = []
        for _ in range(4):
            layers += [nn.Linear(d, hidden), nn.ReLU()]
            d = hidden
        self.mlp = nn.Sequential(*layers)
        self.head = nn.Sequential(_dropout(dropout), nn.Linear(hidden, num_outputs))
        self._feature_dim = hidden

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)  # [N, hidden]


class TextPair(ALModel):
    """Sentence-pair classifier (:class:`alstudy.text.TextPairClassifier`), imported on use so
    that ``transformers`` (the optional ``text`` extra) is needed only for text experiments."""

    def __new__(cls, input_shape: Sequence[int], num_outputs: int, layers: int = 6,
                dropout: float = 0.1, pretrained: bool = True):
        from .text import TextPairClassifier  # optional extra

        return TextPairClassifier(input_shape, num_outputs, layers, dropout, pretrained)

    def __init__(self, input_shape: Sequence[int], num_outputs: int, layers: int = 6,
                 dropout: float = 0.1, pretrained: bool = True):  # pragma: no cover - see __new__
        super().__init__()


MODELS: dict[str, type[ALModel]] = {
    "small_cnn": SmallCNN,
    "vgg16": VGG,
    "resnet18": ResNet18,
    "mlp": MLPRegressor,
    "text_pair": TextPair,
    "ssd": SSD,  # detector: features = source maps, head = box/class convolutions
}

from . import models_drn  # noqa: E402,F401 - registers "drn_d_22" (subclasses ALModel, defined above)


def model_options(name: str) -> dict[str, object]:
    """Options a model accepts (beyond input shape and outputs) with their defaults."""
    sig = inspect.signature(MODELS[name].__init__)
    return {k: p.default for k, p in list(sig.parameters.items())[3:]}


def build(name: str, input_shape: Sequence[int], num_outputs: int, **options) -> ALModel:
    """Build a registered model.

    Args:
        name: One of :data:`MODELS`.
        input_shape: Shape of one input, e.g. ``(1, 28, 28)`` or ``(D,)``.
        num_outputs: Number of classes (1 for regression).
        **options: Model options (see :func:`model_options`).

    Returns:
        The model (on CPU, in train mode).

    Raises:
        ValueError: Unknown model name or option.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available models: {sorted(MODELS)}")
    allowed = model_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for model {name!r}; allowed: {allowed}")
    return MODELS[name](tuple(input_shape), num_outputs, **options)


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (CPU for a parameter-free module)."""
    return next(model.parameters(), torch.empty(0)).device


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024, fn=None) -> torch.Tensor:
    """Apply ``fn(model, batch)`` (default: ``model(batch)``) over ``x`` in batches, on the
    model's device, returning the concatenated result on the CPU."""
    device = model_device(model)
    fn = fn or (lambda m, b: m(b))
    outs = [fn(model, x[i : i + batch_size].to(device)).cpu() for i in range(0, x.shape[0], batch_size)]
    return torch.cat(outs)
