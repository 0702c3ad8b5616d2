"""Baselines for honest comparison: Slicer's "Fill between slices" (ITK morphological contour interpolation)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from medadapt.io.exemplars import Exemplars


def interpolate_mask(mask: np.ndarray, axis: int) -> np.ndarray:
    """Binary (z, y, x) ``mask`` painted on some slices along array ``axis``, interpolated between them by
    ``itk.MorphologicalContourInterpolator`` in a separate process (see :mod:`medadapt.slices.mci_worker`)."""
    with tempfile.TemporaryDirectory(prefix="medadapt-fill-") as folder:
        source, target = Path(folder) / "in.npy", Path(folder) / "out.npy"
        np.save(source, mask.astype(np.uint8))
        subprocess.run([sys.executable, "-m", "medadapt.slices.mci_worker", str(source), str(target), str(2 - axis)],
                       check=True, capture_output=True)  # nosec B603  # this Python, a fixed module, our own temp paths
        return np.load(target).astype(bool)


def fill_between_slices(exemplars: Exemplars) -> np.ndarray:
    """Labelmap (z, y, x) interpolated between the painted slices along the exemplar axis, as Slicer's
    Segment Editor "Fill between slices" does (one label at a time, :func:`interpolate_mask`); painted voxels
    keep their labels."""
    painted = exemplars.labelmap.array
    out = painted.astype(np.int32)
    for label in exemplars.labels:
        filled = interpolate_mask(painted == label, exemplars.axis)
        out[filled & (out == 0)] = label
    return out
