"""Atlas localisation for prompt-free ``predict`` on a cohort: the adapted subject's image and its painting
filled between the painted slices (the *atlas*) are registered (SimpleITK: affine, then B-spline; Mattes mutual
information) onto a new volume, and the warped structure says where the adapted model starts (:func:`medadapt.seeds.
seeds_from_atlas`). Meant for volumes of one protocol and field of view (cropped regions of interest, one
organ); structures whose place differs between subjects (tumours) are found by the heads instead."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from medadapt.errors import InputError
from medadapt.io.exemplars import Exemplars
from medadapt.io.volume import Volume
from medadapt.progress import CancelFlag, Progress, ProgressCallback, check_cancel, report
from medadapt.slices.fill import fill_between_slices


@dataclass
class Atlas:
    """The adapted subject's image and its structure labels, on one grid."""

    image: Volume
    labels: Volume


def make_atlas(image: Volume, exemplars: Exemplars, max_voxels: int = 2 ** 22) -> Atlas:
    """Atlas of ``image`` and its painting filled between the painted slices, on a grid coarsened (same
    extent, origin and direction) until it has at most ``max_voxels`` voxels (keeps the saved copy small;
    registration needs no more)."""
    labels = image.with_array(fill_between_slices(exemplars))
    factor = (image.array.size / max_voxels) ** (1 / 3)
    if factor <= 1:
        return Atlas(image.with_array(image.array.astype(np.float32)), labels)
    reference = _grid(image.to_sitk(), [s * factor for s in image.geometry.spacing])
    return Atlas(Volume.from_sitk(sitk.Resample(sitk.Cast(image.to_sitk(), sitk.sitkFloat32), reference,
                                                sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)),
                 Volume.from_sitk(sitk.Resample(labels.to_sitk(), reference, sitk.Transform(),
                                                sitk.sitkNearestNeighbor, 0)))


def warp_atlas(atlas: Atlas, image: Volume, deformable: bool = True, samples: int = 20000, seed: int = 1,
               progress: ProgressCallback | None = None, cancel: CancelFlag | None = None) -> Volume:
    """The atlas labels on ``image``'s grid after registering the atlas image onto ``image``: affine (started
    from the grids' centres), then, if ``deformable``, a B-spline (5 control points per axis); Mattes mutual
    information on ``samples`` random voxels (``seed`` fixes them), two resolution levels. ``progress`` hears
    of each finished stage; ``cancel`` is checked between stages."""
    stages = 2 if deformable else 1
    moving = sitk.Cast(atlas.image.to_sitk(), sitk.sitkFloat32)
    fixed_full = image.to_sitk()
    spacing = [max(a, b) for a, b in zip(atlas.image.geometry.spacing, fixed_full.GetSpacing())]
    fixed = sitk.Cast(sitk.Resample(fixed_full, _grid(fixed_full, spacing), sitk.Transform(), sitk.sitkLinear, 0.0),
                      sitk.sitkFloat32)
    share = min(1.0, samples / fixed.GetNumberOfPixels())
    start = sitk.CenteredTransformInitializer(fixed, moving, sitk.AffineTransform(3),
                                              sitk.CenteredTransformInitializerFilter.GEOMETRY)
    affine = _method(share, seed)
    affine.SetOptimizerAsRegularStepGradientDescent(1.0, 1e-4, 300)
    affine.SetOptimizerScalesFromPhysicalShift()
    affine.SetInitialTransform(start, inPlace=False)
    transform = _execute(affine, fixed, moving)
    report(progress, Progress("register atlas", 1, stages))
    check_cancel(cancel)
    if deformable:
        bspline = sitk.BSplineTransformInitializer(fixed, [5, 5, 5])
        refine = _method(share, seed)
        refine.SetOptimizerAsLBFGSB(1e-5, 100)
        refine.SetMovingInitialTransform(transform)
        refine.SetInitialTransform(bspline, inPlace=True)
        _execute(refine, fixed, moving)
        transform = sitk.CompositeTransform([transform, bspline])
        report(progress, Progress("register atlas", 2, stages))
        check_cancel(cancel)
    warped = sitk.Resample(atlas.labels.to_sitk(), fixed_full, transform, sitk.sitkNearestNeighbor, 0)
    return image.with_array(sitk.GetArrayFromImage(warped).astype(np.int32))


def _method(share: float, seed: int) -> sitk.ImageRegistrationMethod:
    """Mattes mutual information on a random ``share`` of the voxels, linear interpolation, two levels."""
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(share, seed)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetShrinkFactorsPerLevel([2, 1])
    method.SetSmoothingSigmasPerLevel([1, 0])
    return method


def _execute(method: sitk.ImageRegistrationMethod, fixed: sitk.Image, moving: sitk.Image) -> sitk.Transform:
    """Run one registration stage; a failure is bad input naming the atlas."""
    try:
        return method.Execute(fixed, moving)
    except RuntimeError as exc:
        raise InputError(f"atlas registration onto the new volume failed ({str(exc).strip().splitlines()[-1]})"
                         ) from exc


def _grid(image: sitk.Image, spacing) -> sitk.Image:
    """An empty image covering ``image``'s extent (same origin and direction) with voxels of ``spacing``."""
    size = [max(1, int(round(n * s / t))) for n, s, t in zip(image.GetSize(), image.GetSpacing(), spacing)]
    grid = sitk.Image(size, sitk.sitkUInt8)
    grid.SetOrigin(image.GetOrigin())
    grid.SetDirection(image.GetDirection())
    grid.SetSpacing(tuple(float(t) for t in spacing))
    return grid
