"""Baselines for honest comparison: Slicer's "Fill between slices" (ITK morphological contour interpolation)."""

from __future__ import annotations

import numpy as np

from .exemplars import Exemplars


def fill_between_slices(exemplars: Exemplars) -> np.ndarray:
    """Labelmap (z, y, x) interpolated between the painted slices along the exemplar axis, as Slicer's
    Segment Editor "Fill between slices" does (``itk.MorphologicalContourInterpolator``)."""
    import itk
    array = exemplars.labelmap.array.astype(np.int16)
    image = itk.image_from_array(np.ascontiguousarray(array))
    interpolator = itk.MorphologicalContourInterpolator.New(image)
    interpolator.SetAxis(2 - exemplars.axis)  # ITK numbers axes x, y, z; the array is (z, y, x)
    interpolator.Update()
    filled = itk.array_from_image(interpolator.GetOutput()).astype(np.int16)
    return np.where(array != 0, array, filled)
