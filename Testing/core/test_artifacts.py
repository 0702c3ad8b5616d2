"""Saved adapters (:class:`AdaptedModel`): safetensors + manifest (+ atlas), reloaded to the same predictions;
damaged folders refused; one atlas rule for every method and front end."""

import json

import numpy as np
import pytest
from conftest import LIVER, liver_crop

from medadapt.artifacts import ATLAS_FILES, MANIFEST, WEIGHTS, AdaptedModel
from medadapt.cli.main import main
from medadapt.config import AdaptConfig
from medadapt.errors import InputError
from medadapt.io.exemplars import find_exemplars
from medadapt.io.volume import write_volume
from medadapt.methods.registry import METHODS
from medadapt.pipeline import adapt, predict


@pytest.fixture(scope="module")
def saved(sample, tmp_path_factory):
    """A LoRA model (3 iterations) adapted to an 8-slice liver crop painted on slices 2 and 5, saved without its
    atlas: (folder, image, exemplars, adapt result)."""
    image, liver = liver_crop(sample, slice(10, 18))
    exemplars = find_exemplars(image, liver, axis=0, slices=[2, 5])
    config = AdaptConfig(method="lora", device="cpu")
    config.train.iterations, config.synthesis.per_exemplar = 3, 1
    result = adapt(image, exemplars, config)
    folder = tmp_path_factory.mktemp("adapters") / "liver"
    AdaptedModel.from_result(result, config, image, exemplars, keep_atlas=False).save(folder)
    return folder, image, exemplars, result


def test_reloaded_adapter_predicts_exactly_as_the_trained_one(saved):
    folder, image, exemplars, result = saved
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["base_model"]["name"] == "litemedsam" and len(manifest["base_model"]["sha256"]) == 64
    assert manifest["config"]["train"]["iterations"] == 3 and manifest["exemplars"] == {
        "axis": 0, "slices": [2, 5], "labels": [LIVER]}
    assert (folder / WEIGHTS).stat().st_size < 5e6
    model = AdaptedModel.load(folder)
    assert model.manifest["adapter_sha256"] == manifest["adapter_sha256"] and model.window == tuple(result.window)
    assert model.axis == 0
    assert model.labels == [LIVER] and model.exemplar_slices == [2, 5] and model.atlas is None
    assert model.losses == [pytest.approx(result.losses[-1])]
    again = predict(image, model.backend, model.config, model.window, model.axis, exemplars)
    np.testing.assert_array_equal(again.array, result.segmentation.array)


def test_saving_over_an_existing_adapter_replaces_it_whole(saved, tmp_path):
    folder, _, _, result = saved
    target = tmp_path / "model"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    AdaptedModel(result.backend, AdaptConfig()).save(target)
    assert sorted(p.name for p in target.iterdir()) == [WEIGHTS, MANIFEST]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    assert "window" not in json.loads((target / MANIFEST).read_text())  # a model without one saves none


def test_methods_that_train_nothing_to_save_are_refused_by_name(saved, tmp_path):
    _, _, _, result = saved
    for method in ("fill", "grow"):
        with pytest.raises(InputError, match=rf"save: method '{method}' trains no model to save \(savable: lora, "
                                             "zero-shot, linear-probe"):
            AdaptedModel(result.backend, AdaptConfig(method=method)).save(tmp_path / method)
        assert not (tmp_path / method).exists()


def test_one_atlas_rule_for_every_method_and_the_command_line(saved, tmp_path, monkeypatch, capsys):
    """``from_result`` keeps an atlas exactly when the registry says the method keeps one (and no opt-out), so
    the command line, the Slicer module, batch.py and the server (which all build their model with it) agree;
    ``medadapt adapt --save-model`` keeps it by default and ``--no-atlas`` leaves it out."""
    folder, image, exemplars, result = saved
    for name, method in METHODS.items():
        config = AdaptConfig(method=name)
        assert (AdaptedModel.from_result(result, config, image, exemplars).atlas is not None) == method.keeps_atlas
        assert AdaptedModel.from_result(result, config, image, exemplars, keep_atlas=False).atlas is None
        assert not method.keeps_atlas or (method.saveable and method.trains_backend and method.head_kind is None)
    assert [name for name, method in METHODS.items() if method.keeps_atlas] == ["lora"]

    # the command line's own save path, on this file's LoRA result (no second training run)
    write_volume(image, tmp_path / "crop.nii.gz")
    painted = exemplars.labelmap.array.copy()
    painted[[s for s in range(painted.shape[0]) if s not in exemplars.slices]] = 0
    write_volume(exemplars.labelmap.with_array(painted), tmp_path / "painted.nii.gz")
    monkeypatch.setattr("medadapt.pipeline.adapt", lambda *args, **kwargs: result)
    command = ["adapt", tmp_path / "crop.nii.gz", "--exemplars", tmp_path / "painted.nii.gz", "--device", "cpu",
               "--quiet"]
    for name, extra, keeps in (("default", [], True), ("no-atlas", ["--no-atlas"], False)):
        code = main([str(a) for a in (*command, "-o", tmp_path / f"{name}.nii.gz", "--save-model",
                                      tmp_path / name, *extra)])
        assert code == 0, capsys.readouterr().err
        assert [(tmp_path / name / file).is_file() for file in ATLAS_FILES.values()] == [keeps, keeps]
        assert ("atlas" in json.loads((tmp_path / name / MANIFEST).read_text())) == keeps
        assert (AdaptedModel.load(tmp_path / name).atlas is not None) == keeps
    assert main([str(a) for a in (*command, "-o", tmp_path / "x.nii.gz", "--no-atlas")]) == 2
    assert "--no-atlas (a job's \"atlas\": false): only with --save-model" in capsys.readouterr().err


def test_damaged_adapter_folders_are_refused(saved, tmp_path):
    folder, _, _, _ = saved
    with pytest.raises(InputError, match="no manifest.json"):
        AdaptedModel.load(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / MANIFEST).write_text((folder / MANIFEST).read_text())
    (broken / WEIGHTS).write_bytes((folder / WEIGHTS).read_bytes()[:-100])
    with pytest.raises(InputError, match="adapter.safetensors: checksum does not match"):
        AdaptedModel.load(broken)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["config"]["adapter"]["rank"] = 8
    (broken / WEIGHTS).write_bytes((folder / WEIGHTS).read_bytes())
    (broken / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="adapter keys do not match"):
        AdaptedModel.load(broken)


def test_saved_atlas_starts_a_prompt_free_prediction_and_is_checked(saved, tmp_path):
    folder, image, exemplars, result = saved
    target = tmp_path / "with_atlas"
    AdaptedModel.from_result(result, AdaptConfig(), image, exemplars).save(target)  # lora: keeps its atlas
    model = AdaptedModel.load(target)
    atlas = model.atlas
    assert "atlas" not in json.loads((folder / MANIFEST).read_text()) and set(model.manifest["atlas"]) == {
        "image", "labels"}
    assert atlas.labels.geometry.direction == image.geometry.direction
    segmentation = predict(image, model.backend, model.config, model.window, 0, atlas=atlas)  # no prompt
    truth = result.segmentation.array == LIVER
    found = segmentation.array == LIVER
    assert 2 * np.count_nonzero(found & truth) / (found.sum() + truth.sum()) > 0.8
    labels = target / ATLAS_FILES["labels"]
    labels.write_bytes(labels.read_bytes()[:-10])
    with pytest.raises(InputError, match="atlas_labels.nii.gz: checksum does not match"):
        AdaptedModel.load(target)


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
        AdaptedModel.load(tmp_path)


def test_a_manifest_that_is_a_list_is_refused(saved, tmp_path):
    (tmp_path / MANIFEST).write_text("[1, 2]")
    with pytest.raises(InputError, match="manifest must be a JSON object"):
        AdaptedModel.load(tmp_path)
