"""Isotropic model grids and resampling between grids (SimpleITK), for volumetric (3D) models.

A 3D model sees the image on its own grid: axis-aligned in RAS orientation with isotropic spacing, covering
the image's whole physical extent. Its outputs go back onto the exact image grid (origin, spacing and direction
kept) by resampling in physical space.
"""

from __future__ import annotations

import itertools

import numpy as np
import SimpleITK as sitk

from medadapt.io.volume import Geometry, Volume

RAS = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
"""Direction cosines (LPS world) of an array whose index axes i, j, k point right, anterior, superior."""


def isotropic_grid(geometry: Geometry, spacing: float) -> Geometry:
    """Axis-aligned RAS grid of ``spacing`` mm whose voxels cover every voxel of ``geometry``."""
    size = np.asarray(geometry.size, float)
    corners = np.array([geometry.index_to_world(np.asarray(c) * size - 0.5)
                        for c in itertools.product((0, 1), repeat=3)])
    low, high = corners.min(axis=0), corners.max(axis=0)
    origin = (high[0] - spacing / 2, high[1] - spacing / 2, low[2] + spacing / 2)
    extent = tuple(max(1, int(np.ceil(v / spacing - 1e-6))) for v in high - low)
    return Geometry(extent, (float(spacing),) * 3, tuple(float(v) for v in origin), RAS)


def resample(array: np.ndarray, source: Geometry, target: Geometry, linear: bool = True,
             default: float = 0.0) -> np.ndarray:
    """``array`` (z, y, x) on the ``source`` grid sampled at the voxels of ``target`` (linear or nearest
    neighbour interpolation in physical space; ``default`` outside ``source``)."""
    image = Volume(np.ascontiguousarray(array), source).to_sitk()
    sampled = sitk.Resample(image, target.size, sitk.Transform(), sitk.sitkLinear if linear else
                            sitk.sitkNearestNeighbor, target.origin, target.spacing, target.direction,
                            float(default), image.GetPixelID())
    return sitk.GetArrayFromImage(sampled)


def map_indices(zyx: np.ndarray, source: Geometry, target: Geometry) -> np.ndarray:
    """Continuous (z, y, x) indices on ``target`` of the (n, 3) voxel indices ``zyx`` of ``source``."""
    world = np.asarray(source.origin) + (source.direction_matrix @ (zyx[:, ::-1] * source.spacing).T).T
    ijk = np.linalg.solve(target.direction_matrix, (world - np.asarray(target.origin)).T).T / target.spacing
    return ijk[:, ::-1]
