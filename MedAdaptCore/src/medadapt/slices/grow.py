"""Baseline for honest comparison: Slicer's "Grow from seeds" (the fast grow-cut filter
``vtkImageGrowCutSegment`` of Slicer's Segmentations module logic), run on the voxel arrays as the Segment Editor
effect runs it.

The filter comes from the ``slicer-core`` wheel and is imported only when grow-cut runs: the core does not depend
on it because that wheel is large and pins its own VTK, which would constrain every install of MedAdapt for one
optional baseline. Without it :func:`grow_cut` raises :class:`InputError` naming the install command.

How the effect sets the filter up (``SegmentEditorGrowFromSeedsEffect`` and its auto-complete base class): the
intensity volume is the source volume's own intensities, the seed label volume the visible segments merged
(one value per segment, 0 unlabelled), no mask unless an editable area is set, ``SetDistancePenalty`` the
"seed locality" (0 by default), and both are cropped to the seeds' bounding box grown on each side by
``extentGrowthRatio`` (0.20 without a mask) of its size along that axis, at least 3 voxels, within the volume.
Voxels outside the crop keep their painted labels.
"""

from __future__ import annotations

import numpy as np

from medadapt.errors import InputError
from medadapt.io.exemplars import Exemplars

SLICER_CORE = "slicer-core==5.11.0.6"
"""The wheel that carries ``vtkImageGrowCutSegment`` (the version MedAdapt is tested with)."""

EXTENT_GROWTH_RATIO = 0.20
"""Margin around the seeds, as a fraction of their extent per axis (Slicer's effect without a mask)."""

MINIMUM_MARGIN = 3
"""Least margin in voxels per axis (Slicer's effect)."""


def _filter_class():
    """``vtkImageGrowCutSegment`` from slicer-core; :class:`InputError` with the install command if absent."""
    try:
        import slicer
        return slicer.vtkImageGrowCutSegment
    except (ImportError, AttributeError) as error:
        raise InputError(f"--method grow runs Slicer's Grow from seeds filter, which needs slicer-core: "
                         f"pip install {SLICER_CORE} ({error})") from error


def seed_crop(seeds: np.ndarray, ratio: float | None = EXTENT_GROWTH_RATIO) -> tuple[slice, ...]:
    """Index box (z, y, x) the effect segments: the bounding box of the non-zero ``seeds`` grown on each side by
    ``int(max(3, ratio * (last - first)))`` voxels along that axis, within the array; the whole array for
    ``ratio`` ``None``."""
    if ratio is None:
        return tuple(slice(0, n) for n in seeds.shape)
    box = []
    for axis in range(seeds.ndim):
        present = np.flatnonzero(seeds.any(axis=tuple(a for a in range(seeds.ndim) if a != axis)))
        first, last = int(present[0]), int(present[-1])
        margin = int(max(MINIMUM_MARGIN, ratio * (last - first)))
        box.append(slice(max(0, first - margin), min(seeds.shape[axis], last + margin + 1)))
    return tuple(box)


def grow_cut(intensity: np.ndarray, seeds: np.ndarray, spacing_zyx=(1.0, 1.0, 1.0), distance_penalty: float = 0.0,
             ratio: float | None = EXTENT_GROWTH_RATIO) -> np.ndarray:
    """Labels (z, y, x) grown from ``seeds`` (0 unlabelled, one positive value per region) over ``intensity``
    by ``vtkImageGrowCutSegment``, on the crop of :func:`seed_crop`; outside it the seeds are returned as they
    are. Index space: the arrays' own grid (spacing only matters for a distance penalty)."""
    from vtk.util import numpy_support
    import vtk

    growcut = _filter_class()
    out = seeds.astype(np.int16)
    if not seeds.any():
        return out
    box = seed_crop(seeds, ratio)

    def image(array: np.ndarray, vtk_type: int):
        data = vtk.vtkImageData()
        data.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
        data.SetSpacing(*reversed([float(s) for s in spacing_zyx]))
        scalars = numpy_support.numpy_to_vtk(np.ascontiguousarray(array).ravel(), deep=True, array_type=vtk_type)
        data.GetPointData().SetScalars(scalars)
        return data

    cropped = seeds[box].astype(np.int16)
    if min(cropped.shape) < 2:  # the filter needs a 3D block ("image size is too small")
        return out
    segment = growcut()
    segment.SetIntensityVolume(image(intensity[box].astype(np.float32), vtk.VTK_FLOAT))
    segment.SetSeedLabelVolume(image(cropped, vtk.VTK_SHORT))
    segment.SetDistancePenalty(distance_penalty)
    segment.Update()
    grown = numpy_support.vtk_to_numpy(segment.GetOutput().GetPointData().GetScalars())
    out[box] = grown.reshape(cropped.shape)
    return out


def exemplar_seed_labels(exemplars: Exemplars) -> tuple[np.ndarray, int]:
    """Seed label volume (image grid) of the painted slices and the background seed value: every painted voxel
    its label, the rest of each painted slice the background value (one more than the largest label)."""
    painted = exemplars.labelmap.array
    background = int(max(exemplars.labels, default=0)) + 1
    seeds = np.zeros(painted.shape, np.int16)
    index = [slice(None)] * painted.ndim
    index[exemplars.axis] = exemplars.slices
    seeds[tuple(index)] = np.where(painted[tuple(index)] > 0, painted[tuple(index)], background)
    return seeds, background


def grow_from_seeds(intensity: np.ndarray, exemplars: Exemplars, ratio: float | None = EXTENT_GROWTH_RATIO
                    ) -> np.ndarray:
    """Labelmap (image grid) of Slicer's Grow from seeds from the painted slices (:func:`exemplar_seed_labels`):
    every label its painted voxels, the background the rest of each painted slice (``ratio``: the effect's
    ``extentGrowthRatio``; ``None`` grows over the whole volume)."""
    seeds, background = exemplar_seed_labels(exemplars)
    spacing_zyx = tuple(reversed(exemplars.labelmap.geometry.spacing))
    grown = grow_cut(intensity, seeds, spacing_zyx, ratio=ratio)
    grown[grown == background] = 0
    return grown.astype(np.int32)


def model_seed_labels(probability: np.ndarray, painted: np.ndarray, painted_slices: list[int]) -> np.ndarray:
    """Seeds (slice axis first; 1 structure, 2 background) for grow-cut from a model's probability and one
    label's painting: the painted slices as painted (structure / the rest of the slice); on each other slice the
    model segments, the confident interior of its mask (inside by at least half the equivalent radius
    ``sqrt(area / pi)``) as structure and what lies that far outside it as background. Grow-cut then places the
    boundary in the band between, and beyond the model's last slice, by the image's edges."""
    from scipy import ndimage

    seeds = np.zeros(probability.shape, np.int16)
    for s in range(probability.shape[0]):
        if s in painted_slices:
            seeds[s] = np.where(painted[s] > 0, 1, 2)
            continue
        mask = probability[s] > 0.5
        if not mask.any():
            continue
        band = max(1.0, 0.5 * np.sqrt(np.count_nonzero(mask) / np.pi))
        seeds[s][ndimage.distance_transform_edt(mask) >= band] = 1
        seeds[s][ndimage.distance_transform_edt(~mask) >= band] = 2
    return seeds
