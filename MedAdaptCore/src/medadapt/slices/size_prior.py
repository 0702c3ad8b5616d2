"""The size prior of constrained transductive inference (FSEFT): an expected structure volume estimated from
the painted slices alone, and the hinge penalty that keeps a prediction's volume near it."""

from __future__ import annotations

import numpy as np
import torch


def robust_areas(areas: np.ndarray, min_count: int = 5) -> np.ndarray:
    """``areas`` without Tukey outliers (outside 1.5 IQR of the quartiles) when there are at least
    ``min_count`` of them; fewer are kept as they are (too few to call any an outlier)."""
    areas = np.asarray(areas, float)
    if len(areas) < min_count:
        return areas
    q1, q3 = np.percentile(areas, [25, 75])
    keep = (areas >= q1 - 1.5 * (q3 - q1)) & (areas <= q3 + 1.5 * (q3 - q1))
    return areas[keep]


def mean_spacing(slices: list[int]) -> float:
    """Mean distance (in slices) between consecutive painted ``slices`` (at least two)."""
    return float(max(slices) - min(slices)) / (len(slices) - 1)


def part_length(slices: list[int], mean_area: float, spacing_rcs: tuple[float, float, float]) -> float:
    """Length (in slices) of one of the k equal parts of a structure's extent that the painted ``slices`` are
    read as sampling (one slice in each part): the mean spacing between them when k >= 2, and with one slice
    the equivalent diameter sqrt(4 A / pi) of its painted cross-section (``mean_area`` pixels), in slices."""
    if len(slices) >= 2:
        return mean_spacing(slices)
    row_mm, col_mm, slice_mm = spacing_rcs
    return float(np.sqrt(4 * mean_area * row_mm * col_mm / np.pi) / slice_mm)


def expected_size(slices: list[int], areas: list[float], negatives: list[int], n_slices: int,
                  spacing_rcs: tuple[float, float, float], min_count: int = 5) -> float:
    """Expected structure volume S in voxels, from painted slices only.

    ``slices`` are the painted slices holding the structure, ``areas`` its painted area (pixels) on each,
    ``negatives`` painted slices where it is absent, ``spacing_rcs`` the (row, col, slice) spacing in mm.

    S = mean painted area x extent along the slice axis (a midpoint-rule integral of the cross-section):

    * the mean is taken after removing area outliers when k >= ``min_count`` slices are painted
      (:func:`robust_areas`);
    * with k >= 2 slices the painting is read as one slice at the centre of each of k equal parts of the
      extent, so extent = (last - first) x k / (k - 1) slices, centred on the painted span;
    * with one slice the extent is the cross-section's equivalent diameter (sqrt(4 A / pi) in mm, divided by
      the slice spacing) and S = 2/3 A x extent, the volume of an ellipsoid with that central cross-section;
    * the extent is clipped to the volume and stops before the nearest painted slice without the structure.
    """
    order = np.argsort(slices)
    slices, areas = np.asarray(slices)[order], np.asarray(areas, float)[order]
    mean_area = float(robust_areas(areas, min_count).mean())
    k = len(slices)
    extent = part_length(slices.tolist(), mean_area, spacing_rcs) * k
    shape = 1.0 if k >= 2 else 2.0 / 3.0
    centre = (slices[0] + slices[-1]) / 2
    below = max([s for s in negatives if s < slices[0]], default=-1)
    above = min([s for s in negatives if s > slices[-1]], default=n_slices)
    low, high = max(centre - extent / 2, below + 0.5), min(centre + extent / 2, above - 0.5)
    return shape * mean_area * max(high - low, 1.0)


def size_penalty(predicted: torch.Tensor, prior: float, tolerance: float) -> torch.Tensor:
    """Hinge on the predicted volume ``predicted`` outside [(1 - tolerance) S, (1 + tolerance) S], divided by
    S so that its weight does not depend on the structure's size; zero inside the band."""
    low, high = (1 - tolerance) * prior, (1 + tolerance) * prior
    return (torch.relu(low - predicted) + torch.relu(predicted - high)) / prior
