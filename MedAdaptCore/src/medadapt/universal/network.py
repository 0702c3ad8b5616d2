"""The slice network: a prior-conditioned segmentation head on frozen slice embeddings (the ``embeddings``
backbone; priors and fusion in :mod:`medadapt.universal.priors`).

Fusion layers sit at three scales on the way down and two on the way up of a small U-shaped trunk over the
embedding; a 1 x 1 merge with the entry features restores the embedding's size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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
    one task and one modality per batch element."""

    def __init__(self, shape: NetworkShape, tasks: list[str], modalities: list[str]):
        width = shape.width
        super().__init__(shape, [width] * FUSION_LAYERS, width, tasks, modalities)
        self.entry = nn.Sequential(nn.Conv2d(shape.in_channels, width, 1), nn.GroupNorm(8, width), nn.GELU())
        self.down = nn.ModuleList([conv_block(width, width, 2) for _ in range(3)])
        self.up = nn.ModuleList([conv_block(2 * width, width), conv_block(2 * width, width)])
        self.merge = nn.Sequential(nn.Conv2d(2 * width, width, 1), nn.GroupNorm(8, width), nn.GELU())

    def forward(self, embeddings: torch.Tensor, tasks: list[str], modalities: list[str]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (b, 1, h, w) of each element's task, and modality logits (b, number of modalities)."""
        task_posteriors, modality_posteriors = [], []
        entry = self.entry(embeddings)
        x, skips = entry, []
        for layer, (task_tokens, modality_tokens) in enumerate(self.layer_tokens(tasks, modalities)):
            if layer < 3:
                skips.append(x)
                x = self.down[layer](x)
            else:
                x = upsample_join(self.up[layer - 3], x, skips.pop())
            x, task_posterior, modality_posterior = self.fuse(layer, x, task_tokens, modality_tokens)
            task_posteriors.append(task_posterior)
            modality_posteriors.append(modality_posterior)
        return self.outputs(upsample_join(self.merge, x, entry), task_posteriors, modality_posteriors)


def upsample_join(block: nn.Module, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """``x`` upsampled to ``skip``'s size, concatenated with it, through ``block``."""
    x = F.interpolate(x, size=skip.shape[2:], mode="bilinear" if x.dim() == 4 else "trilinear", align_corners=False)
    return block(torch.cat([x, skip], 1))
