"""The slice network: a prior-conditioned segmentation head on frozen slice embeddings (the ``embeddings``
backbone; priors and fusion in :mod:`medadapt.universal.priors`).

Fusion layers sit at three scales on the way down and two on the way up of a small U-shaped trunk over the
embedding; a 1 x 1 merge with the entry features restores the embedding's size.
"""

from __future__ import annotations

from torch import nn

from medadapt.universal.priors import NetworkShape, PriorConditioned

FUSION_LAYERS = 5
"""Fusion layers: at 1/2, 1/4 and 1/8 of the embedding's size going down, 1/4 and 1/2 going up (attention at the
embedding's full 64 x 64 costs a CPU too much)."""


def conv_block(inputs: int, outputs: int, stride: int = 1) -> nn.Sequential:
    """3 x 3 convolution (``stride``), group norm, GELU."""
    return nn.Sequential(nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False),
                         nn.GroupNorm(8, outputs), nn.GELU())


class UniversalNetwork(PriorConditioned):
    """Per-task logits (b, 1, h, w) at the embedding's resolution from frozen (b, C, h, w) slice embeddings,
    one task and one modality per batch element (:meth:`PriorConditioned.forward`)."""

    def __init__(self, shape: NetworkShape, tasks: list[str], modalities: list[str]):
        width = shape.width
        super().__init__(shape, [width] * FUSION_LAYERS, width, tasks, modalities)
        self.entry = nn.Sequential(nn.Conv2d(shape.in_channels, width, 1), nn.GroupNorm(8, width), nn.GELU())
        self.down = nn.ModuleList([conv_block(width, width, 2) for _ in range(3)])
        self.up = nn.ModuleList([conv_block(2 * width, width), conv_block(2 * width, width)])
        self.merge = nn.Sequential(nn.Conv2d(2 * width, width, 1), nn.GroupNorm(8, width), nn.GELU())
