"""Tests of MedAdaptSlicerLib.conversion on a real MRML scene."""

import numpy as np
import pytest
import vtk

from slicer_fixtures import (CT_IMAGE, add_points, add_segmentation, load_ct, needs_ct, reference_labels,  # noqa: F401
                             scene)
from MedAdaptSlicerLib import conversion
from medadapt.errors import InputError
from medadapt.io.volume import Geometry, Volume, read_volume


def oblique_volume() -> Volume:
    """Small volume with a rotated direction matrix and anisotropic spacing."""
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    geometry = Geometry((7, 5, 4), (0.7, 1.3, 2.9), (-12.5, 30.25, 4.0), tuple(rotation.ravel()))
    return Volume(np.arange(4 * 5 * 7, dtype=np.int16).reshape(4, 5, 7), geometry)


def oblique_node(mrml):
    """A scalar volume node "oblique" in scene ``mrml`` holding a new :func:`oblique_volume`: (node, volume)."""
    original = oblique_volume()
    node = mrml.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "oblique")
    conversion.update_node_from_volume(node, original)
    return node, original


def test_volume_round_trip_keeps_oblique_anisotropic_geometry(scene):
    mrml, _ = scene
    node, original = oblique_node(mrml)
    back = conversion.volume_from_node(node)
    assert back.geometry.size == original.geometry.size
    np.testing.assert_allclose(back.geometry.spacing, original.geometry.spacing, atol=1e-9)
    np.testing.assert_allclose(back.geometry.origin, original.geometry.origin, atol=1e-9)
    np.testing.assert_allclose(back.geometry.direction, original.geometry.direction, atol=1e-9)
    np.testing.assert_array_equal(back.array, original.array)
    # RAS in Slicer is LPS with x and y negated.
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    ras = matrix.MultiplyPoint((2, 3, 1, 1))[:3]
    lps = original.geometry.index_to_world((2, 3, 1))
    np.testing.assert_allclose(ras, [-lps[0], -lps[1], lps[2]], atol=1e-9)


@needs_ct
def test_loaded_scan_matches_core_reader(scene):
    mrml, logics = scene
    node = load_ct(logics)
    from_node = conversion.volume_from_node(node)
    from_file = read_volume(CT_IMAGE)
    assert from_node.geometry.matches(from_file.geometry)
    np.testing.assert_array_equal(from_node.array, from_file.array)


@needs_ct
def test_segment_and_points_map_to_the_volume_grid(scene):
    mrml, logics = scene
    node = load_ct(logics)
    liver = reference_labels() == 5
    painted = np.zeros_like(liver)
    painted[[10, 20]] = liver[[10, 20]]
    segmentation = add_segmentation(mrml, node, {"liver": painted, "spleen": reference_labels() == 1})
    labelmap = conversion.exemplar_labelmap(segmentation, conversion.segment_id_by_name(segmentation, "liver"), node)
    np.testing.assert_array_equal(labelmap.array, painted.astype(np.int16))
    geometry = conversion.geometry_from_node(node)
    z, y, x = np.argwhere(liver)[0]
    lps = geometry.index_to_world((x, y, z))
    positive = add_points(mrml, "positive", [(-lps[0], -lps[1], lps[2])])
    prompts = conversion.prompts_from_markups(positive, None, geometry)
    assert prompts[0].index_zyx == (z, y, x) and prompts[0].positive


def test_clear_errors_name_the_node(scene):
    mrml, _ = scene
    node, _ = oblique_node(mrml)
    segmentation = mrml.AddNewNodeByClass("vtkMRMLSegmentationNode", "Seg")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(node)
    segment_id = segmentation.GetSegmentation().AddEmptySegment("tumour", "tumour")
    with pytest.raises(InputError, match="no segment named 'liver'"):
        conversion.segment_id_by_name(segmentation, "liver")
    with pytest.raises(InputError, match="'tumour' of 'Seg' is empty"):
        conversion.exemplar_labelmap(segmentation, segment_id, node)
    far = add_points(mrml, "clicks", [(1e4, 0, 0)])
    with pytest.raises(InputError, match="positive points 'clicks'"):
        conversion.prompts_from_markups(far, None, conversion.geometry_from_node(node))


def test_roi_gives_voxel_bounds(scene):
    mrml, _ = scene
    node = mrml.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "axis-aligned")
    geometry = Geometry((10, 10, 10), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    conversion.update_node_from_volume(node, Volume(np.zeros((10, 10, 10), np.int16), geometry))
    roi = mrml.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    roi.SetCenter(-4.0, -5.0, 8.0)  # RAS of LPS (4, 5, 8)
    roi.SetSize(4.0, 2.0, 4.0)
    low, high = conversion.box_from_roi(roi, geometry)
    assert tuple(low) == (3, 4, 2) and tuple(high) == (5, 6, 6)


def test_node_grid_and_painted_mask_need_no_core_objects(scene):
    mrml, _ = scene
    node, original = oblique_node(mrml)
    grid = conversion.node_grid(node)
    assert isinstance(grid, conversion.Grid) and grid.size == original.geometry.size
    np.testing.assert_allclose(grid.direction, original.geometry.direction, atol=1e-9)
    for ijk in ((0, 0, 0), (2, 3, 1), (6.5, 4, 3)):
        world = grid.index_to_world(ijk)
        np.testing.assert_allclose(world, original.geometry.index_to_world(ijk), atol=1e-9)
        np.testing.assert_allclose(grid.world_to_index(world), ijk, atol=1e-9)
    np.testing.assert_array_equal(conversion.node_array(node), original.array)
    painted = np.zeros(original.array.shape, np.uint8)
    painted[2, 1:3, 2:5] = 1
    segmentation = add_segmentation(mrml, node, {"liver": painted, "empty": np.zeros_like(painted)})
    segments = segmentation.GetSegmentation()
    labels = conversion.painted_mask(segmentation, segments.GetSegmentIdBySegmentName("liver"), node)
    assert labels.dtype == np.int16 and np.array_equal(labels, painted)
    with pytest.raises(InputError, match="segment 'empty' of 'Segmentation' is empty"):
        conversion.painted_mask(segmentation, segments.GetSegmentIdBySegmentName("empty"), node)
