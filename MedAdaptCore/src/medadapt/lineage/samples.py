"""A task's training slices for a lineage stage: every slice of its label maps that holds the label (evenly
thinned to a cap), as model frames and masks, and the compact form a lineage retains them in."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from medadapt.backends.base import PromptableBackend
from medadapt.errors import InputError
from medadapt.io.intensity import intensity_window
from medadapt.io.volume import Volume, require_same_grid
from medadapt.slices.frame import SliceFrame, in_plane_spacing
from medadapt.slices.stack import slice_stack


@dataclass
class FrameSet:
    """Slices as model input: ``frames`` (n, 3, S, S) in [0, 1] and binary ``masks`` (n, 1, S, S)."""

    frames: torch.Tensor
    masks: torch.Tensor

    def __len__(self) -> int:
        return self.frames.shape[0]

    def subset(self, indices) -> "FrameSet":
        """The slices at ``indices``."""
        indices = torch.as_tensor(list(indices), dtype=torch.long)
        return FrameSet(self.frames[indices], self.masks[indices])

    def to_retained(self) -> dict[str, torch.Tensor]:
        """The tensors a lineage stores: one grey channel and the mask, as uint8."""
        return {"frames": (self.frames[:, :1] * 255).round().to(torch.uint8).contiguous(),
                "masks": self.masks.to(torch.uint8).contiguous()}

    @classmethod
    def from_retained(cls, tensors: dict[str, torch.Tensor], source: str) -> "FrameSet":
        """Inverse of :meth:`to_retained`; :class:`InputError` naming ``source`` for tensors of the wrong form."""
        frames, masks = tensors.get("frames"), tensors.get("masks")
        if (frames is None or masks is None or frames.ndim != 4 or frames.shape[1] != 1
                or masks.shape != frames.shape):
            raise InputError(f"{source}: retained slices must hold 'frames' and 'masks' of shape (n, 1, S, S)")
        return cls((frames.float() / 255).repeat(1, 3, 1, 1), masks.float())

    @staticmethod
    def joined(parts: list["FrameSet"]) -> "FrameSet | None":
        """All slices of ``parts`` in one set (``None`` when there are none)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return None
        return FrameSet(torch.cat([p.frames for p in parts]), torch.cat([p.masks for p in parts]))


def task_slices(backend: PromptableBackend, volumes: list[tuple[Volume, Volume, str]], label: int,
                max_slices: int, axis: int = 0) -> FrameSet:
    """Frames and masks of the slices (along array ``axis``) of each (image, label map, label map's file name)
    that hold ``label``, at most ``max_slices`` in all, spread evenly over each volume's extent in proportion to
    its share of the slices. :class:`InputError` for mismatched grids or a label found nowhere."""
    found = []
    for image, labels, source in volumes:
        require_same_grid(image, labels, source)
        mask = np.moveaxis(labels.array, axis, 0) == label
        slices = np.flatnonzero(mask.any(axis=(1, 2)))
        found.append((image, mask, slices))
    total = sum(len(slices) for _, _, slices in found)
    if total == 0:
        names = ", ".join(source for _, _, source in volumes)
        raise InputError(f"--label {label}: no voxel of that value in {names}")
    parts = []
    for image, mask, slices in found:
        if not len(slices):
            continue
        share = max(1, round(max_slices * len(slices) / total))
        chosen = slices[np.unique(np.linspace(0, len(slices) - 1, min(share, len(slices))).round().astype(int))]
        window = intensity_window(image.array, np.moveaxis(mask, 0, axis))
        stack = slice_stack(image, axis, window)
        frame = SliceFrame(stack.shape[1:], in_plane_spacing(image.geometry.spacing, axis), backend.image_size)
        parts.append(FrameSet(frame.image_to_frame(stack[chosen]), frame.mask_to_frame(mask[chosen])))
    return FrameSet.joined(parts)
