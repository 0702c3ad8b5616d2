"""Saved adapters: safetensors + manifest (+ atlas), reloaded to the same predictions; damaged folders refused."""

import json

import numpy as np
import pytest
from conftest import LIVER, liver_crop

from medadapt.artifacts import ATLAS_FILES, MANIFEST, WEIGHTS, load_adapter, load_atlas, save_adapter
from medadapt.methods.atlas import make_atlas
from medadapt.config import AdaptConfig
from medadapt.errors import InputError
from medadapt.io.exemplars import find_exemplars
from medadapt.pipeline import adapt, predict


@pytest.fixture(scope="module")
def saved(sample, tmp_path_factory):
    image, liver = liver_crop(sample, slice(10, 18))
    exemplars = find_exemplars(image, liver, axis=0, slices=[2, 5])
    config = AdaptConfig(method="lora", device="cpu")
    config.train.iterations, config.synthesis.per_exemplar = 3, 1
    result = adapt(image, exemplars, config)
    folder = tmp_path_factory.mktemp("adapters") / "liver"
    save_adapter(folder, result.backend, config, {"exemplars": {"axis": 0, "slices": exemplars.slices},
                                                  "window": list(result.window),
                                                  "validation_dice": result.validation_dice})
    return folder, image, exemplars, result


def test_reloaded_adapter_predicts_exactly_as_the_trained_one(saved):
    folder, image, exemplars, result = saved
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["base_model"]["name"] == "litemedsam" and len(manifest["base_model"]["sha256"]) == 64
    assert manifest["config"]["train"]["iterations"] == 3 and manifest["exemplars"]["slices"] == [2, 5]
    assert (folder / WEIGHTS).stat().st_size < 5e6
    backend, manifest, config = load_adapter(folder)
    again = predict(image, backend, config, tuple(manifest["window"]), 0, exemplars)
    np.testing.assert_array_equal(again.array, result.segmentation.array)


def test_saving_over_an_existing_adapter_replaces_it_whole(saved, tmp_path):
    folder, _, _, result = saved
    target = tmp_path / "model"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    save_adapter(target, result.backend, AdaptConfig(), {})
    assert sorted(p.name for p in target.iterdir()) == [WEIGHTS, MANIFEST]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_damaged_adapter_folders_are_refused(saved, tmp_path):
    folder, _, _, _ = saved
    with pytest.raises(InputError, match="no manifest.json"):
        load_adapter(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / MANIFEST).write_text((folder / MANIFEST).read_text())
    (broken / WEIGHTS).write_bytes((folder / WEIGHTS).read_bytes()[:-100])
    with pytest.raises(InputError, match="adapter.safetensors: checksum does not match"):
        load_adapter(broken)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["config"]["adapter"]["rank"] = 8
    (broken / WEIGHTS).write_bytes((folder / WEIGHTS).read_bytes())
    (broken / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="adapter keys do not match"):
        load_adapter(broken)


def test_saved_atlas_starts_a_prompt_free_prediction_and_is_checked(saved, tmp_path):
    folder, image, exemplars, result = saved
    target = tmp_path / "with_atlas"
    save_adapter(target, result.backend, AdaptConfig(), {"window": list(result.window)},
                 atlas=make_atlas(image, exemplars))
    backend, manifest, config = load_adapter(target)
    atlas = load_atlas(target, manifest)
    assert load_atlas(folder, json.loads((folder / MANIFEST).read_text())) is None
    assert atlas.labels.geometry.direction == image.geometry.direction
    segmentation = predict(image, backend, config, tuple(manifest["window"]), 0, atlas=atlas)  # no prompt
    truth = result.segmentation.array == LIVER
    found = segmentation.array == LIVER
    assert 2 * np.count_nonzero(found & truth) / (found.sum() + truth.sum()) > 0.8
    labels = target / ATLAS_FILES["labels"]
    labels.write_bytes(labels.read_bytes()[:-10])
    with pytest.raises(InputError, match="atlas_labels.nii.gz: checksum does not match"):
        load_atlas(target, manifest)


@pytest.mark.parametrize("tamper, expected", [
    (lambda m: m.pop("config"), "manifest field config: Field required"),
    (lambda m: m.update(config=[1, 2]), "manifest field config: Input should be a valid dictionary"),
    (lambda m: m["config"]["adapter"].update(rank="four"), "manifest field config.adapter.rank"),
    (lambda m: m.update(heads={"kind": "mystery", "features": "embedding", "channels": 256, "labels": [1],
                               "width": 0, "sha256": "0"}), "manifest field heads.kind"),
    (lambda m: m.update(exemplars={"axis": 5}), "manifest field exemplars.axis"),
    (lambda m: m.update(format=7), "unsupported adapter format 7"),
    (lambda m: m.update(base_model="litemedsam"), "manifest field base_model"),
])
def test_manifests_that_do_not_fit_the_schema_are_refused_by_field(saved, tmp_path, tamper, expected):
    folder, _, _, _ = saved
    manifest = json.loads((folder / MANIFEST).read_text())
    tamper(manifest)
    (tmp_path / WEIGHTS).write_bytes((folder / WEIGHTS).read_bytes())
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=expected.replace(".", r"\.")):
        load_adapter(tmp_path)


def test_a_manifest_that_is_a_list_is_refused(saved, tmp_path):
    (tmp_path / MANIFEST).write_text("[1, 2]")
    with pytest.raises(InputError, match="manifest must be a JSON object"):
        load_adapter(tmp_path)
