"""Conversions between MRML nodes and MedAdapt core objects.

Slicer works in RAS, the core (SimpleITK) in LPS; voxel arrays from ``slicer.util.arrayFromVolume`` are in
(k, j, i) order, which is the core's (z, y, x). Geometry is kept exactly: origin, spacing and direction.

The functions that return or take core objects (``Geometry``, ``Volume``, ``PointPrompt``) import the core when
called; the rest (node grids and arrays, segments, the painted mask) work in a Slicer without the core, as
Remote mode needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from .core_types import InputError

if TYPE_CHECKING:
    from medadapt.io.points import PointPrompt
    from medadapt.io.volume import Geometry, Volume

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
SegLogic = slicer.vtkSlicerSegmentationsModuleLogic


def _require_untransformed(node, what: str) -> None:
    if node.GetParentTransformNode() is not None:
        raise InputError(f"{what} '{node.GetName()}' is under a transform "
                         f"('{node.GetParentTransformNode().GetName()}'); harden the transform first")


@dataclass(frozen=True)
class Grid:
    """A volume node's grid in LPS, SimpleITK's conventions (``size`` is (x, y, z), ``direction`` row-major
    3x3): the fields and index / world mapping of the core's ``Geometry``, without the core (Remote mode)."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]

    @property
    def direction_matrix(self) -> np.ndarray:
        """3x3 direction cosines (columns are the x, y, z index axes in LPS)."""
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    def index_to_world(self, ijk) -> np.ndarray:
        """Continuous (x, y, z) voxel index -> LPS world point in mm."""
        return np.asarray(self.origin) + self.direction_matrix @ (np.asarray(self.spacing) * np.asarray(ijk, float))

    def world_to_index(self, lps) -> np.ndarray:
        """LPS world point in mm -> continuous (x, y, z) voxel index."""
        offset = np.asarray(lps, dtype=float) - np.asarray(self.origin)
        return np.linalg.solve(self.direction_matrix, offset) / np.asarray(self.spacing)


def node_grid(volume_node) -> Grid:
    """The LPS :class:`Grid` of a scalar volume node, from its IJK-to-RAS matrix and image extent."""
    if volume_node is None or volume_node.GetImageData() is None:
        raise InputError("input volume: no volume selected or the volume holds no image data")
    _require_untransformed(volume_node, "input volume")
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    ijk_to_ras = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    ijk_to_lps = RAS_TO_LPS @ ijk_to_ras[:3, :3]
    spacing = np.linalg.norm(ijk_to_lps, axis=0)
    direction = ijk_to_lps / spacing
    origin = RAS_TO_LPS @ ijk_to_ras[:3, 3]
    size = volume_node.GetImageData().GetDimensions()
    return Grid(tuple(int(s) for s in size), tuple(float(s) for s in spacing), tuple(float(o) for o in origin),
                tuple(float(d) for d in direction.ravel()))


def geometry_from_node(volume_node) -> Geometry:
    """Core (LPS) grid of a scalar volume node, from its IJK-to-RAS matrix and image extent."""
    from medadapt.io.volume import Geometry
    grid = node_grid(volume_node)
    return Geometry(grid.size, grid.spacing, grid.origin, grid.direction)


def node_array(volume_node) -> np.ndarray:
    """A copy of a scalar volume node's voxels in (z, y, x) order (the grid checked as for the core)."""
    node_grid(volume_node)
    if volume_node.GetImageData().GetNumberOfScalarComponents() != 1:
        raise InputError(f"input volume '{volume_node.GetName()}': expected a single-component (scalar) volume")
    return np.array(slicer.util.arrayFromVolume(volume_node))


def volume_from_node(volume_node) -> Volume:
    """Core :class:`Volume` (a copy of the voxels, (z, y, x) order, LPS geometry) of a scalar volume node."""
    from medadapt.io.volume import Volume
    array = node_array(volume_node)
    return Volume(array, geometry_from_node(volume_node))


def ijk_to_ras_matrix(geometry: Geometry | Grid) -> vtk.vtkMatrix4x4:
    """Slicer IJK-to-RAS matrix of a core grid (or a :class:`Grid`)."""
    linear = RAS_TO_LPS @ geometry.direction_matrix @ np.diag(geometry.spacing)
    origin = RAS_TO_LPS @ np.asarray(geometry.origin, float)
    matrix = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            matrix.SetElement(r, c, float(linear[r, c]))
        matrix.SetElement(r, 3, float(origin[r]))
    return matrix


def update_node_from_volume(volume_node, volume: Volume) -> None:
    """Write a core :class:`Volume`'s voxels and grid into ``volume_node`` (any scalar or labelmap node)."""
    volume_node.SetIJKToRASMatrix(ijk_to_ras_matrix(volume.geometry))
    slicer.util.updateVolumeFromArray(volume_node, np.ascontiguousarray(volume.array))


def _reference_image(volume_node):
    return SegLogic.CreateOrientedImageDataFromVolumeNode(volume_node)


def segment_id_by_name(segmentation_node, segment_name: str) -> str:
    """ID of the segment called ``segment_name`` (error naming the node when it is absent)."""
    segment_id = segmentation_node.GetSegmentation().GetSegmentIdBySegmentName(segment_name)
    if not segment_id:
        raise InputError(f"segmentation '{segmentation_node.GetName()}': no segment named '{segment_name}'")
    return segment_id


def segment_array(segmentation_node, segment_id: str, volume_node) -> np.ndarray:
    """Binary (z, y, x) uint8 mask of one segment resampled onto ``volume_node``'s grid (nearest neighbour)."""
    if segmentation_node is None:
        raise InputError("segmentation: no segmentation node selected")
    _require_untransformed(segmentation_node, "segmentation")
    if segmentation_node.GetSegmentation().GetSegment(segment_id) is None:
        raise InputError(f"segmentation '{segmentation_node.GetName()}': no segment with ID '{segment_id}'")
    source = slicer.vtkOrientedImageData()
    if not SegLogic.GetSegmentBinaryLabelmapRepresentation(segmentation_node, segment_id, source):
        raise InputError(f"segmentation '{segmentation_node.GetName()}': segment '{segment_id}' has no labelmap")
    reference = _reference_image(volume_node)
    dims = reference.GetDimensions()
    shape = (dims[2], dims[1], dims[0])
    if source.IsEmpty():
        return np.zeros(shape, np.uint8)
    resampled = slicer.vtkOrientedImageData()
    slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
        source, reference, resampled, False, True)
    scalars = numpy_support.vtk_to_numpy(resampled.GetPointData().GetScalars()).reshape(shape)
    # Shared labelmaps store several segments in one image: keep only this segment's value.
    value = segmentation_node.GetSegmentation().GetSegment(segment_id).GetLabelValue()
    return (scalars == value).astype(np.uint8)


def oriented_mask(volume_node, mask: np.ndarray):
    """A binary (z, y, x) ``mask`` on ``volume_node``'s grid as a ``vtkOrientedImageData`` (0 / 1, uint8), the
    form Slicer's segmentation and segment editor logics take."""
    image = _reference_image(volume_node)
    flat = np.ascontiguousarray(mask.astype(np.uint8)).ravel()
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(flat, deep=True, array_type=vtk.VTK_UNSIGNED_CHAR))
    return image


def write_segment_array(segmentation_node, segment_id: str, volume_node, mask: np.ndarray) -> None:
    """Replace one segment's voxels with a binary (z, y, x) ``mask`` on ``volume_node``'s grid."""
    image = oriented_mask(volume_node, mask)
    if not SegLogic.SetBinaryLabelmapToSegment(image, segmentation_node, segment_id, SegLogic.MODE_REPLACE):
        raise InputError(f"segmentation '{segmentation_node.GetName()}': could not write segment '{segment_id}'")


def painted_mask(segmentation_node, segment_id: str, volume_node) -> np.ndarray:
    """The painted segment as a (z, y, x) label map (value 1, int16) on the volume's grid; :class:`InputError`
    naming the segment when nothing is painted. No core needed (Remote mode uploads it)."""
    node_grid(volume_node)
    mask = segment_array(segmentation_node, segment_id, volume_node)
    if not mask.any():
        name = segmentation_node.GetSegmentation().GetSegment(segment_id).GetName()
        raise InputError(f"segment '{name}' of '{segmentation_node.GetName()}' is empty: paint the structure on "
                         f"a few slices first")
    return mask.astype(np.int16)


def exemplar_labelmap(segmentation_node, segment_id: str, volume_node) -> Volume:
    """The painted segment as a core labelmap (label 1) on the volume's grid, ready for ``find_exemplars``."""
    from medadapt.io.volume import Volume
    geometry = geometry_from_node(volume_node)
    return Volume(painted_mask(segmentation_node, segment_id, volume_node), geometry)


def _markup_positions(markups_node) -> list[np.ndarray]:
    positions = []
    for n in range(markups_node.GetNumberOfControlPoints()):
        position = [0.0, 0.0, 0.0]
        markups_node.GetNthControlPointPositionWorld(n, position)
        positions.append(np.array(position))
    return positions


def prompts_from_markups(positive_node, negative_node, geometry: Geometry, label: int = 1) -> list[PointPrompt]:
    """Point prompts from a positive and a negative markups point list (either may be ``None``)."""
    from medadapt.io.points import points_from_world
    prompts = []
    for node, positive in ((positive_node, True), (negative_node, False)):
        if node is None:
            continue
        positions = _markup_positions(node)
        kind = "positive" if positive else "negative"
        prompts += points_from_world(positions, [positive] * len(positions), [label] * len(positions), geometry,
                                     "RAS", source=f"{kind} points '{node.GetName()}'")
    return prompts


def box_from_roi(roi_node, geometry: Geometry | Grid) -> tuple[np.ndarray, np.ndarray]:
    """Voxel bounds ((z0, y0, x0), (z1, y1, x1)) inclusive of an ROI node, clipped to the image."""
    bounds = [0.0] * 6
    roi_node.GetRASBounds(bounds)
    corners = np.array([[x, y, z] for x in bounds[0:2] for y in bounds[2:4] for z in bounds[4:6]])
    ijk = np.array([geometry.world_to_index(RAS_TO_LPS @ c) for c in corners])
    low = np.clip(np.floor(ijk.min(axis=0) + 0.5), 0, np.asarray(geometry.size) - 1).astype(int)
    high = np.clip(np.ceil(ijk.max(axis=0) - 0.5), 0, np.asarray(geometry.size) - 1).astype(int)
    if np.any(high < low):
        raise InputError(f"ROI '{roi_node.GetName()}' does not overlap the image")
    return low[::-1], high[::-1]
