"""One config builder: the same choices give the same AdaptConfig and the same saved model (manifest) through
``medadapt adapt`` and through the Slicer module's logic."""

import json

import numpy as np
import SimpleITK as sitk
import pytest

from slicer_fixtures import add_segmentation, make_scene
from MedAdaptSlicerLib.jobs import SynchronousRunner
from MedAdaptSlicerLib.logic import MedAdaptLogic
from MedAdaptSlicerLib.parameters import Parameters
from medadapt.cli.main import main


@pytest.mark.parametrize("method", ["linear-probe"])
def test_command_line_and_slicer_save_the_same_model(small_case, tmp_path, method):
    full_image, full_painted = (sitk.ReadImage(str(path)) for path in small_case)
    image, painted = full_image[:, :, 2:5], full_painted[:, :, 2:5]  # 3 slices (painted: 1, and 2 below) keep it fast
    painted[:, :, 2] = 0
    painted[12:36, 10:30, 2] = 2
    image_path, labels_path = tmp_path / "small.nrrd", tmp_path / "painted1.nii.gz"
    sitk.WriteImage(image, str(image_path))
    one = sitk.Cast(painted > 0, sitk.sitkUInt8)  # Slicer saves a segment as label 1
    sitk.WriteImage(one, str(labels_path))
    assert main(["adapt", str(image_path), "--exemplars", str(labels_path), "-o", str(tmp_path / "cli.nii.gz"),
                 "--method", method, "--iterations", "3", "--synthetic", "0", "--device", "cpu", "--save-model",
                 str(tmp_path / "cli"),
                 "--quiet"]) == 0

    scene, _, logics = make_scene()
    volume = logics["volumes"].AddArchetypeVolume(str(image_path), "ct")
    mask = sitk.GetArrayFromImage(one).astype(bool)
    segmentation = add_segmentation(scene, volume, {"structure": mask})
    logic = MedAdaptLogic(SynchronousRunner())
    parameters = Parameters(method=method, iterations=3, synthesis_per_exemplar=0, device="cpu")
    job = logic.start_adapt(volume, segmentation, "structure", parameters)
    assert job.state == "done", job.error
    logic.save_adapter(tmp_path / "slicer")
    scene.Clear(1)

    cli, gui = (json.loads((tmp_path / name / "manifest.json").read_text()) for name in ("cli", "slicer"))
    for manifest in (cli, gui):
        manifest.pop("created")
    assert cli["config"] == gui["config"]
    assert cli == gui
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "cli.nii.gz")))
    assert written.any() and np.array_equal(written[1] > 0, mask[1])
