"""Save a (tiny) LoRA or FSEFT-head adaptation from the module, load it back and apply it to another volume node,
with a painted slice or with no prompt at all."""

import json

import numpy as np
import pytest

from slicer_fixtures import (add_segmentation, crop_slices, dice, load_ct, needs_ct,  # noqa: F401
                             reference_labels, scene, segment_arrays)
from MedAdaptSlicerLib.adapter_files import AdaptedModel, save_model
from MedAdaptSlicerLib.jobs import SynchronousRunner
from MedAdaptSlicerLib.logic import MedAdaptLogic
from MedAdaptSlicerLib.parameters import Parameters
from MedAdaptSlicerLib.results import preview_name
from medadapt.errors import InputError


@needs_ct
def test_save_load_and_apply_to_another_volume(scene, tmp_path):
    mrml, logics = scene
    liver = reference_labels() == 5
    volume = load_ct(logics, "training")
    crop_slices(volume, 19, 22)
    painted = np.zeros((3, *liver.shape[1:]), np.uint8)
    painted[[0, 2]] = liver[[19, 21]]
    segmentation = add_segmentation(mrml, volume, {"liver": painted})
    logic = MedAdaptLogic(SynchronousRunner())
    parameters = Parameters(method="lora", device="cpu", iterations=2, rank=2, synthesis_per_exemplar=1)
    job = logic.start_adapt(volume, segmentation, "liver", parameters)
    assert job.state == "done", job.error
    folder = logic.save_adapter(tmp_path / "liver-adapter")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["exemplars"]["axis"] == 0 and manifest["config"]["adapter"]["rank"] == 2

    fresh = MedAdaptLogic(SynchronousRunner())
    model = fresh.load_adapter(folder, "cpu")
    assert model.axis == 0 and model.window == tuple(manifest["window"])
    other = load_ct(logics, "other")
    crop_slices(other, 23, 25)
    target = liver[23:25]
    seeds = np.zeros_like(target, np.uint8)
    seeds[0] = target[0]
    other_segmentation = add_segmentation(mrml, other, {"liver": seeds})
    job = fresh.start_apply(other, other_segmentation, "liver")
    assert job.state == "done", job.error
    preview = segment_arrays(other_segmentation, other)[preview_name("liver")]
    assert dice(preview[1], target[1]) > 0.7


def adapt_save_and_load(mrml, logics, tmp_path, parameters):
    """Adapt on slices 15-22 of the CT (liver painted on 15, 19 and 22), save the adapter and load it into a fresh
    logic; returns (fresh logic, manifest)."""
    liver = reference_labels() == 5
    volume = load_ct(logics, "training")
    crop_slices(volume, 15, 23)
    painted = np.zeros((8, *liver.shape[1:]), np.uint8)
    painted[[0, 4, 7]] = liver[[15, 19, 22]]
    segmentation = add_segmentation(mrml, volume, {"liver": painted})
    logic = MedAdaptLogic(SynchronousRunner())
    job = logic.start_adapt(volume, segmentation, "liver", parameters)
    assert job.state == "done", job.error
    folder = logic.save_adapter(tmp_path / "adapter")
    fresh = MedAdaptLogic(SynchronousRunner())
    fresh.load_adapter(folder, "cpu")
    return fresh, json.loads((folder / "manifest.json").read_text())


def apply_without_prompts(mrml, logics, logic) -> float:
    """Apply the held model to slices 11-22 of another CT node (a different field of view) with an empty target
    segment and no points; returns the preview's liver Dice."""
    liver = reference_labels() == 5
    other = load_ct(logics, "other")
    crop_slices(other, 11, 23)
    segmentation = add_segmentation(mrml, other, {"liver": np.zeros((12, *liver.shape[1:]), np.uint8)})
    job = logic.start_apply(other, segmentation, "liver")
    assert job.state == "done", job.error
    return dice(segment_arrays(segmentation, other)[preview_name("liver")], liver[11:23])


@needs_ct
def test_lora_adapter_finds_the_structure_through_its_atlas(scene, tmp_path):
    mrml, logics = scene
    parameters = Parameters(method="lora", device="cpu", iterations=2, rank=2, synthesis_per_exemplar=1)
    logic, manifest = adapt_save_and_load(mrml, logics, tmp_path, parameters)
    assert set(manifest["atlas"]) == {"image", "labels"} and "heads" not in manifest
    assert logic.model.atlas.labels.array.shape == (8, 101, 122) and logic.model.heads is None
    score = apply_without_prompts(mrml, logics, logic)
    assert score > 0.7, f"liver Dice {score:.3f}"


@needs_ct
def test_head_adapter_segments_without_prompts(scene, tmp_path):
    mrml, logics = scene
    parameters = Parameters(method="linear-probe", device="cpu", synthesis_per_exemplar=0)
    logic, manifest = adapt_save_and_load(mrml, logics, tmp_path, parameters)
    assert manifest["heads"]["kind"] == "linear-probe" and "atlas" not in manifest
    assert logic.model.heads is not None and logic.model.atlas is None
    score = apply_without_prompts(mrml, logics, logic)
    assert score > 0.7, f"liver Dice {score:.3f}"


def test_only_trained_models_can_be_saved(tmp_path):
    model = AdaptedModel(backend=None, config=Parameters(method="zero-shot").to_config(), window=(0, 1), axis=0)
    with pytest.raises(InputError, match="only a trained model"):
        save_model(tmp_path / "x", model)
    with pytest.raises(InputError, match="Load adapter"):
        MedAdaptLogic(SynchronousRunner()).save_adapter(tmp_path / "x")
