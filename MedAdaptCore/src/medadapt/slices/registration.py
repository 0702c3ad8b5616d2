"""Carrying painted masks to the slices between them by 2D deformable registration of consecutive image slices
(the idea of Sli2Vol, MICCAI 2021, without its learned features): the image itself says how a contour moves
from one slice to the next."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from medadapt.progress import CancelFlag, check_cancel

ITERATIONS = 50
SMOOTHING_PIXELS = 1.5


def register(fixed: sitk.Image, moving: sitk.Image) -> sitk.Transform:
    """Transform mapping ``fixed``'s pixels onto ``moving`` (symmetric-forces demons, :data:`ITERATIONS`
    iterations, displacement field smoothed by :data:`SMOOTHING_PIXELS`)."""
    demons = sitk.FastSymmetricForcesDemonsRegistrationFilter()
    demons.SetNumberOfIterations(ITERATIONS)
    demons.SetStandardDeviations(SMOOTHING_PIXELS)
    return sitk.DisplacementFieldTransform(sitk.Cast(demons.Execute(fixed, moving), sitk.sitkVectorFloat64))


def carry(stack: np.ndarray, mask: np.ndarray, start: int, stop: int, cancel: CancelFlag | None = None
          ) -> dict[int, np.ndarray]:
    """Soft masks on the slices of ``stack`` strictly between ``start`` and ``stop``: ``mask`` (on slice
    ``start``) warped from each slice onto the next by :func:`register`."""
    step = 1 if stop > start else -1
    previous = sitk.GetImageFromArray(np.ascontiguousarray(stack[start], dtype=np.float32))
    current = sitk.GetImageFromArray(np.ascontiguousarray(mask, dtype=np.float32))
    out = {}
    for index in range(start + step, stop, step):
        check_cancel(cancel)
        image = sitk.GetImageFromArray(np.ascontiguousarray(stack[index], dtype=np.float32))
        current = sitk.Resample(current, image, register(image, previous), sitk.sitkLinear, 0.0)
        out[index], previous = sitk.GetArrayFromImage(current), image
    return out


def _region(mask: np.ndarray) -> tuple[slice, slice] | None:
    """Rows and columns of ``mask``'s bounding box grown by half its size on each side (at least 4 pixels),
    clipped to the slice: where what moves its contour lies. ``None`` for an empty mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    grow_r, grow_c = max(4, (rows[-1] - rows[0] + 1) // 2), max(4, (cols[-1] - cols[0] + 1) // 2)
    return (slice(max(0, rows[0] - grow_r), min(mask.shape[0], rows[-1] + 1 + grow_r)),
            slice(max(0, cols[0] - grow_c), min(mask.shape[1], cols[-1] + 1 + grow_c)))


def carry_between(stack: np.ndarray, low: int, low_mask: np.ndarray, high: int, high_mask: np.ndarray,
                  cancel: CancelFlag | None = None) -> dict[int, np.ndarray]:
    """Foreground probability on the slices strictly between painted slices ``low`` and ``high`` of ``stack``:
    both painted masks carried towards each other (:func:`carry`), blended by distance as the model's walks
    are. Registration runs on the masks' joint bounding box grown by half its size on each side (what moves the
    contour lies near it), so large slices cost little."""
    region = _region(low_mask | high_mask)
    if region is None:
        return {s: np.zeros(stack.shape[1:], np.float32) for s in range(low + 1, high)}
    box = stack[(slice(None), *region)]
    up = carry(box, low_mask[region], low, high, cancel)
    down = carry(box, high_mask[region], high, low, cancel)
    out = {}
    for s in range(low + 1, high):
        out[s] = np.zeros(stack.shape[1:], np.float32)
        out[s][region] = ((high - s) * up[s] + (s - low) * down[s]) / (high - low)
    return out
