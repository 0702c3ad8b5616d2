"""Atlas localisation for prompt-free ``predict`` on a cohort: the adapted subject's image and its painting
filled between the painted slices (the *atlas*) are registered affinely (SimpleITK, Mattes mutual information)
onto a new volume, and the warped structure says where the adapted model starts (:func:`medadapt.seeds.
seeds_from_atlas`). Meant for volumes of one protocol and field of view (cropped regions of interest, one
organ); structures whose place differs between subjects (tumours) are found by the heads instead."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .baselines import fill_between_slices
from .errors import InputError
from .exemplars import Exemplars
from .volume import Volume


@dataclass
class Atlas:
    """The adapted subject's image and structure labels (on one grid, at most ``max_spacing_mm`` apart)."""

    image: Volume
    labels: Volume


def make_atlas(image: Volume, exemplars: Exemplars, max_spacing_mm: float = 2.0) -> Atlas:
    """Atlas of ``image`` and its painting filled between the painted slices, resampled so that no voxel
    side is finer than ``max_spacing_mm`` (keeps the saved copy small; registration needs no more)."""
    labels = image.with_array(fill_between_slices(exemplars))
    spacing = tuple(max(s, max_spacing_mm) for s in image.geometry.spacing)
    if spacing == tuple(image.geometry.spacing):
        return Atlas(image, labels)
    reference = _grid(image.to_sitk(), spacing)
    return Atlas(Volume.from_sitk(sitk.Resample(sitk.Cast(image.to_sitk(), sitk.sitkFloat32), reference,
                                                sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)),
                 Volume.from_sitk(sitk.Resample(labels.to_sitk(), reference, sitk.Transform(),
                                                sitk.sitkNearestNeighbor, 0)))


def warp_atlas(atlas: Atlas, image: Volume, seed: int = 1) -> Volume:
    """The atlas labels on ``image``'s grid after an affine registration of the atlas image onto ``image``
    (started from the grids' centres, two resolution levels; ``seed`` fixes the metric's random samples)."""
    moving = sitk.Cast(atlas.image.to_sitk(), sitk.sitkFloat32)
    fixed_full = image.to_sitk()
    spacing = [max(a, b) for a, b in zip(atlas.image.geometry.spacing, fixed_full.GetSpacing())]
    fixed = sitk.Cast(sitk.Resample(fixed_full, _grid(fixed_full, spacing), sitk.Transform(), sitk.sitkLinear, 0.0),
                      sitk.sitkFloat32)
    start = sitk.CenteredTransformInitializer(fixed, moving, sitk.AffineTransform(3),
                                              sitk.CenteredTransformInitializerFilter.GEOMETRY)
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.3, seed)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(1.0, 1e-4, 300)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([2, 1])
    method.SetSmoothingSigmasPerLevel([1, 0])
    method.SetInitialTransform(start, inPlace=False)
    try:
        transform = method.Execute(fixed, moving)
    except RuntimeError as exc:
        raise InputError(f"atlas registration onto the new volume failed ({str(exc).strip().splitlines()[-1]})"
                         ) from exc
    warped = sitk.Resample(atlas.labels.to_sitk(), fixed_full, transform, sitk.sitkNearestNeighbor, 0)
    return image.with_array(sitk.GetArrayFromImage(warped).astype(np.int16))


def _grid(image: sitk.Image, spacing) -> sitk.Image:
    """An empty image covering ``image``'s extent (same origin and direction) with voxels of ``spacing``."""
    size = [max(1, int(round(n * s / t))) for n, s, t in zip(image.GetSize(), image.GetSpacing(), spacing)]
    grid = sitk.Image(size, sitk.sitkUInt8)
    grid.SetOrigin(image.GetOrigin())
    grid.SetDirection(image.GetDirection())
    grid.SetSpacing(tuple(float(t) for t in spacing))
    return grid
