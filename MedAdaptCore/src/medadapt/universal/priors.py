"""Task and modality prior pools and bidirectional prior-feature attention, after Hermes (Gao et al., *Training
Like a Medical Resident: Context-Prior Learning Toward Universal Medical Image Segmentation*): what the slice
network and the volume network share.

Each task and each modality owns a small pool of learnable prior tokens at every fusion layer (one parameter per
name, the layers' tokens side by side, so layers may differ in width). A fusion layer lets the priors gather from
the feature map and the feature map gather from the priors; the task's posterior tokens of every layer,
concatenated, become the weights of its output map (a dot product with the last features), and the modality's
predict the modality (a small auxiliary term). One forward conditions on one task per batch element, so a task's
output depends only on its own tokens and the shared weights: adding a task never changes the others'.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass
from torch import nn

BACKBONES = ("embeddings", "volume")
"""``embeddings``: a head on the frozen foundation model's slice embeddings; ``volume``: a 3D convolutional trunk
trained end to end on the image itself."""


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class NetworkShape:
    """What builds the network before its weights are loaded: the backbone (:data:`BACKBONES`), input channels,
    width (the volume trunk's first level; it doubles per level), tokens per task and per modality at each fusion
    layer, attention heads, and the three parts the ablations switch off.

    A pydantic dataclass: ``universal.json`` holds it, so its ranges bound what a model file can make MedAdapt
    allocate (far beyond any useful shape), and a multiple of 8 as width with a power of two as heads is what
    the group norms and attention layers divide."""

    backbone: Literal[BACKBONES] = "embeddings"
    in_channels: int = Field(256, ge=1, le=1024)
    width: int = Field(96, ge=8, le=256, multiple_of=8)
    task_tokens: int = Field(2, ge=1, le=64)
    modality_tokens: int = Field(4, ge=1, le=64)
    heads: Literal[1, 2, 4, 8] = 4
    task_priors: bool = True
    modality_priors: bool = True
    fusion: bool = True


def shape_for(backbone: str, **parts: bool) -> NetworkShape:
    """The default shape of ``backbone`` with the ablation switches ``parts``."""
    if backbone == "volume":
        return NetworkShape(backbone="volume", in_channels=1, width=16, **parts)
    return NetworkShape(**parts)


class FeedForward(nn.Sequential):
    """LayerNorm, then a two-layer GELU perceptron of four times the width."""

    def __init__(self, width: int):
        super().__init__(nn.LayerNorm(width), nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))


class CrossAttention(nn.Module):
    """Pre-norm multi-head attention of ``queries`` to ``context``, residual."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.query_norm, self.context_norm = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """(b, n, w) queries updated from (b, m, w) context."""
        context = self.context_norm(context)
        return queries + self.attention(self.query_norm(queries), context, context, need_weights=False)[0]


class PriorFusion(nn.Module):
    """Bidirectional prior-feature attention: the priors gather from the features, then the features from the
    updated priors, each followed by a residual feed-forward block. Any number of spatial dimensions."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.priors_from_features, self.prior_feed = CrossAttention(width, heads), FeedForward(width)
        self.features_from_priors, self.feature_feed = CrossAttention(width, heads), FeedForward(width)

    def forward(self, features: torch.Tensor, priors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(b, w, *spatial) feature map and (b, n, w) priors -> both updated."""
        tokens = features.flatten(2).transpose(1, 2)
        priors = self.priors_from_features(priors, tokens)
        priors = priors + self.prior_feed(priors)
        tokens = self.features_from_priors(tokens, priors)
        tokens = tokens + self.feature_feed(tokens)
        return tokens.transpose(1, 2).reshape(features.shape), priors


class PriorConditioned(nn.Module):
    """Named task and modality prior pools over fusion layers of widths ``layer_widths``, the fusion layers
    themselves (unless ablated), and the heads that turn posterior tokens into a task's output weights (of
    ``output_width``) and modality logits. Subclasses build the U-shaped trunk: ``entry`` (full resolution),
    ``down`` and ``up`` (one block per fusion layer, in that order) and ``merge`` (back to the entry's size)."""

    def __init__(self, shape: NetworkShape, layer_widths: list[int], output_width: int, tasks: list[str],
                 modalities: list[str]):
        super().__init__()
        self.shape, self.layer_widths = shape, list(layer_widths)
        total = sum(layer_widths)
        self.fusions = nn.ModuleList([PriorFusion(width, min(shape.heads, width // 8)) for width in layer_widths]
                                     if shape.fusion else [])
        self.task_priors = nn.ParameterDict()
        self.modality_priors = nn.ParameterDict()
        self.task_output = nn.Sequential(nn.LayerNorm(total), nn.Linear(total, output_width), nn.GELU(),
                                         nn.Linear(output_width, output_width))
        self.modality_output = nn.Sequential(nn.LayerNorm(total), nn.Linear(total, output_width), nn.GELU())
        self.modality_logits = nn.ParameterDict()
        for task in tasks:
            self.add_task(task)
        for modality in modalities:
            self.add_modality(modality)

    @property
    def tasks(self) -> list[str]:
        """Task names, in the order they were added."""
        return list(self.task_priors.keys())

    @property
    def modalities(self) -> list[str]:
        """Modality names, in the order they were added."""
        return list(self.modality_priors.keys())

    def _pool(self, tokens: int) -> nn.Parameter:
        """A new pool: ``tokens`` tokens per layer, each layer's part Xavier-initialised (as Hermes's pools)."""
        return nn.Parameter(torch.cat([nn.init.xavier_uniform_(torch.empty(tokens, width))
                                       for width in self.layer_widths], -1))

    def add_task(self, name: str) -> None:
        """New prior tokens for task ``name``."""
        self.task_priors[name] = self._pool(self.shape.task_tokens)

    def add_modality(self, name: str) -> None:
        """New prior tokens and a classifier row for modality ``name``."""
        self.modality_priors[name] = self._pool(self.shape.modality_tokens)
        width = self.modality_output[1].out_features
        self.modality_logits[name] = nn.Parameter(torch.randn(width) * width ** -0.5)

    def layer_tokens(self, tasks: list[str], modalities: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per fusion layer, the (b, tokens, width) task and modality priors of each batch element."""
        task = torch.stack([self.task_priors[t] for t in tasks]).split(self.layer_widths, -1)
        modality = torch.stack([self.modality_priors[m] for m in modalities]).split(self.layer_widths, -1)
        return list(zip(task, modality))

    def fuse(self, layer: int, x: torch.Tensor, task_tokens: torch.Tensor, modality_tokens: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Fusion layer ``layer`` on features ``x`` with the priors the shape keeps; returns the features and the
        task's and modality's mean posterior tokens (a prior left out of fusion passes unchanged, so without task
        priors a task's identity reaches only its output weights)."""
        fused = [t for t, kept in ((task_tokens, self.shape.task_priors),
                                   (modality_tokens, self.shape.modality_priors)) if kept]
        if not self.fusions or not fused:
            return x, task_tokens.mean(1), modality_tokens.mean(1) if self.shape.modality_priors else None
        x, priors = self.fusions[layer](x, torch.cat(fused, 1))
        task = priors[:, :self.shape.task_tokens] if self.shape.task_priors else task_tokens
        modality = priors[:, -self.shape.modality_tokens:] if self.shape.modality_priors else None
        return x, task.mean(1), None if modality is None else modality.mean(1)

    def forward(self, inputs: torch.Tensor, tasks: list[str], modalities: list[str]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (b, 1, *spatial) of each element's task, and modality logits (b, number of modalities): the
        trunk with a fusion layer after every down and up block."""
        task_posteriors, modality_posteriors = [], []
        entry = self.entry(inputs)
        x, skips = entry, []
        for layer, (task_tokens, modality_tokens) in enumerate(self.layer_tokens(tasks, modalities)):
            if layer < len(self.down):
                skips.append(x)
                x = self.down[layer](x)
            else:
                x = upsample_join(self.up[layer - len(self.down)], x, skips.pop())
            x, task_posterior, modality_posterior = self.fuse(layer, x, task_tokens, modality_tokens)
            task_posteriors.append(task_posterior)
            modality_posteriors.append(modality_posterior)
        return self.outputs(upsample_join(self.merge, x, entry), task_posteriors, modality_posteriors)

    def outputs(self, features: torch.Tensor, task_posteriors: list[torch.Tensor],
                modality_posteriors: list[torch.Tensor | None]) -> tuple[torch.Tensor, torch.Tensor]:
        """Each element's task logits (b, 1, *spatial) from the last ``features`` and the task's posterior tokens,
        and the modality logits (b, number of modalities)."""
        weights = self.task_output(torch.cat(task_posteriors, -1))
        logits = torch.einsum("bc...,bc->b...", features, weights)[:, None] * features.shape[1] ** -0.5
        if modality_posteriors[0] is None:
            return logits, torch.zeros(len(features), len(self.modality_logits), device=features.device)
        pooled = self.modality_output(torch.cat(modality_posteriors, -1))
        return logits, pooled @ torch.stack(list(self.modality_logits.values()), 1)


def upsample_join(block: nn.Module, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """``x`` upsampled to ``skip``'s size (2D or 3D), concatenated with it, through ``block``: the up path of
    both trunks."""
    x = F.interpolate(x, size=skip.shape[2:], mode="bilinear" if x.dim() == 4 else "trilinear", align_corners=False)
    return block(torch.cat([x, skip], 1))
