"""Child-process worker for Fill between slices: ITK's MorphologicalContourInterpolator on one binary mask.

It runs in its own process that imports only numpy and ``itk``: ITK 5.4's interpolator corrupts the heap on
real label maps (the interpreter aborts with "malloc(): unaligned fastbin chunk" when it frees memory at
exit, also beside PyTorch or SimpleITK). The worker saves its result and leaves with ``os._exit`` before
that teardown, so the damage stays inside this short-lived process.

    python -m medadapt.slices.mci_worker IN.npy OUT.npy AXIS
"""

import os
import sys

import numpy as np


def interpolate(mask: np.ndarray, itk_axis: int) -> np.ndarray:
    """Binary (z, y, x) mask interpolated between its non-empty slices along ITK axis ``itk_axis``."""
    import itk
    # Import the one wrapped class directly: resolving ``itk.MorphologicalContourInterpolator`` through itk's
    # lazy loader loads nearly every ITK module (about 30 s on a busy 2-core CPU instead of 3 s).
    from itk.itkMorphologicalContourInterpolatorPython import itkMorphologicalContourInterpolatorIUC3
    image = itk.image_from_array(np.ascontiguousarray(mask.astype(np.uint8)))
    interpolator = itkMorphologicalContourInterpolatorIUC3.New(image)
    interpolator.SetAxis(itk_axis)
    interpolator.Update()
    return itk.array_from_image(interpolator.GetOutput()).astype(np.uint8)


if __name__ == "__main__":
    source, target, axis = sys.argv[1], sys.argv[2], int(sys.argv[3])
    np.save(target, interpolate(np.load(source), axis))
    sys.stdout.flush()
    os._exit(0)
