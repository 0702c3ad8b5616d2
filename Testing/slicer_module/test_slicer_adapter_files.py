"""Save a (tiny) LoRA or FSEFT-head adaptation from the module, load it back and apply it to another volume node,
with a painted slice or with no prompt at all. Short crops keep the CPU's image encoder quick: each slice an
adaptation or an Apply walks costs one encoding."""

import json

import numpy as np
import pytest

from slicer_fixtures import (add_segmentation, crop_slices, dice, load_ct, make_scene, needs_ct,  # noqa: F401
                             reference_labels, scene, segment_arrays)
from MedAdaptSlicerLib.jobs import SynchronousRunner
from MedAdaptSlicerLib.logic import MedAdaptLogic
from MedAdaptSlicerLib.parameters import Parameters
from MedAdaptSlicerLib.results import preview_name
from medadapt.artifacts import ATLAS_FILES, AdaptedModel
from medadapt.errors import InputError

TRAIN, PAINTED = (15, 20), [15, 17, 19]
"""The training crop (slices [start, stop) of the CT) and its painted slices."""
OTHER = (13, 18)
"""Apply's crop of another CT node: a different field of view (two slices lower)."""
HEAD_ITERATIONS = 100
"""Linear-probe training steps (100 reach liver Dice 0.81 here)."""


def adapt_and_save(folder, parameters: Parameters, without_atlas=None) -> tuple:
    """Adapt on the CT's slices TRAIN (liver painted on PAINTED) in a scene of its own and save the adapter in
    ``folder`` (and, without its atlas as ``batch.py --no-atlas`` saves it, in ``without_atlas`` if given);
    returns (the saved folder, its manifest)."""
    mrml, _, logics = make_scene()
    try:
        liver = reference_labels() == 5
        volume = load_ct(logics, "training")
        crop_slices(volume, *TRAIN)
        painted = np.zeros((TRAIN[1] - TRAIN[0], *liver.shape[1:]), np.uint8)
        painted[[s - TRAIN[0] for s in PAINTED]] = liver[PAINTED]
        segmentation = add_segmentation(mrml, volume, {"liver": painted})
        logic = MedAdaptLogic(SynchronousRunner())
        job = logic.start_adapt(volume, segmentation, "liver", parameters)
        assert job.state == "done", job.error
        saved = logic.save_adapter(folder)
        if without_atlas is not None:
            logic.save_adapter(without_atlas, keep_atlas=False)
    finally:
        mrml.Clear(1)
    return saved, json.loads((saved / "manifest.json").read_text())


@pytest.fixture(scope="module")
def lora_adapter(tmp_path_factory):
    """A LoRA adapter (two iterations, rank 2, no synthetic pairs: training itself is tested in test_pipeline.py)
    saved once for the tests that load it (and once more without its atlas): (folder, manifest)."""
    parameters = Parameters(method="lora", device="cpu", iterations=2, rank=2, synthesis_per_exemplar=0)
    folder = tmp_path_factory.mktemp("lora")
    return adapt_and_save(folder / "liver-adapter", parameters, folder / "no-atlas")


def apply_without_prompts(mrml, logics, logic) -> float:
    """Apply the held model to slices OTHER of another CT node with an empty target segment and no points;
    returns the preview's liver Dice."""
    liver = reference_labels() == 5
    other = load_ct(logics, "other")
    crop_slices(other, *OTHER)
    segmentation = add_segmentation(mrml, other, {"liver": np.zeros((OTHER[1] - OTHER[0], *liver.shape[1:]),
                                                                    np.uint8)})
    job = logic.start_apply(other, segmentation, "liver")
    assert job.state == "done", job.error
    return dice(segment_arrays(segmentation, other)[preview_name("liver")], liver[OTHER[0]:OTHER[1]])


@needs_ct
def test_save_load_and_apply_to_another_volume(scene, lora_adapter):
    mrml, logics = scene
    folder, manifest = lora_adapter
    assert manifest["exemplars"]["axis"] == 0 and manifest["config"]["adapter"]["rank"] == 2
    liver = reference_labels() == 5
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


@needs_ct
def test_lora_adapter_finds_the_structure_through_its_atlas(scene, lora_adapter):
    mrml, logics = scene
    folder, manifest = lora_adapter
    assert set(manifest["atlas"]) == {"image", "labels"} and "heads" not in manifest  # Method.keeps_atlas
    without = folder.parent / "no-atlas"
    assert not any((without / name).exists() for name in ATLAS_FILES.values())
    assert "atlas" not in json.loads((without / "manifest.json").read_text())
    logic = MedAdaptLogic(SynchronousRunner())
    logic.load_adapter(folder, "cpu")
    assert logic.model.atlas.labels.array.shape == (TRAIN[1] - TRAIN[0], 101, 122) and logic.model.heads is None
    score = apply_without_prompts(mrml, logics, logic)
    assert score > 0.7, f"liver Dice {score:.3f}"


@needs_ct
def test_head_adapter_segments_without_prompts(scene, tmp_path):
    mrml, logics = scene
    parameters = Parameters(method="linear-probe", device="cpu", iterations=HEAD_ITERATIONS,
                            synthesis_per_exemplar=0)
    folder, manifest = adapt_and_save(tmp_path / "adapter", parameters)
    assert manifest["heads"]["kind"] == "linear-probe" and "atlas" not in manifest
    logic = MedAdaptLogic(SynchronousRunner())
    logic.load_adapter(folder, "cpu")
    assert logic.model.heads is not None and logic.model.atlas is None
    score = apply_without_prompts(mrml, logics, logic)
    assert score > 0.7, f"liver Dice {score:.3f}"


def test_only_trained_models_can_be_saved(tmp_path):
    logic = MedAdaptLogic(SynchronousRunner())
    with pytest.raises(InputError, match="Load adapter"):
        logic.save_adapter(tmp_path / "x")
    logic.model = AdaptedModel(backend=None, config=Parameters(method="zero-shot").to_config(), window=(0, 1))
    with pytest.raises(InputError, match="only a trained model"):  # the module holds the base model itself
        logic.save_adapter(tmp_path / "x")
    with pytest.raises(InputError, match="save: method 'fill' trains no model to save"):  # the core's refusal
        AdaptedModel(backend=None, config=Parameters(method="fill").to_config()).save(tmp_path / "x")
    assert not (tmp_path / "x").exists()
