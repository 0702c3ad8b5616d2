"""How the browser tests paint the liver: brush strokes computed from the sample's geometry and its reference
liver, as a user who sees the liver paints it, row by row, with the Paint effect's brush.

The axial view fits the whole slice (voxel edges) into the view, centred, at the larger of the two mm-per-pixel
ratios; patient right is on screen left and anterior is up (trame-slicer's default orientation presets). A
stroke is a drag between two view pixels (from the view's top-left, as a browser sees them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from assertions import dice  # noqa: F401  (re-exported for the browser UI tests)

SAMPLE = Path(__file__).resolve().parents[1] / "Resources" / "Sample"
IMAGE, LABELS, LIVER = SAMPLE / "ct_abdomen_image.nii.gz", SAMPLE / "ct_abdomen_liver_spleen.nii.gz", 5
PAINTED_SLICES = (5, 15, 25)
"""The slices ``medadapt demo`` paints: the middles of the liver's thirds along z."""
BRUSH_MM = 12
"""The brush diameter the tests set (mm): the app's brush slider, two steps up from its default."""
ROW_STEP = 3
"""Rows between strokes (voxels): 9 mm apart, so 12 mm wide strokes leave no gap."""


@dataclass(frozen=True)
class SliceGeometry:
    """The sample's in-plane grid in RAS: the voxel centre of index 0 and the step per index along x (i) and y
    (j), and the spacing."""

    ras_x0: float
    ras_dx: float
    ras_y0: float
    ras_dy: float
    size_ij: tuple[int, int]

    @classmethod
    def of(cls, path: Path = IMAGE) -> "SliceGeometry":
        image = sitk.ReadImage(str(path))
        direction = np.asarray(image.GetDirection()).reshape(3, 3)
        if not np.allclose(np.abs(direction), np.eye(3)):
            raise ValueError("the stroke plan needs an axis-aligned image")
        origin, spacing = np.asarray(image.GetOrigin()), np.asarray(image.GetSpacing())
        # LPS -> RAS: x and y change sign
        return cls(-origin[0], -direction[0, 0] * spacing[0], -origin[1], -direction[1, 1] * spacing[1],
                   image.GetSize()[:2])

    def extent_mm(self) -> tuple[float, float, float, float]:
        """(x_min, x_max, y_min, y_max) of the voxel edges in RAS."""
        xs = [self.ras_x0 + self.ras_dx * i for i in (-0.5, self.size_ij[0] - 0.5)]
        ys = [self.ras_y0 + self.ras_dy * j for j in (-0.5, self.size_ij[1] - 0.5)]
        return min(xs), max(xs), min(ys), max(ys)

    def to_view(self, i: float, j: float, width: float, height: float) -> tuple[float, float]:
        """View pixel (from the top-left) of voxel (i, j) in a ``width`` x ``height`` axial view fitted to the
        slice."""
        x_min, x_max, y_min, y_max = self.extent_mm()
        mm_per_pixel = max((x_max - x_min) / width, (y_max - y_min) / height)
        ras_x, ras_y = self.ras_x0 + self.ras_dx * i, self.ras_y0 + self.ras_dy * j
        x = width / 2 - (ras_x - (x_min + x_max) / 2) / mm_per_pixel  # patient right on screen left
        y = height / 2 - (ras_y - (y_min + y_max) / 2) / mm_per_pixel  # anterior up
        return x, y


def reference_liver() -> np.ndarray:
    """The sample's liver as a (z, y, x) boolean array."""
    return sitk.GetArrayFromImage(sitk.ReadImage(str(LABELS))) == LIVER


def strokes_ij(mask: np.ndarray, row_step: int = ROW_STEP, inset: int = 1) -> list[tuple[tuple[int, int],
                                                                                           tuple[int, int]]]:
    """Strokes ((i0, j), (i1, j)) covering a 2D (j, i) ``mask``: every ``row_step``-th row from the second, one
    stroke per run of the mask on that row and the rows beside it (their intersection, so the brush's width
    stays inside), ``inset`` voxels in from the run's ends for the brush's radius."""
    rows = np.flatnonzero(mask.any(axis=1))
    strokes = []
    for j in range(rows.min() + 1, rows.max(), row_step):
        band = mask[j] & mask[j - 1] & mask[min(j + 1, mask.shape[0] - 1)]
        padded = np.concatenate([[0], band.astype(np.int8), [0]])
        starts, ends = np.flatnonzero(np.diff(padded) == 1), np.flatnonzero(np.diff(padded) == -1) - 1
        for i0, i1 in zip(starts, ends):
            if i1 - i0 >= 2 * inset:
                strokes.append(((int(i0 + inset), int(j)), (int(i1 - inset), int(j))))
            else:
                middle = int((i0 + i1) // 2)
                strokes.append(((middle, int(j)), (middle, int(j))))
    return strokes


def view_strokes(k: int, width: float, height: float, geometry: SliceGeometry | None = None,
                 liver: np.ndarray | None = None) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """The strokes that paint the liver on slice ``k`` as view pixels (from the view's top-left)."""
    geometry = geometry or SliceGeometry.of()
    liver = reference_liver() if liver is None else liver
    return [(geometry.to_view(i0, j0, width, height), geometry.to_view(i1, j1, width, height))
            for (i0, j0), (i1, j1) in strokes_ij(liver[k])]

