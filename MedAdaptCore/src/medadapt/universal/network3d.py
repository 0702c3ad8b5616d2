"""The volume network: a prior-conditioned 3D U-shaped network trained end to end on the image (the ``volume``
backbone; priors and fusion in :mod:`medadapt.universal.priors`), as Hermes conditions its 3D backbones.

A convolution at full resolution, then MONAI residual units at three coarser levels (1, 2 and 4 times width;
two convolutions each going down, one going up); fusion layers at 1/2, 1/4 and 1/8 of the patch going down and
1/4 and 1/2 going up; the full-resolution entry features join through a 1 x 1 x 1 merge before the output
(full-resolution 3 x 3 x 3 convolutions of many channels cost a CPU most of its time, as MONAI's UNet also
avoids).
"""

from __future__ import annotations

from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn

from medadapt.universal.priors import NetworkShape, PriorConditioned

LEVELS = 4
"""Resolution levels: full, 1/2, 1/4, 1/8; a patch's sides must be multiples of 2 ** (LEVELS - 1)."""


def residual_unit(inputs: int, outputs: int, stride: int = 1, convolutions: int = 2) -> ResidualUnit:
    """``convolutions`` 3 x 3 x 3 convolutions with instance norm and PReLU around a residual path (``stride`` on
    the first)."""
    return ResidualUnit(3, inputs, outputs, strides=stride, subunits=convolutions, norm="INSTANCE")


class VolumeUniversalNetwork(PriorConditioned):
    """Per-task logits (b, 1, d, h, w) from (b, C, d, h, w) image patches, one task and one modality per batch
    element (:meth:`PriorConditioned.forward`)."""

    def __init__(self, shape: NetworkShape, tasks: list[str], modalities: list[str]):
        widths = [shape.width] + [shape.width * 2 ** level for level in range(LEVELS - 1)]
        super().__init__(shape, widths[1:] + widths[-2:0:-1], widths[0], tasks, modalities)
        self.entry = Convolution(3, shape.in_channels, widths[0], norm="INSTANCE")
        self.down = nn.ModuleList([residual_unit(widths[level], widths[level + 1], 2) for level in range(LEVELS - 1)])
        self.up = nn.ModuleList([residual_unit(widths[level] + widths[level + 1], widths[level], convolutions=1)
                                 for level in range(LEVELS - 2, 0, -1)])
        self.merge = Convolution(3, widths[0] + widths[1], widths[0], kernel_size=1, norm="INSTANCE")
