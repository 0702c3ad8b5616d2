"""Mapping between a 2D slice of a volume and a foundation model's square input frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class SliceFrame:
    """A slice of ``shape`` (rows, cols) and pixel ``spacing`` resized to keep its physical aspect so that its
    longest side fills ``size`` pixels, then padded at the bottom/right to ``size`` x ``size``."""

    shape: tuple[int, int]
    spacing: tuple[float, float]
    size: int

    @property
    def resized(self) -> tuple[int, int]:
        """(rows, cols) of the slice inside the model frame."""
        extent = np.asarray(self.shape, float) * np.asarray(self.spacing, float)
        scaled = np.maximum(1, np.round(extent / extent.max() * self.size)).astype(int)
        return int(scaled[0]), int(scaled[1])

    def image_to_frame(self, images: np.ndarray) -> torch.Tensor:
        """(n, rows, cols) images in [0, 1] -> (n, 3, size, size) float tensor."""
        tensor = torch.as_tensor(np.ascontiguousarray(images), dtype=torch.float32)[:, None]
        tensor = F.interpolate(tensor, size=self.resized, mode="bilinear", align_corners=False)
        tensor = F.pad(tensor, (0, self.size - self.resized[1], 0, self.size - self.resized[0]))
        return tensor.repeat(1, 3, 1, 1)

    def mask_to_frame(self, masks: np.ndarray) -> torch.Tensor:
        """(n, rows, cols) binary masks -> (n, 1, size, size) float tensor; a mask too small to cover half a
        frame pixel anywhere (a few voxels on a large slice) keeps every frame pixel it touches instead of
        vanishing."""
        source = torch.as_tensor(np.ascontiguousarray(masks), dtype=torch.float32)[:, None]
        tensor = F.interpolate(source, size=self.resized, mode="bilinear", align_corners=False) > 0.5
        vanished = ~tensor.flatten(1).any(dim=1) & (source.flatten(1).amax(dim=1) > 0)
        if vanished.any():
            tensor[vanished] = F.interpolate(source[vanished], size=self.resized, mode="area") > 0
        tensor = F.pad(tensor.float(), (0, self.size - self.resized[1], 0, self.size - self.resized[0]))
        return tensor

    def logits_to_slice(self, logits: torch.Tensor) -> torch.Tensor:
        """(n, 1, s, s) logits in the frame (any square size s) -> (n, rows, cols) logits on the slice grid."""
        scale = logits.shape[-1] / self.size
        rows, cols = (int(round(r * scale)) for r in self.resized)
        cropped = logits[..., :rows, :cols]
        return F.interpolate(cropped, size=self.shape, mode="bilinear", align_corners=False)[:, 0]

    def points_to_frame(self, points_rc: np.ndarray) -> np.ndarray:
        """(n, 2) (row, col) slice pixel coordinates -> (n, 2) (x, y) frame coordinates."""
        points_rc = np.asarray(points_rc, float).reshape(-1, 2)
        scale = np.asarray(self.resized, float) / np.asarray(self.shape, float)
        return np.ascontiguousarray(((points_rc + 0.5) * scale)[:, ::-1])

    def box_from_mask(self, mask: np.ndarray, margin: float = 0.0) -> np.ndarray | None:
        """Bounding box (x0, y0, x1, y1) in frame coordinates of a 2D slice mask, grown by ``margin`` frame
        pixels on each side; ``None`` for an empty mask."""
        rows, cols = np.nonzero(mask)
        if rows.size == 0:
            return None
        scale = np.asarray(self.resized, float) / np.asarray(self.shape, float)
        y0, y1 = rows.min() * scale[0], (rows.max() + 1) * scale[0]
        x0, x1 = cols.min() * scale[1], (cols.max() + 1) * scale[1]
        box = np.array([x0 - margin, y0 - margin, x1 + margin, y1 + margin], dtype=np.float32)
        return np.clip(box, 0, [self.resized[1], self.resized[0], self.resized[1], self.resized[0]])


def in_plane_spacing(spacing_xyz, axis: int) -> tuple[float, float]:
    """Pixel spacing (rows, cols) of a slice taken along array ``axis`` of a (z, y, x) array."""
    array_spacing = tuple(reversed(tuple(spacing_xyz)))
    kept = [array_spacing[a] for a in range(3) if a != axis]
    return float(kept[0]), float(kept[1])
