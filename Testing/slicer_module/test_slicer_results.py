"""Tests of MedAdaptSlicerLib.results (preview / Accept / Reject) and .seg.nrrd persistence, on small
synthetic volumes with an oblique direction matrix (fast, no model)."""

import numpy as np
import pytest
import vtk

from slicer_fixtures import add_segmentation, scene, segment_arrays  # noqa: F401
from MedAdaptSlicerLib import results
from MedAdaptSlicerLib.conversion import geometry_from_node, update_node_from_volume
from medadapt.io.volume import Geometry, Volume


def oblique_node(mrml):
    angle = np.deg2rad(30)
    rotation = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    geometry = Geometry((12, 10, 6), (0.8, 1.1, 2.5), (5.0, -7.0, 11.0), tuple(rotation.ravel()))
    node = mrml.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "oblique")
    update_node_from_volume(node, Volume(np.random.default_rng(0).normal(size=(6, 10, 12)).astype(np.float32),
                                         geometry))
    return node


def boxes():
    a = np.zeros((6, 10, 12), np.uint8); a[1:4, 2:6, 2:7] = 1
    b = np.zeros_like(a); b[2:5, 4:8, 5:10] = 1
    return a, b


def test_preview_accept_add_mode_and_reject(scene):
    mrml, _ = scene
    volume = oblique_node(mrml)
    target, other = boxes()
    segmentation = add_segmentation(mrml, volume, {"organ": target, "other": other})
    organ = segmentation.GetSegmentation().GetSegmentIdBySegmentName("organ")
    proposal = np.zeros_like(target); proposal[3:6, 1:9, 1:11] = 1
    results.show_preview(segmentation, organ, volume, proposal)
    results.show_preview(segmentation, organ, volume, proposal)  # replaced, not duplicated
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 3
    np.testing.assert_array_equal(results.preview_mask(segmentation, organ, volume), proposal)
    previous = results.accept_preview(segmentation, organ, volume, "everywhere", replace=False)
    np.testing.assert_array_equal(previous, target)
    arrays = segment_arrays(segmentation, volume)
    np.testing.assert_array_equal(arrays["organ"], target | proposal)
    np.testing.assert_array_equal(arrays["other"], other)
    assert not results.reject_preview(segmentation, organ)
    with pytest.raises(ValueError, match="no MedAdapt preview"):
        results.accept_preview(segmentation, organ, volume)


def test_seg_nrrd_round_trip_keeps_names_and_oblique_geometry(scene, tmp_path):
    import slicer
    mrml, logics = scene
    volume = oblique_node(mrml)
    target, other = boxes()
    segmentation = add_segmentation(mrml, volume, {"organ": target, "other": other})
    results.show_preview(segmentation, segmentation.GetSegmentation().GetSegmentIdBySegmentName("organ"), volume,
                         other)
    path = tmp_path / "case.seg.nrrd"
    storage = mrml.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    assert storage.WriteData(segmentation)
    reloaded = mrml.AddNewNodeByClass("vtkMRMLSegmentationNode", "reloaded")
    reader = mrml.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    reader.SetFileName(str(path))
    assert reader.ReadData(reloaded)
    names = [reloaded.GetSegmentation().GetNthSegment(n).GetName()
             for n in range(reloaded.GetSegmentation().GetNumberOfSegments())]
    assert names == ["organ", "other", results.preview_name("organ")]
    image = slicer.vtkOrientedImageData()
    slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(reloaded, "organ", image)
    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    g = geometry_from_node(volume)
    expected = np.diag([-1.0, -1.0, 1.0]) @ g.direction_matrix @ np.diag(g.spacing)
    np.testing.assert_allclose([[matrix.GetElement(r, c) for c in range(3)] for r in range(3)], expected, atol=1e-6)
    arrays = segment_arrays(reloaded, volume)
    np.testing.assert_array_equal(arrays["organ"], target)
    np.testing.assert_array_equal(arrays[results.preview_name("organ")], other)
