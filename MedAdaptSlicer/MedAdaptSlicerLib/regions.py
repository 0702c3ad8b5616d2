"""Restricting work to a box of voxels (an ROI) and putting the result back on the full grid.

Light (numpy only), so Local and Remote mode share it: the core's ``Volume`` and ``Geometry`` and Remote mode's
``conversion.Grid`` are dataclasses with the same grid fields, changed here with :func:`dataclasses.replace`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from medadapt.io.volume import Volume


def box(low_zyx, shape) -> tuple[slice, ...]:
    """The index of the (z, y, x) box of ``shape`` whose first voxel is ``low_zyx``."""
    return tuple(slice(a, a + s) for a, s in zip(low_zyx, shape))


def crop_grid(grid, low_zyx, high_zyx):
    """The grid (a core ``Geometry`` or a ``conversion.Grid``) of the box between inclusive (z, y, x) bounds,
    with its origin moved so world positions stay."""
    low, high = np.asarray(low_zyx, int), np.asarray(high_zyx, int)
    return replace(grid, size=tuple(int(s) for s in (high - low + 1)[::-1]),
                   origin=tuple(float(v) for v in grid.index_to_world(low[::-1])))


def crop(volume: Volume, low_zyx, high_zyx) -> Volume:
    """The sub-volume between inclusive (z, y, x) bounds, with its origin moved so world positions stay."""
    low, high = np.asarray(low_zyx, int), np.asarray(high_zyx, int)
    return replace(volume, array=np.ascontiguousarray(volume.array[box(low, high - low + 1)]),
                   geometry=crop_grid(volume.geometry, low, high))


def paste(full_shape, part: np.ndarray, low_zyx) -> np.ndarray:
    """A zero array of ``full_shape`` holding ``part`` at (z, y, x) offset ``low_zyx``."""
    out = np.zeros(full_shape, part.dtype)
    out[box(low_zyx, part.shape)] = part
    return out
