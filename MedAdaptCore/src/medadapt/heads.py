"""FSEFT black-box heads on frozen dense features: a linear probe and a spatial adapter followed by one.

After Silva-Rodriguez et al., *Towards foundation models and few-shot parameter-efficient fine-tuning for
volumetric organ segmentation* (FSEFT): the backbone stays frozen and only these small heads train.
"""

from __future__ import annotations

import torch
from torch import nn

HEAD_KINDS = ("linear-probe", "spatial-adapter")
CONVOLUTIONS = {2: nn.Conv2d, 3: nn.Conv3d}
"""Spatial dimensions -> convolution: 2 for slice features, 3 for volume features (the 3D backbone)."""


class SpatialAdapter(nn.Module):
    """Residual ``x + Conv(ReLU(Conv(x)))`` with 3 x 3 (x 3 for ``dims=3``) kernels and no bias; the last
    convolution starts at zero, so a new adapter is the identity.

    ``width`` hidden channels (``None``: as many as the input, as in FSEFT on 48-channel features); a
    narrower bottleneck keeps 256-channel embeddings affordable on a CPU.
    """

    def __init__(self, channels: int, width: int | None = None, dims: int = 2):
        super().__init__()
        width = width or channels
        self.conv1 = CONVOLUTIONS[dims](channels, width, 3, padding=1, bias=False)
        self.conv2 = CONVOLUTIONS[dims](width, channels, 3, padding=1, bias=False)
        nn.init.zeros_(self.conv2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Adapted features, same shape as ``x``."""
        return x + self.conv2(torch.relu(self.conv1(x)))


class SegmentationHead(nn.Module):
    """A 1 x 1 convolution (linear probe) to one foreground logit per pixel (voxel for ``dims=3``), after a
    spatial adapter for ``kind="spatial-adapter"`` (of ``width`` hidden channels)."""

    def __init__(self, kind: str, channels: int, width: int | None = None, dims: int = 2):
        super().__init__()
        if kind not in HEAD_KINDS:
            raise ValueError(f"head kind: expected one of {HEAD_KINDS}, got {kind!r}")
        self.kind, self.channels = kind, channels
        self.adapter = SpatialAdapter(channels, width, dims) if kind == "spatial-adapter" else nn.Identity()
        self.probe = CONVOLUTIONS[dims](channels, 1, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Logits (n, 1, h, w) of (n, C, h, w) features, or (n, 1, d, h, w) of (n, C, d, h, w) in 3D."""
        return self.probe(self.adapter(features))
