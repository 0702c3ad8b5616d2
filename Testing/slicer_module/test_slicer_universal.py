"""The universal model through MedAdaptLogic in a real MRML scene: its tasks listed from the folder, chosen tasks
segmented prompt-free into new, terminology-tagged segments beside the user's own (never changed), and accepted
segments saved as a training collection that ``medadapt universal train`` reads. The model is a small untrained
network written as a universal model folder (training is tested in test_universal.py); the CT is cut to two
slices so encoding stays quick (and, for the volume model, to one 3D patch in plane)."""

import numpy as np
import pytest
import torch

from slicer_fixtures import (add_segmentation, crop_slices, load_ct, make_scene, needs_ct, node_ids,
                             reference_labels, segment_arrays)
from MedAdaptSlicerLib.conversion import update_node_from_volume, volume_from_node
from MedAdaptSlicerLib.jobs import SynchronousRunner
from MedAdaptSlicerLib.logic import MedAdaptLogic, free_segment_name
from medadapt.errors import InputError
from medadapt.io.volume import Geometry, Volume, read_volume
from medadapt.universal.collection import read_collection
from medadapt.universal.folder import TaskRecord, UniversalModel, new_record, read_universal, write_universal
from medadapt.universal.network import UniversalNetwork
from medadapt.universal.network3d import VolumeUniversalNetwork
from medadapt.universal.predict import predict_tasks
from medadapt.universal.priors import NetworkShape, shape_for

LOW, HIGH = 14, 16  # the two CT slices kept
VALUES = {"liver": 5, "spleen": 1}


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory, litemedsam):
    """An untrained universal model for liver (5) and spleen (1) on CT, on the real LiteMedSAM's embeddings."""
    torch.manual_seed(0)
    shape = NetworkShape(width=32, heads=2)
    network = UniversalNetwork(shape, list(VALUES), ["CT"])
    tasks = [TaskRecord(name=name, value=value, modalities=["CT"], one_piece=name == "liver", stage=1, volumes=1)
             for name, value in VALUES.items()]
    record = new_record("litemedsam", litemedsam.checkpoint_sha256, shape, tasks, ["CT"], {})
    folder = tmp_path_factory.mktemp("universal") / "model"
    write_universal(folder, UniversalModel(record, network.eval()))
    return folder


def ct_case(masks, rows: slice = slice(None), cols: slice = slice(None)):
    """Scene with the two-slice CT (only ``rows`` and ``cols`` of each slice if given) and a segmentation holding
    ``masks`` (name -> function of the labels)."""
    scene, _, logics = make_scene()
    volume = load_ct(logics)
    crop_slices(volume, LOW, HIGH)
    if rows != slice(None) or cols != slice(None):
        image = volume_from_node(volume)
        g = image.geometry
        origin = tuple(g.index_to_world((cols.start, rows.start, 0)))
        array = np.ascontiguousarray(image.array[:, rows, cols])
        update_node_from_volume(volume, Volume(array, Geometry(array.shape[::-1], g.spacing, origin, g.direction)))
    labels = reference_labels()[LOW:HIGH, rows, cols]
    segmentation = add_segmentation(scene, volume, {name: make(labels) for name, make in masks.items()})
    return scene, volume, segmentation, labels


@needs_ct
def test_universal_tasks_are_read_from_the_folder_and_a_plain_folder_is_refused(model_folder, tmp_path):
    logic = MedAdaptLogic(SynchronousRunner())
    assert logic.universal_tasks(model_folder) == ["liver", "spleen"]
    assert logic.universal_modalities(model_folder) == ["CT"]
    with pytest.raises(InputError, match="holds no universal.json"):
        logic.universal_tasks(tmp_path)
    (tmp_path / "universal.json").write_text('{"tasks": "liver"}')
    with pytest.raises(InputError, match="field tasks"):
        logic.universal_tasks(tmp_path)
    (tmp_path / "universal.json").write_text('{"tasks": [{"name": "liver"}], "modalities": "CT"}')
    with pytest.raises(InputError, match="field modalities"):
        logic.universal_modalities(tmp_path)


@needs_ct
def test_chosen_tasks_become_new_tagged_segments_beside_the_users_own(model_folder, litemedsam):
    scene, volume, segmentation, labels = ct_case({"liver": lambda labels: labels == 5})
    users_liver = segment_arrays(segmentation, volume)["liver"]
    segments = segmentation.GetSegmentation()
    users_tag = segments.GetSegment(segments.GetSegmentIdBySegmentName("liver")).GetTerminology()
    logic = MedAdaptLogic(SynchronousRunner())
    progress = []
    job = logic.start_universal_segment(model_folder, volume, segmentation, ["liver", "spleen"], "CT", device="cpu",
                                        on_progress=progress.append)
    assert job.state == "done", job.error
    assert progress and progress[-1].step == progress[-1].total == HIGH - LOW
    arrays = segment_arrays(segmentation, volume)
    assert list(arrays) == ["liver", "liver (universal)", "spleen"]
    np.testing.assert_array_equal(arrays["liver"], users_liver)  # the user's segment is left as it was
    expected = predict_tasks(read_universal(model_folder), litemedsam, volume_from_node(volume), ["liver", "spleen"],
                             "CT").array
    assert expected.any(), "the untrained model predicts something, so the comparison means something"
    for name, task in (("liver (universal)", "liver"), ("spleen", "spleen")):
        np.testing.assert_array_equal(arrays[name], expected == VALUES[task])
    for name, code in (("liver (universal)", "10200004"), ("spleen", "78961009")):
        segment = segments.GetSegment(segments.GetSegmentIdBySegmentName(name))
        assert f"SCT^{code}^" in segment.GetTerminology()
    assert segments.GetSegment(segments.GetSegmentIdBySegmentName("liver")).GetTerminology() == users_tag
    assert free_segment_name(segmentation, "liver") == "liver (universal 2)"
    assert free_segment_name(segmentation, "kidney") == "kidney"
    scene.Clear(1)


@pytest.fixture(scope="module")
def volume_model_folder(tmp_path_factory):
    """An untrained volume-backbone universal model for liver (5) and spleen (1) on CT: no foundation model."""
    torch.manual_seed(0)
    shape = shape_for("volume")
    tasks = [TaskRecord(name=name, value=value, modalities=["CT"], one_piece=False, stage=1, volumes=1)
             for name, value in VALUES.items()]
    record = new_record("none", "", shape, tasks, ["CT"], {})
    folder = tmp_path_factory.mktemp("universal-volume") / "model"
    write_universal(folder, UniversalModel(record, VolumeUniversalNetwork(shape, list(VALUES), ["CT"]).eval()))
    return folder


@needs_ct
def test_a_volume_model_segments_without_a_foundation_model_and_can_be_cancelled(volume_model_folder):
    scene, volume, segmentation, labels = ct_case({}, slice(30, 78), slice(20, 68))  # one 48-voxel patch a task
    logic = MedAdaptLogic(SynchronousRunner())
    progress = []
    job = logic.start_universal_segment(volume_model_folder, volume, segmentation, ["liver", "spleen"], "CT",
                                        device="cpu", on_progress=progress.append)
    assert job.state == "done", job.error
    assert progress[-1].step == progress[-1].total == 2, "one step per task"
    expected = predict_tasks(read_universal(volume_model_folder), None, volume_from_node(volume),
                             ["liver", "spleen"], "CT").array
    assert expected.any(), "the untrained model predicts something, so the comparison means something"
    arrays = segment_arrays(segmentation, volume)
    assert list(arrays) == ["liver", "spleen"]
    for task in ("liver", "spleen"):
        np.testing.assert_array_equal(arrays[task], expected == VALUES[task])
    nodes = node_ids(scene)
    runner = SynchronousRunner()
    job = MedAdaptLogic(runner).start_universal_segment(volume_model_folder, volume, segmentation, ["spleen"], "CT",
                                                        device="cpu", on_progress=lambda e: runner.current.cancel())
    assert job.state == "cancelled" and node_ids(scene) == nodes
    assert list(segment_arrays(segmentation, volume)) == ["liver", "spleen"]
    scene.Clear(1)


@needs_ct
def test_a_cancelled_or_refused_universal_run_leaves_the_scene_as_it_was(model_folder):
    scene, volume, segmentation, labels = ct_case({"liver": lambda labels: labels == 5})
    nodes, arrays = node_ids(scene), segment_arrays(segmentation, volume)
    runner = SynchronousRunner()
    logic = MedAdaptLogic(runner)
    job = logic.start_universal_segment(model_folder, volume, segmentation, ["spleen"], device="cpu",
                                        on_progress=lambda event: runner.current.cancel())
    assert job.state == "cancelled"
    with pytest.raises(InputError, match="unknown task.*kidney.*knows liver, spleen"):
        logic.start_universal_segment(model_folder, volume, segmentation, ["kidney"], device="cpu")
    with pytest.raises(InputError, match="none chosen"):
        logic.start_universal_segment(model_folder, volume, segmentation, [], device="cpu")
    with pytest.raises(InputError, match="--modality"):
        logic.start_universal_segment(model_folder, volume, segmentation, ["liver"], "MR", device="cpu")
    assert node_ids(scene) == nodes
    after = segment_arrays(segmentation, volume)
    assert after.keys() == arrays.keys() and all(np.array_equal(after[k], arrays[k]) for k in arrays)
    scene.Clear(1)


@needs_ct
def test_accepted_segments_accumulate_as_a_collection_training_reads(tmp_path):
    scene, volume, segmentation, labels = ct_case({"spleen": lambda labels: labels == 1})
    spleen = segmentation.GetSegmentation().GetSegmentIdBySegmentName("spleen")
    folder = tmp_path / "collection"
    folder.mkdir()
    mine = folder / "spleen_001_image.nii.gz"
    mine.write_bytes(b"the user's own file")
    logic = MedAdaptLogic(SynchronousRunner())
    first = logic.save_to_collection(folder, volume, segmentation, spleen, "spleen", "CT")
    second = logic.save_to_collection(folder, volume, segmentation, spleen, "spleen", "CT")
    assert (first.name, second.name) == ("spleen_002.json", "spleen_003.json")
    assert mine.read_bytes() == b"the user's own file"
    entries = read_collection(folder)
    assert [(e.tasks, e.modality) for e in entries] == [({"spleen": 1}, "CT")] * 2
    image = volume_from_node(volume)
    for entry in entries:
        saved_image, saved_labels = read_volume(entry.image), read_volume(entry.labels, label=True)
        assert saved_image.geometry.matches(image.geometry) and saved_labels.geometry.matches(image.geometry)
        np.testing.assert_array_equal(saved_image.array, image.array)
        np.testing.assert_array_equal(saved_labels.array, (labels == 1).astype(np.int32))
    assert logic.save_to_collection(tmp_path / "new" / "nested", volume, segmentation, spleen, "spleen_tip",
                                    "MR").name == "spleen_tip_001.json"
    with pytest.raises(InputError, match="task name"):
        logic.save_to_collection(folder, volume, segmentation, spleen, "spleen (MedAdapt)", "CT")
    with pytest.raises(InputError, match="modality"):
        logic.save_to_collection(folder, volume, segmentation, spleen, "spleen", "")
    assert len(read_collection(folder)) == 2
    scene.Clear(1)
