"""Shared fixtures for the Slicer module tests: a real MRML scene with the module logics MedAdaptSlicer needs.

slicer-core has no ``slicer.app``; the fixture sets ``slicer.mrmlScene`` and registers the real module logics
under ``slicer.modules`` the way the application does, so ``slicer.util`` helpers work.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data"
SAMPLE = REPO / "Resources" / "Sample"
# The development scan when ../shared/data is present, else the bundled sample (the same TotalSegmentator CT).
if (DATA / "ct_abdomen_ts" / "image.nii.gz").is_file():
    CT_IMAGE, CT_LABELS = DATA / "ct_abdomen_ts" / "image.nii.gz", DATA / "ct_abdomen_ts" / "labels.nii.gz"
else:
    CT_IMAGE, CT_LABELS = SAMPLE / "ct_abdomen_image.nii.gz", SAMPLE / "ct_abdomen_liver_spleen.nii.gz"
sys.path.insert(0, str(REPO / "MedAdaptSlicer"))

import slicer  # noqa: E402
from assertions import dice  # noqa: E402,F401  (re-exported for the Slicer tests)

needs_ct = pytest.mark.skipif(not CT_IMAGE.is_file(), reason=f"real scan {CT_IMAGE} absent")


def make_scene():
    """A fresh scene plus application logic and the Colors, Segmentations, Volumes and Markups logics."""
    scene = slicer.vtkMRMLScene()
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    logics = {}
    for name, kind in (("colors", slicer.vtkSlicerColorLogic), ("segmentations", slicer.vtkSlicerSegmentationsModuleLogic),
                       ("volumes", slicer.vtkSlicerVolumesLogic), ("markups", slicer.vtkSlicerMarkupsLogic)):
        logic = kind()
        logic.SetMRMLApplicationLogic(app)
        logic.SetMRMLScene(scene)
        app.SetModuleLogic(name.capitalize(), logic)
        logics[name] = logic
    slicer.mrmlScene = scene
    slicer.modules = SimpleNamespace(**{name: SimpleNamespace(logic=lambda l=logic: l)
                                        for name, logic in logics.items()})
    return scene, app, logics


@pytest.fixture
def scene():
    """A fresh MRML scene set as ``slicer.mrmlScene``; yields (scene, logics)."""
    scene, app, logics = make_scene()
    yield scene, logics
    scene.Clear(1)


def load_ct(logics, name: str = "ct"):
    """Load the real abdominal CT through the Volumes logic (storage node path, as File > Add Data does)."""
    return logics["volumes"].AddArchetypeVolume(str(CT_IMAGE), name)


def reference_labels():
    """TotalSegmentator labels of the CT as a (z, y, x) array."""
    from medadapt.io.volume import read_volume
    return read_volume(CT_LABELS, label=True).array


def crop_slices(volume_node, start: int, stop: int) -> None:
    """Keep slices [start, stop) of a volume node in place (origin moved so world positions stay the same)."""
    from MedAdaptSlicerLib.conversion import update_node_from_volume, volume_from_node
    from medadapt.io.volume import Geometry, Volume
    volume = volume_from_node(volume_node)
    g = volume.geometry
    origin = tuple(g.index_to_world((0, 0, start)))
    cropped = Volume(np.ascontiguousarray(volume.array[start:stop]),
                     Geometry((g.size[0], g.size[1], stop - start), g.spacing, origin, g.direction))
    update_node_from_volume(volume_node, cropped)


def add_segmentation(scene, volume_node, masks: dict[str, np.ndarray]):
    """A segmentation node on the volume's grid with one segment per (name -> (z, y, x) mask)."""
    from MedAdaptSlicerLib.conversion import write_segment_array
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Segmentation")
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    for name, mask in masks.items():
        segment_id = node.GetSegmentation().AddEmptySegment(name, name)
        write_segment_array(node, segment_id, volume_node, mask)
    return node


def add_points(scene, name: str, ras_points):
    """A markups point list holding ``ras_points``."""
    import vtk
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    for point in ras_points:
        node.AddControlPoint(vtk.vtkVector3d(*[float(v) for v in point]))
    return node



def segment_arrays(segmentation_node, volume_node) -> dict[str, np.ndarray]:
    """Segment name -> mask on the volume grid, for before/after comparisons."""
    from MedAdaptSlicerLib.conversion import segment_array
    segmentation = segmentation_node.GetSegmentation()
    return {segmentation.GetNthSegment(n).GetName():
            segment_array(segmentation_node, segmentation.GetNthSegmentID(n), volume_node)
            for n in range(segmentation.GetNumberOfSegments())}


def node_ids(scene) -> list[str]:
    """IDs of every node in the scene."""
    return [scene.GetNthNode(n).GetID() for n in range(scene.GetNumberOfNodes())]


def add_roi(scene, volume_node, low_zyx, high_zyx, name: str = "ROI"):
    """An ROI node covering voxels ``low_zyx`` .. ``high_zyx`` (inclusive) of ``volume_node``."""
    from MedAdaptSlicerLib.conversion import RAS_TO_LPS, geometry_from_node
    geometry = geometry_from_node(volume_node)
    corners = [geometry.index_to_world((x, y, z)) for z in (low_zyx[0], high_zyx[0])
               for y in (low_zyx[1], high_zyx[1]) for x in (low_zyx[2], high_zyx[2])]
    ras = np.array([RAS_TO_LPS @ c for c in corners])
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", name)
    node.SetCenter(*((ras.min(0) + ras.max(0)) / 2))
    node.SetSize(*(ras.max(0) - ras.min(0)))
    return node


def ras_of_voxel(volume_node, zyx):
    """RAS position of voxel (z, y, x) of ``volume_node``."""
    from MedAdaptSlicerLib.conversion import RAS_TO_LPS, geometry_from_node
    return RAS_TO_LPS @ geometry_from_node(volume_node).index_to_world(tuple(reversed(zyx)))
