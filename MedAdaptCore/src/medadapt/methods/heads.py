"""FSEFT black-box heads on frozen dense features: a linear probe and a spatial adapter followed by one.

After Silva-Rodriguez et al., *Towards foundation models and few-shot parameter-efficient fine-tuning for
volumetric organ segmentation* (FSEFT): the backbone stays frozen and only these small heads train.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from medadapt.progress import CancelFlag, Progress, ProgressCallback, check_cancel, report
from medadapt.slices.features import SliceFeatures

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


class HeadSet(nn.Module):
    """One binary head per structure label, all of one ``kind`` on one feature ``source`` of ``dims``
    spatial dimensions (2: slice features, 3: volume features)."""

    def __init__(self, kind: str, source: str, channels: int, labels: list[int], width: int = 0, dims: int = 2):
        super().__init__()
        self.kind, self.source, self.channels, self.width, self.dims = kind, source, channels, width, dims
        self.heads = nn.ModuleDict({str(label): SegmentationHead(kind, channels, width or None, dims)
                                    for label in labels})

    @property
    def labels(self) -> list[int]:
        """Structure labels, ascending."""
        return sorted(int(label) for label in self.heads)

    def describe(self) -> dict:
        """What rebuilds this set before its weights are loaded (kept in the manifest)."""
        return {"kind": self.kind, "features": self.source, "channels": self.channels, "labels": self.labels,
                "width": self.width, "dims": self.dims}

    @classmethod
    def from_description(cls, description: dict) -> "HeadSet":
        """Inverse of :meth:`describe` (random weights)."""
        return cls(description["kind"], description["features"], description["channels"], description["labels"],
                   description["width"], description.get("dims", 2))

    @torch.no_grad()
    def probabilities(self, features: SliceFeatures, cancel: CancelFlag | None = None,
                      progress: ProgressCallback | None = None) -> dict[int, np.ndarray]:
        """Foreground probability (slices, rows, cols) of every label on every slice of ``features``."""
        self.eval()
        frame = features.model.frame
        out = {label: np.zeros(features.model.stack.shape, np.float32) for label in self.labels}
        for index in range(len(features)):
            check_cancel(cancel)
            x = features(index)
            for label in self.labels:
                logits = self.heads[str(label)](x)
                out[label][index] = torch.sigmoid(frame.logits_to_slice(logits))[0].numpy()
            report(progress, Progress("segment slices", index + 1, len(features)))
        return out
