"""The Segment Editor effect's logic (MedAdaptSlicerLib.effect) on real MRML: a vtkMRMLSegmentEditorNode, the
real CT, Apply through Slicer's own vtkSlicerSegmentEditorLogic (masking, undo) and Cancel."""

import numpy as np
import pytest
import slicer

from slicer_fixtures import (add_segmentation, crop_slices, dice, load_ct, make_scene, needs_ct, node_ids,
                             reference_labels, segment_arrays)
from MedAdaptSlicerLib.effect import PREVIEW_NODE_NAME, EffectSession, painted_segment_ids
from MedAdaptSlicerLib.jobs import SynchronousRunner
from MedAdaptSlicerLib.parameters import Parameters
from medadapt.errors import InputError

LIVER, SPLEEN = 5, 1
CROP = (10, 21)


def painted_on(mask: np.ndarray, count: int) -> tuple[np.ndarray, list[int]]:
    """``mask`` kept on ``count`` slices at the centres of equal bins of its slice extent."""
    present = np.flatnonzero(mask.any(axis=(1, 2)))
    edges = np.linspace(present.min(), present.max() + 1, count + 1)
    slices = [int((a + b) // 2) for a, b in zip(edges[:-1], edges[1:])]
    painted = np.zeros_like(mask)
    painted[slices] = mask[slices]
    return painted, slices


def editor_case(segments, crop: tuple[int, int] | None = None):
    """Scene with the CT (only slices ``crop`` = (start, stop) if given), a segmentation of ``segments``
    (name -> mask on that grid) and a segment editor node on them."""
    scene, _, logics = make_scene()
    volume = load_ct(logics)
    if crop is not None:
        crop_slices(volume, *crop)
    segmentation = add_segmentation(scene, volume, segments)
    editor = scene.AddNode(slicer.vtkMRMLSegmentEditorNode())
    editor.SetAndObserveSegmentationNode(segmentation)
    editor.SetAndObserveSourceVolumeNode(volume)
    return scene, volume, segmentation, editor


def segment_id(segmentation, name: str) -> str:
    return segmentation.GetSegmentation().GetSegmentIdBySegmentName(name)


@pytest.fixture(scope="module")
def liver_adapted():
    """Three painted liver slices and the whole spleen; the effect adapts the liver once (LoRA; eleven of the CT's 30
    slices and 4 iterations with one synthetic pair per slice keep the suite fast: the preview's liver Dice is 0.965,
    0.967 with 25 iterations and 2 pairs; training itself is tested in test_pipeline.py)."""
    labels = reference_labels()[CROP[0]:CROP[1]]
    liver = labels == LIVER
    painted, slices = painted_on(liver, 3)
    scene, volume, segmentation, editor = editor_case({"liver": painted, "spleen": labels == SPLEEN}, CROP)
    editor.SetSelectedSegmentID(segment_id(segmentation, "liver"))
    session = EffectSession(editor, SynchronousRunner())
    progress = []
    job = session.start_adapt(Parameters(device="cpu", iterations=4, synthesis_per_exemplar=1),
                              on_progress=progress.append)
    yield dict(scene=scene, volume=volume, segmentation=segmentation, editor=editor, session=session, job=job,
               progress=progress, liver=liver, slices=slices, painted=painted, spleen=labels == SPLEEN)
    scene.Clear(1)


@needs_ct
def test_adapt_shows_a_preview_that_matches_the_liver(liver_adapted):
    case = liver_adapted
    assert case["job"].state == "done", case["job"].error
    assert case["progress"] and all(e.stage.startswith("liver (1/1): ") for e in case["progress"])
    preview = case["session"].previews[segment_id(case["segmentation"], "liver")]
    hidden = np.ones(preview.shape[0], bool)
    hidden[case["slices"]] = False
    score = dice(preview[hidden], case["liver"][hidden])
    assert score >= 0.9, f"liver Dice on the unpainted slices {score:.3f}"
    node = case["scene"].GetFirstNodeByName(PREVIEW_NODE_NAME)
    assert node is not None and node.GetHideFromEditors()
    # the user's segmentation is untouched until Apply
    np.testing.assert_array_equal(segment_arrays(case["segmentation"], case["volume"])["liver"], case["painted"])


@needs_ct
def test_apply_honours_outside_all_segments_and_is_one_undo_step(liver_adapted):
    case = liver_adapted
    segmentation, volume, editor, session = case["segmentation"], case["volume"], case["editor"], case["session"]
    editor.SetMaskMode(slicer.vtkMRMLSegmentationNode.EditAllowedOutsideAllSegments)
    before = segment_arrays(segmentation, volume)
    preview = session.previews[segment_id(segmentation, "liver")].astype(bool)
    written = session.apply()
    after = segment_arrays(segmentation, volume)
    assert written == [segment_id(segmentation, "liver")]
    assert after["spleen"].tobytes() == before["spleen"].tobytes()
    np.testing.assert_array_equal(after["liver"].astype(bool), preview & ~case["spleen"])
    assert case["scene"].GetFirstNodeByName(PREVIEW_NODE_NAME) is None
    session.writer.logic.Undo()
    undone = segment_arrays(segmentation, volume)
    assert all(np.array_equal(undone[k], before[k]) for k in before)
    with pytest.raises(InputError, match="nothing to apply"):
        session.apply()


def liver_on_three_slices():
    """Editor case with only a 'liver' segment painted on 3 slices and selected; its node IDs and arrays."""
    scene, volume, segmentation, editor = editor_case({"liver": painted_on(reference_labels() == LIVER, 3)[0]})
    editor.SetSelectedSegmentID(segment_id(segmentation, "liver"))
    return scene, volume, segmentation, editor, node_ids(scene), segment_arrays(segmentation, volume)


@needs_ct
def test_cancel_of_the_preview_leaves_the_scene_identical():
    scene, volume, segmentation, editor, nodes, arrays = liver_on_three_slices()
    session = EffectSession(editor, SynchronousRunner())
    assert session.start_adapt(Parameters(method="fill")).state == "done"
    assert scene.GetFirstNodeByName(PREVIEW_NODE_NAME) is not None
    session.remove_preview()
    assert node_ids(scene) == nodes
    after = segment_arrays(segmentation, volume)
    assert after.keys() == arrays.keys() and all(np.array_equal(after[k], arrays[k]) for k in arrays)


@needs_ct
def test_cancel_during_adapt_leaves_the_scene_identical():
    scene, volume, segmentation, editor, nodes, arrays = liver_on_three_slices()
    runner = SynchronousRunner()
    session = EffectSession(editor, runner)
    job = session.start_adapt(Parameters(device="cpu", iterations=3, synthesis_per_exemplar=1),
                              on_progress=lambda event: runner.current.cancel())
    assert job.state == "cancelled" and not session.previews
    assert node_ids(scene) == nodes
    after = segment_arrays(segmentation, volume)
    assert all(np.array_equal(after[k], arrays[k]) for k in arrays)


@needs_ct
def test_several_painted_segments_in_one_job_each_from_its_own_slices():
    labels = reference_labels()
    liver, liver_slices = painted_on(labels == LIVER, 3)
    spleen, spleen_slices = painted_on(labels == SPLEEN, 2)
    assert set(liver_slices) != set(spleen_slices)
    scene, volume, segmentation, editor = editor_case({"liver": liver, "empty": np.zeros_like(liver),
                                                       "spleen": spleen})
    ids = painted_segment_ids(segmentation, volume)
    assert ids == [segment_id(segmentation, "liver"), segment_id(segmentation, "spleen")]
    progress = []
    session = EffectSession(editor, SynchronousRunner())
    job = session.start_adapt(Parameters(method="fill"), ids, on_progress=progress.append)
    assert job.state == "done", job.error
    preview = scene.GetFirstNodeByName(PREVIEW_NODE_NAME).GetSegmentation()
    assert [preview.GetNthSegment(n).GetName() for n in range(preview.GetNumberOfSegments())] == ["liver", "spleen"]
    # each segment is segmented from its own painted slices: the spleen's are not read as liver-free slices
    for name, painted, slices in (("liver", liver, liver_slices), ("spleen", spleen, spleen_slices)):
        mask = session.previews[segment_id(segmentation, name)].astype(bool)
        present = np.flatnonzero(mask.any(axis=(1, 2)))
        assert present.min() == min(slices) and present.max() == max(slices)
        np.testing.assert_array_equal(mask[slices], painted[slices])


def test_adapt_names_what_is_missing():
    scene, _, _ = make_scene()
    editor = scene.AddNode(slicer.vtkMRMLSegmentEditorNode())
    with pytest.raises(InputError, match="select a segmentation"):
        EffectSession(editor, SynchronousRunner()).start_adapt(Parameters())
    scene.Clear(1)


@needs_ct
def test_adapt_refuses_an_empty_segment_by_name():
    labels = reference_labels()
    scene, volume, segmentation, editor = editor_case({"kidney": np.zeros(labels.shape, bool)})
    editor.SetSelectedSegmentID(segment_id(segmentation, "kidney"))
    with pytest.raises(InputError, match="segment 'kidney'.*empty"):
        EffectSession(editor, SynchronousRunner()).start_adapt(Parameters())
    assert scene.GetFirstNodeByName(PREVIEW_NODE_NAME) is None
