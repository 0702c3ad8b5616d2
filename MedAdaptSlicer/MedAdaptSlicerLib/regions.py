"""Restricting work to a box of voxels (an ROI) and putting the result back on the full grid."""

from __future__ import annotations

import numpy as np

from medadapt.io.volume import Geometry, Volume


def crop(volume: Volume, low_zyx, high_zyx) -> Volume:
    """The sub-volume between inclusive (z, y, x) bounds, with its origin moved so world positions stay."""
    low, high = np.asarray(low_zyx, int), np.asarray(high_zyx, int)
    region = tuple(slice(a, b + 1) for a, b in zip(low, high))
    g = volume.geometry
    origin = tuple(float(v) for v in g.index_to_world(low[::-1]))
    size = tuple(int(s) for s in (high - low + 1)[::-1])
    return Volume(np.ascontiguousarray(volume.array[region]), Geometry(size, g.spacing, origin, g.direction))


def paste(full_shape, part: np.ndarray, low_zyx) -> np.ndarray:
    """A zero array of ``full_shape`` holding ``part`` at (z, y, x) offset ``low_zyx``."""
    out = np.zeros(full_shape, part.dtype)
    out[tuple(slice(a, a + s) for a, s in zip(low_zyx, part.shape))] = part
    return out
