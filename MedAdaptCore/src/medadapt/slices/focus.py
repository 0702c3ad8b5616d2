"""Where the model looks: the in-plane region around what the user painted and clicked, so that a small
structure fills the model's input frame instead of a few of its pixels."""

from __future__ import annotations

import numpy as np

from medadapt.io.exemplars import Exemplars
from medadapt.io.points import PointPrompt
from medadapt.io.regions import crop

FOCUS_MIN_SIDE = 64
"""Smallest in-plane side (voxels) of a focus region: a quarter of LiteMedSAM's 256-pixel input, so no voxel
spans more than four model pixels."""


def focus_region(exemplars: Exemplars, points: list[PointPrompt], margin: float, min_side: int
                 ) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Inclusive (z, y, x) bounds: every slice along the slice axis; in plane, a square (in mm) around the
    bounding box of every painted voxel and positive click, its side the box's longer side times
    ``1 + 2 * margin`` and at least ``min_side`` voxels, clipped to the image."""
    array = exemplars.labelmap.array
    spacing = np.asarray(tuple(reversed(exemplars.labelmap.geometry.spacing)), float)
    painted = np.argwhere(array != 0)
    clicked = np.asarray([p.index_zyx for p in points if p.positive], int).reshape(-1, 3)
    marked = np.concatenate([painted, clicked]) if len(clicked) else painted
    low, high = np.zeros(3, int), np.asarray(array.shape) - 1
    if not len(marked):
        return tuple(low), tuple(high)
    plane = [a for a in range(3) if a != exemplars.axis]
    first, last = marked.min(axis=0), marked.max(axis=0)
    centre = (first + last + 1) / 2.0
    side_mm = max(((last - first + 1) * spacing)[plane]) * (1 + 2 * margin)
    for a in plane:
        half = max(side_mm / spacing[a], min_side) / 2.0
        low[a] = max(0, int(np.floor(centre[a] - half)))
        high[a] = min(array.shape[a] - 1, int(np.ceil(centre[a] + half)) - 1)
    return tuple(int(v) for v in low), tuple(int(v) for v in high)


def crop_exemplars(exemplars: Exemplars, low_zyx, high_zyx) -> Exemplars:
    """``exemplars`` restricted to the box between inclusive bounds that keep every slice along its axis."""
    return Exemplars(crop(exemplars.labelmap, low_zyx, high_zyx), exemplars.axis, list(exemplars.slices),
                     {label: list(s) for label, s in exemplars.label_slices.items()})


def crop_points(points: list[PointPrompt], low_zyx, high_zyx) -> list[PointPrompt]:
    """The clicks inside the box between inclusive bounds, in its voxel indices."""
    low, high = np.asarray(low_zyx), np.asarray(high_zyx)
    return [PointPrompt(tuple(int(v) for v in np.asarray(p.index_zyx) - low), p.positive, p.label) for p in points
            if np.all(np.asarray(p.index_zyx) >= low) and np.all(np.asarray(p.index_zyx) <= high)]
