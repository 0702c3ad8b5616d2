"""Baselines for honest comparison: Slicer's "Fill between slices" (ITK morphological contour interpolation)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from .exemplars import Exemplars


def fill_between_slices(exemplars: Exemplars) -> np.ndarray:
    """Labelmap (z, y, x) interpolated between the painted slices along the exemplar axis, as Slicer's
    Segment Editor "Fill between slices" does (``itk.MorphologicalContourInterpolator``, one label at a time
    in a separate process, see :mod:`medadapt.mci_worker`); painted voxels keep their labels."""
    painted = exemplars.labelmap.array
    out = painted.astype(np.int16)
    with tempfile.TemporaryDirectory(prefix="medadapt-fill-") as folder:
        for label in exemplars.labels:
            source, target = Path(folder) / f"in{label}.npy", Path(folder) / f"out{label}.npy"
            np.save(source, (painted == label).astype(np.uint8))
            subprocess.run([sys.executable, "-m", "medadapt.mci_worker", str(source), str(target),
                            str(2 - exemplars.axis)], check=True, capture_output=True)
            filled = np.load(target).astype(bool)
            out[filled & (out == 0)] = label
    return out
