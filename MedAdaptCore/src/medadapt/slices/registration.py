"""Carrying painted masks to the slices between them by 2D deformable registration of consecutive image slices
(the idea of Sli2Vol, MICCAI 2021, without its learned features): the image itself says how a contour moves
from one slice to the next."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from medadapt.progress import CancelFlag, check_cancel


class SliceRegistration:
    """Deformable registrations between neighbouring slices of a [0, 1] (slices, rows, cols) ``stack``, computed
    once per pair and direction (symmetric-forces demons, 50 iterations, field smoothed by 1.5 pixels)."""

    ITERATIONS = 50
    SMOOTHING_PIXELS = 1.5

    def __init__(self, stack: np.ndarray, cancel: CancelFlag | None = None):
        self.stack, self.cancel = stack, cancel
        self._transforms: dict[tuple[int, int], sitk.Transform] = {}

    def _image(self, index: int) -> sitk.Image:
        return sitk.GetImageFromArray(np.ascontiguousarray(self.stack[index], dtype=np.float32))

    def transform(self, fixed: int, moving: int) -> sitk.Transform:
        """Transform mapping slice ``fixed``'s pixels onto slice ``moving``."""
        key = (fixed, moving)
        if key not in self._transforms:
            check_cancel(self.cancel)
            demons = sitk.FastSymmetricForcesDemonsRegistrationFilter()
            demons.SetNumberOfIterations(self.ITERATIONS)
            demons.SetStandardDeviations(self.SMOOTHING_PIXELS)
            field = demons.Execute(self._image(fixed), self._image(moving))
            self._transforms[key] = sitk.DisplacementFieldTransform(sitk.Cast(field, sitk.sitkVectorFloat64))
        return self._transforms[key]

    def carry(self, mask: np.ndarray, start: int, stop: int) -> dict[int, np.ndarray]:
        """Soft masks on the slices strictly between ``start`` and ``stop``: ``mask`` (on slice ``start``) warped
        from each slice onto the next."""
        step = 1 if stop > start else -1
        current = sitk.GetImageFromArray(np.ascontiguousarray(mask, dtype=np.float32))
        out = {}
        for index in range(start + step, stop, step):
            current = sitk.Resample(current, self._image(index), self.transform(index, index - step),
                                    sitk.sitkLinear, 0.0)
            out[index] = sitk.GetArrayFromImage(current)
        return out



def carry_between(stack: np.ndarray, low: int, low_mask: np.ndarray, high: int, high_mask: np.ndarray,
                  cancel: CancelFlag | None = None) -> dict[int, np.ndarray]:
    """Foreground probability on the slices strictly between painted slices ``low`` and ``high`` of ``stack``:
    both painted masks carried towards each other (:class:`SliceRegistration`), blended by distance as the
    model's walks are. Registration runs on the masks' joint bounding box grown by half its size on each side
    (what moves the contour lies near it), so large slices cost little."""
    both = low_mask | high_mask
    out_shape = stack.shape[1:]
    if not both.any():
        return {s: np.zeros(out_shape, np.float32) for s in range(low + 1, high)}
    rows, cols = np.flatnonzero(both.any(axis=1)), np.flatnonzero(both.any(axis=0))
    grow_r, grow_c = max(4, (rows[-1] - rows[0] + 1) // 2), max(4, (cols[-1] - cols[0] + 1) // 2)
    r0, r1 = max(0, rows[0] - grow_r), min(out_shape[0], rows[-1] + 1 + grow_r)
    c0, c1 = max(0, cols[0] - grow_c), min(out_shape[1], cols[-1] + 1 + grow_c)
    registration = SliceRegistration(stack[:, r0:r1, c0:c1], cancel)
    up = registration.carry(low_mask[r0:r1, c0:c1], low, high)
    down = registration.carry(high_mask[r0:r1, c0:c1], high, low)
    out = {}
    for s in range(low + 1, high):
        out[s] = np.zeros(out_shape, np.float32)
        out[s][r0:r1, c0:c1] = ((high - s) * up[s] + (s - low) * down[s]) / (high - low)
    return out
