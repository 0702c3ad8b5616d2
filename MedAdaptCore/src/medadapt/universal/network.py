"""The universal model's network: a prior-conditioned segmentation head on frozen slice embeddings, after Hermes
(Gao et al., *Training Like a Medical Resident: Context-Prior Learning Toward Universal Medical Image
Segmentation*).

Each task and each modality owns a small pool of learnable prior tokens at every fusion layer. A fusion layer
lets the priors gather from the feature map and the feature map gather from the priors (bidirectional
cross-attention, each followed by a feed-forward block); fusion layers sit at three scales on the way down and
two on the way up of a small U-shaped trunk. The task's posterior tokens of every layer, concatenated, become the
weights of its output map (a dot product with the last features); the modality's posterior tokens predict the
modality (a small auxiliary term). One forward conditions on one task, so a task's output depends only on its own
tokens and the shared weights: adding a task never changes the others'.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class NetworkShape:
    """What builds the network before its weights are loaded: input channels, width, tokens per task and per
    modality at each fusion layer, attention heads, and the three parts the ablations switch off."""

    in_channels: int = 256
    width: int = 96
    task_tokens: int = 2
    modality_tokens: int = 4
    heads: int = 4
    task_priors: bool = True
    modality_priors: bool = True
    fusion: bool = True

    def describe(self) -> dict:
        """A JSON-ready copy (kept in the model's manifest)."""
        return asdict(self)


FUSION_LAYERS = 5
"""Fusion layers: at 1/2, 1/4 and 1/8 of the embedding's size going down, 1/4 and 1/2 going up (attention at the
embedding's full 64 x 64 costs a CPU too much); a 1 x 1 merge with the entry features restores full size."""


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
    updated priors, each followed by a residual feed-forward block."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.priors_from_features, self.prior_feed = CrossAttention(width, heads), FeedForward(width)
        self.features_from_priors, self.feature_feed = CrossAttention(width, heads), FeedForward(width)

    def forward(self, features: torch.Tensor, priors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(b, w, h, w') feature map and (b, n, w) priors -> both updated."""
        b, c, h, w = features.shape
        tokens = features.flatten(2).transpose(1, 2)
        priors = self.priors_from_features(priors, tokens)
        priors = priors + self.prior_feed(priors)
        tokens = self.features_from_priors(tokens, priors)
        tokens = tokens + self.feature_feed(tokens)
        return tokens.transpose(1, 2).reshape(b, c, h, w), priors


def conv_block(inputs: int, outputs: int, stride: int = 1) -> nn.Sequential:
    """3 x 3 convolution (``stride``), group norm, GELU."""
    return nn.Sequential(nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False),
                         nn.GroupNorm(8, outputs), nn.GELU())


class UniversalNetwork(nn.Module):
    """Per-task logits (b, 1, h, w) at the embedding's resolution from frozen (b, C, h, w) slice embeddings,
    one task and one modality per batch element. Tasks and modalities are named; :meth:`add_task` and
    :meth:`add_modality` grow the prior pools."""

    def __init__(self, shape: NetworkShape, tasks: list[str], modalities: list[str]):
        super().__init__()
        self.shape, width = shape, shape.width
        self.entry = nn.Sequential(nn.Conv2d(shape.in_channels, width, 1), nn.GroupNorm(8, width), nn.GELU())
        self.down = nn.ModuleList([conv_block(width, width, 2) for _ in range(3)])
        self.up = nn.ModuleList([conv_block(2 * width, width), conv_block(2 * width, width)])
        self.merge = nn.Sequential(nn.Conv2d(2 * width, width, 1), nn.GroupNorm(8, width), nn.GELU())
        self.fusions = nn.ModuleList([PriorFusion(width, shape.heads) for _ in range(FUSION_LAYERS)]
                                     if shape.fusion else [])
        self.task_priors = nn.ParameterDict()
        self.modality_priors = nn.ParameterDict()
        self.task_output = nn.Sequential(nn.LayerNorm(FUSION_LAYERS * width), nn.Linear(FUSION_LAYERS * width, width),
                                         nn.GELU(), nn.Linear(width, width))
        self.modality_output = nn.Sequential(nn.LayerNorm(FUSION_LAYERS * width), nn.Linear(FUSION_LAYERS * width,
                                                                                              width), nn.GELU())
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

    def add_task(self, name: str) -> None:
        """New prior tokens for task ``name`` (Xavier-initialised, as Hermes's pools)."""
        self.task_priors[name] = nn.Parameter(nn.init.xavier_uniform_(
            torch.empty(FUSION_LAYERS, self.shape.task_tokens, self.shape.width)))

    def add_modality(self, name: str) -> None:
        """New prior tokens and a classifier row for modality ``name``."""
        self.modality_priors[name] = nn.Parameter(nn.init.xavier_uniform_(
            torch.empty(FUSION_LAYERS, self.shape.modality_tokens, self.shape.width)))
        self.modality_logits[name] = nn.Parameter(torch.randn(self.shape.width) * self.shape.width ** -0.5)

    def forward(self, embeddings: torch.Tensor, tasks: list[str], modalities: list[str]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (b, 1, h, w) of each element's task, and modality logits (b, number of modalities)."""
        task_tokens = torch.stack([self.task_priors[t] for t in tasks], 1)  # layers, b, tokens, width
        modality_tokens = torch.stack([self.modality_priors[m] for m in modalities], 1)
        task_posteriors, modality_posteriors = [], []
        entry = self.entry(embeddings)
        x, skips = entry, []
        for layer in range(FUSION_LAYERS):
            if layer < 3:
                skips.append(x)
                x = self.down[layer](x)
            else:
                x = self._up(self.up[layer - 3], x, skips.pop())
            x, task_posterior, modality_posterior = self._fuse(layer, x, task_tokens[layer], modality_tokens[layer])
            task_posteriors.append(task_posterior)
            modality_posteriors.append(modality_posterior)
        x = self._up(self.merge, x, entry)
        weights = self.task_output(torch.cat(task_posteriors, -1))
        logits = torch.einsum("bchw,bc->bhw", x, weights)[:, None] * self.shape.width ** -0.5
        return logits, self._modality_logits(modality_posteriors, len(tasks))

    @staticmethod
    def _up(block: nn.Module, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """``x`` upsampled to ``skip``'s size, concatenated with it, through ``block``."""
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return block(torch.cat([x, skip], 1))

    def _fuse(self, layer: int, x: torch.Tensor, task_tokens: torch.Tensor, modality_tokens: torch.Tensor
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

    def _modality_logits(self, posteriors: list[torch.Tensor | None], batch: int) -> torch.Tensor:
        if posteriors[0] is None:
            return torch.zeros(batch, len(self.modality_logits), device=self.entry[0].weight.device)
        pooled = self.modality_output(torch.cat(posteriors, -1))
        return pooled @ torch.stack(list(self.modality_logits.values()), 1)
