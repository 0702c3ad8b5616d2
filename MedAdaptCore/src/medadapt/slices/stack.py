"""A volume as a stack of model-ready slices along the exemplar axis, and its spacing in that frame."""

from __future__ import annotations

import numpy as np

from medadapt.io.intensity import normalise
from medadapt.io.volume import Volume
from medadapt.slices.frame import in_plane_spacing


def spacing_rcs(image: Volume, axis: int) -> tuple[float, float, float]:
    """Spacing (row, col, slice) in mm of slices taken along array ``axis``."""
    return (*in_plane_spacing(image.geometry.spacing, axis), float(tuple(reversed(image.geometry.spacing))[axis]))


def slice_stack(image: Volume, axis: int, window: tuple[float, float]) -> np.ndarray:
    """The image normalised to [0, 1] with the slice axis first."""
    return normalise(np.moveaxis(image.array, axis, 0), window)
