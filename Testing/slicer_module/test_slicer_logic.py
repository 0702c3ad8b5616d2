"""The golden workflow through MedAdaptLogic (the Widget's entry point) on a real scan in a real MRML scene:
paint two liver slices, add a positive click, Adapt (zero-shot, inside an ROI of 5 slices for speed), check
the preview against the reference labels, then Accept / Reject / Cancel."""

import numpy as np
import pytest
from scipy import ndimage

from slicer_fixtures import (add_points, add_roi, add_segmentation, dice, load_ct, make_scene, needs_ct, node_ids,
                             ras_of_voxel, reference_labels, segment_arrays)
from MedAdaptSlicerLib.jobs import SynchronousRunner
from MedAdaptSlicerLib.logic import MedAdaptLogic
from MedAdaptSlicerLib.parameters import Parameters
from MedAdaptSlicerLib.results import preview_name
from medadapt.errors import InputError

LOW, HIGH = 18, 22  # slices inside the ROI; 18 and 22 are painted


def build_case():
    """Scene with the CT, a 'liver' segment painted on two slices, a 'spleen' segment, a click and an ROI."""
    scene, _, logics = make_scene()
    volume = load_ct(logics)
    labels = reference_labels()
    liver = labels == 5
    painted = np.zeros_like(liver)
    painted[[LOW, HIGH]] = liver[[LOW, HIGH]]
    segmentation = add_segmentation(scene, volume, {"liver": painted, "spleen": labels == 1})
    middle = (LOW + HIGH) // 2
    inside = np.argwhere(ndimage.binary_erosion(liver[middle], iterations=4))
    positive = add_points(scene, "positive", [ras_of_voxel(volume, (middle, *inside[len(inside) // 2]))])
    roi = add_roi(scene, volume, (LOW, 0, 0), (HIGH, labels.shape[1] - 1, labels.shape[2] - 1))
    segment_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName("liver")
    return scene, volume, segmentation, segment_id, positive, roi, liver


@pytest.fixture(scope="module")
def adapted():
    """The golden workflow run once (zero-shot); yields the case, the logic and the finished job."""
    scene, volume, segmentation, segment_id, positive, roi, liver = build_case()
    logic = MedAdaptLogic(SynchronousRunner())
    progress = []
    job = logic.start_adapt(volume, segmentation, segment_id, Parameters(method="zero-shot", device="cpu"),
                            positive_node=positive, roi_node=roi, on_progress=progress.append)
    yield dict(scene=scene, volume=volume, segmentation=segmentation, segment_id=segment_id, liver=liver,
               logic=logic, job=job, progress=progress)
    scene.Clear(1)


@needs_ct
def test_adapt_preview_matches_reference_liver(adapted):
    assert adapted["job"].state == "done", adapted["job"].error
    assert adapted["progress"] and all(e.step <= e.total for e in adapted["progress"])
    arrays = segment_arrays(adapted["segmentation"], adapted["volume"])
    preview = arrays[preview_name("liver")]
    assert not preview[:LOW].any() and not preview[HIGH + 1:].any()  # nothing outside the ROI
    score = dice(preview[LOW:HIGH + 1], adapted["liver"][LOW:HIGH + 1])
    assert score > 0.7, f"liver Dice {score:.3f}"
    color = adapted["segmentation"].GetSegmentation().GetSegment(
        adapted["segmentation"].GetSegmentation().GetSegmentIdBySegmentName(preview_name("liver"))).GetColor()
    target = adapted["segmentation"].GetSegmentation().GetSegment(adapted["segment_id"]).GetColor()
    assert np.abs(np.subtract(color, target)).max() > 0.2
    assert adapted["logic"].model is not None and 1 in adapted["logic"].model.validation_dice


@needs_ct
def test_accept_changes_only_the_target_segment(adapted):
    segmentation, volume = adapted["segmentation"], adapted["volume"]
    before = segment_arrays(segmentation, volume)
    adapted["logic"].accept(volume, segmentation, adapted["segment_id"], editable="outside other segments")
    after = segment_arrays(segmentation, volume)
    assert preview_name("liver") not in after
    np.testing.assert_array_equal(after["spleen"], before["spleen"])
    expected = before[preview_name("liver")].astype(bool) & ~before["spleen"].astype(bool)
    np.testing.assert_array_equal(after["liver"].astype(bool), expected)


@needs_ct
def test_apply_without_any_prompt_needs_an_atlas_or_heads(adapted):
    segmentation, volume = adapted["segmentation"], adapted["volume"]
    empty = segmentation.GetSegmentation().AddEmptySegment("empty", "empty")
    before = segment_arrays(segmentation, volume)
    job = adapted["logic"].start_apply(volume, segmentation, empty)  # the held model is zero-shot: no atlas
    assert job.state == "failed" and "no prompt to start from" in str(job.error)
    after = segment_arrays(segmentation, volume)
    assert after.keys() == before.keys() and all(np.array_equal(after[k], before[k]) for k in before)
    segmentation.GetSegmentation().RemoveSegment(empty)


@needs_ct
def test_reject_removes_only_the_preview():
    scene, volume, segmentation, segment_id, positive, roi, liver = build_case()
    logic = MedAdaptLogic(SynchronousRunner())
    before = segment_arrays(segmentation, volume)
    logic.start_adapt(volume, segmentation, segment_id, Parameters(method="fill"), roi_node=roi)
    assert preview_name("liver") in segment_arrays(segmentation, volume)
    assert logic.reject(segmentation, segment_id)
    after = segment_arrays(segmentation, volume)
    assert after.keys() == before.keys() and all(np.array_equal(after[k], before[k]) for k in before)


@needs_ct
def test_cancel_leaves_the_scene_identical():
    scene, volume, segmentation, segment_id, positive, roi, liver = build_case()
    runner = SynchronousRunner()
    logic = MedAdaptLogic(runner)
    nodes, arrays = node_ids(scene), segment_arrays(segmentation, volume)
    parameters = Parameters(method="lora", device="cpu", iterations=3, synthesis_per_exemplar=1)
    job = logic.start_adapt(volume, segmentation, segment_id, parameters, roi_node=roi,
                            on_progress=lambda event: runner.current.cancel())
    assert job.state == "cancelled" and job.result is None and logic.model is None
    assert node_ids(scene) == nodes
    after = segment_arrays(segmentation, volume)
    assert after.keys() == arrays.keys() and all(np.array_equal(after[k], arrays[k]) for k in arrays)


@needs_ct
def test_a_failed_job_leaves_the_scene_identical(tmp_path):
    scene, volume, segmentation, segment_id, positive, roi, liver = build_case()
    logic = MedAdaptLogic(SynchronousRunner())
    nodes, arrays = node_ids(scene), segment_arrays(segmentation, volume)
    with pytest.raises(InputError, match="--device cuda"):  # no CUDA here: refused before any work starts
        logic.start_adapt(volume, segmentation, segment_id, Parameters(method="lora", device="cuda"), roi_node=roi)
    corrupt = tmp_path / "medsam.pth"
    corrupt.write_bytes(b"not a checkpoint")
    job = logic.start_adapt(volume, segmentation, segment_id, Parameters(base_model="medsam", checkpoint=str(corrupt),
                                                                         device="cpu"), roi_node=roi)
    assert job.state == "failed" and "medsam.pth" in str(job.error) and logic.model is None
    assert node_ids(scene) == nodes
    after = segment_arrays(segmentation, volume)
    assert after.keys() == arrays.keys() and all(np.array_equal(after[k], arrays[k]) for k in arrays)


@needs_ct
def test_an_accepted_segment_becomes_a_lineage_task_and_the_lineage_a_base_model(tmp_path):
    """Add to lineage: an empty folder starts a lineage, the accepted segment is its first task, and the folder
    then works as the base model of Adapt."""
    from medadapt.lineage.folder import StageSettings, read_lineage
    scene, volume, segmentation, liver_id, _, roi, _ = build_case()
    spleen = segmentation.GetSegmentation().GetSegmentIdBySegmentName("spleen")
    before = segment_arrays(segmentation, volume)
    folder = tmp_path / "lineage"
    folder.mkdir()
    logic = MedAdaptLogic(SynchronousRunner())
    job = logic.start_add_to_lineage(folder, volume, segmentation, spleen, "spleen", "CT", device="cpu",
                                     settings=StageSettings(iterations=2, max_slices=2, retain_per_task=1))
    assert job.state == "done", job.error
    lineage = read_lineage(folder)
    assert [(t.name, t.label, t.slices) for t in lineage.record.tasks] == [("spleen", 1, 2)]
    assert lineage.record.history[0]["spleen"] > 0.5
    after = segment_arrays(segmentation, volume)
    assert before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before)
    parameters = Parameters(method="zero-shot", device="cpu", base_model=str(folder))
    assert (parameters.to_config().backend, parameters.to_config().lineage) == ("litemedsam", str(folder.resolve()))
    job = logic.start_adapt(volume, segmentation, liver_id, parameters, roi_node=roi)
    assert job.state == "done", job.error
    assert logic.model.backend.base_delta is not None and logic.model.backend.base_delta.stage == 1, \
        "zero-shot from a lineage runs the lineage's model, not the plain base model"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="neither a lineage nor empty"):
        logic.start_add_to_lineage(tmp_path / "other", volume, segmentation, spleen, "spleen")
    scene.Clear(1)
