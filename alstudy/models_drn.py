"""DRN-D-22 for semantic segmentation (Yu, Koltun & Funkhouser, "Dilated Residual Networks",
CVPR 2017), written as ``T = g ∘ f`` in plain torch.

Layout of DRN-D-22 (the paper's Fig. 4 / Table 1, "D" variant; 8 levels, ``[1, 1, 2, 2, 2, 2,
1, 1]`` units per level; channels ``w·(1, 2, 4, 8, 16, 32, 32, 32)`` with w = 16 for the
published network):

=======  ==================================================  ======  ========
level    units                                               stride  dilation
=======  ==================================================  ======  ========
0        7×7 conv, BN, ReLU (the D stem, no max-pool)        1       1
1        one 3×3 conv, BN, ReLU                              1       1
2        one 3×3 conv, BN, ReLU                              2       1
3        two BasicBlocks (the first with a 1×1 projection)   2       1
4        two BasicBlocks                                     2       1
5        two BasicBlocks                                     1       2
6        two BasicBlocks                                     1       4
7        one 3×3 conv, BN, ReLU (no residual: "degridding")  1       2
8        one 3×3 conv, BN, ReLU                              1       1
=======  ==================================================  ======  ========

The output stride is 8. f (``features``) is the level-8 map ``[N, 32w, H/8, W/8]`` (the
"final deep feature" on which NoiseStability measures the deviation for segmentation, its
Sec. 3.4); g (``head``) is the 1×1 convolutional classifier; ``forward`` upsamples the class
scores bilinearly to the input size, giving ``[N, C, H, W]`` logits. The authors' segmentation
code upsamples with a fixed bilinear transposed convolution (kernel 16, stride 8); plain
bilinear interpolation is used here (the same interpolation without the edge padding).
Initialisation follows the authors: convolution weights N(0, 2/(k²·c_out)), BN scale 1, bias 0.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .models import MODELS, ALModel, _BasicBlock

__all__ = ["DRNBasicBlock", "DRNSegmenter", "DRN_D_22_UNITS"]

#: Units per level of DRN-D-22 (levels 1..8).
DRN_D_22_UNITS = (1, 1, 2, 2, 2, 2, 1, 1)


def _conv3x3(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride, padding=dilation, dilation=dilation, bias=False)


#: DRN's residual unit: the ResNet basic block with dilations ``(d1, d2)``.
DRNBasicBlock = _BasicBlock


def _conv_level(c_in: int, c_out: int, convs: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    mods: list[nn.Module] = []
    for i in range(convs):
        mods += [_conv3x3(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1, dilation),
                 nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*mods)


def _block_level(c_in: int, c_out: int, blocks: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    # the first unit of a dilated level keeps dilation d in both convolutions ("new_level=False"
    # in the authors' code: levels 5 and 6 enter with d already)
    first = DRNBasicBlock(c_in, c_out, stride, (dilation, dilation))
    rest = [DRNBasicBlock(c_out, c_out, 1, (dilation, dilation)) for _ in range(blocks - 1)]
    return nn.Sequential(first, *rest)


class DRNSegmenter(ALModel):
    """DRN-D-22 semantic-segmentation network, ``width`` = channels of the first level.

    Args:
        input_shape: ``(C_in, H, W)`` of one image.
        num_outputs: Number of classes.
        width: Channels of levels 0–1 (16 = the published DRN-D-22; 4 or 8 for a CPU).

    Attributes:
        output_stride: 8 (input side / feature-map side).
    """

    task = "segmentation"
    output_stride = 8

    def __init__(self, input_shape: Sequence[int], num_outputs: int, width: int = 16):
        super().__init__()
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"model option 'width' = {width!r} is invalid; allowed: integer >= 1")
        c_in = input_shape[0]
        ch = [width * m for m in (1, 2, 4, 8, 16, 32, 32, 32)]
        u = DRN_D_22_UNITS
        self.level0 = nn.Sequential(nn.Conv2d(c_in, ch[0], 7, 1, 3, bias=False),
                                    nn.BatchNorm2d(ch[0]), nn.ReLU(inplace=True))
        self.level1 = _conv_level(ch[0], ch[0], u[0], stride=1)
        self.level2 = _conv_level(ch[0], ch[1], u[1], stride=2)
        self.level3 = _block_level(ch[1], ch[2], u[2], stride=2)
        self.level4 = _block_level(ch[2], ch[3], u[3], stride=2)
        self.level5 = _block_level(ch[3], ch[4], u[4], dilation=2)
        self.level6 = _block_level(ch[4], ch[5], u[5], dilation=4)
        self.level7 = _conv_level(ch[5], ch[6], u[6], dilation=2)
        self.level8 = _conv_level(ch[6], ch[7], u[7], dilation=1)
        self.head = nn.Conv2d(ch[7], num_outputs, 1, bias=True)
        self._feature_dim = ch[7]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _levels(self) -> list[nn.Module]:
        return [self.level0, self.level1, self.level2, self.level3, self.level4, self.level5,
                self.level6, self.level7, self.level8]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The final deep feature map ``[N, 32·width, ⌈H/8⌉, ⌈W/8⌉]`` (level 8)."""
        for level in self._levels():
            x = level(x)
        return x

    def _upsample(self, scores: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        return F.interpolate(scores, size=tuple(size), mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel class logits ``[N, C, H, W]`` (head scores upsampled to the input size)."""
        return self._upsample(self.head(self.features(x)), x.shape[-2:])

    def intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(logits [N, C, H, W], [level-3, level-4, level-6, level-8 maps])``."""
        size = x.shape[-2:]
        blocks = []
        for i, level in enumerate(self._levels()):
            x = level(x)
            if i in (3, 4, 6, 8):
                blocks.append(x)
        return self._upsample(self.head(x), size), blocks


MODELS["drn_d_22"] = DRNSegmenter
