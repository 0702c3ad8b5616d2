"""Intensity normalisation of a volume to [0, 1], the range the foundation models expect."""

from __future__ import annotations

import numpy as np

from medadapt.errors import InputError


def is_ct(array: np.ndarray) -> bool:
    """Heuristic: Hounsfield units (air near -1000) mean CT."""
    return float(np.percentile(array, 1)) < -500


def intensity_window(array: np.ndarray, foreground: np.ndarray | None = None) -> tuple[float, float]:
    """Window (low, high) for a volume.

    CT: the soft-tissue window [-160, 240] HU widened to cover the painted structure's 2nd-98th percentile
    with a 100 HU margin (so lung or bone structures stay visible). Other modalities: the 0.5-99.5th
    percentiles of the non-zero voxels.
    """
    if is_ct(array):
        low, high = -160.0, 240.0
        if foreground is not None and np.any(foreground):
            values = array[foreground]
            low = min(low, float(np.percentile(values, 2)) - 100)
            high = max(high, float(np.percentile(values, 98)) + 100)
        return low, high
    values = array[array != 0] if np.any(array != 0) else array.ravel()
    low, high = np.percentile(values, [0.5, 99.5])
    return float(low), float(max(high, low + 1e-6))


def normalise(array: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Clip to ``window`` and scale to float32 in [0, 1]."""
    low, high = window
    return ((np.clip(array.astype(np.float32), low, high) - low) / max(high - low, 1e-6)).astype(np.float32)


def require_contrast(image) -> None:
    """:class:`InputError` for a constant image (a :class:`~medadapt.io.volume.Volume`): a model sees nothing
    there to segment."""
    if image.array.size and image.array.min() == image.array.max():
        raise InputError(f"image: every voxel is {image.array.flat[0]!r}; a constant image holds nothing to "
                         "segment")
