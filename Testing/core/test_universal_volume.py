"""The universal model's volume backbone (a prior-conditioned 3D network trained end to end on the images):
the working grid, training patches, training and prompt-free prediction through the command line on an oblique,
anisotropic grid, refused options and records, and adding a task without changing the others (training under a
2-process gloo group: test_universal.py)."""

import json

import numpy as np
import pytest
import torch
from conftest import (ANISOTROPIC_SPACING, LIVER, OBLIQUE_DIRECTION, oblique_crop_files, organs_entry_folder,
                      predict_liver_and_spleen, run_cli, SPLEEN)

from medadapt.cli import universal as universal_cli
from medadapt.cli.main import main
from medadapt.io.volume import Geometry, Volume
from medadapt.errors import InputError
from medadapt.universal.folder import new_record, read_universal, TaskRecord, UniversalModel, write_universal
from medadapt.universal.network3d import VolumeUniversalNetwork
from medadapt.universal.priors import BACKBONES, shape_for
from medadapt.universal.train import draw_batch
from medadapt.universal.volumes import MAX_SIDE, PATCH, PatchVolume, prepare_volume, working_grid


def corners(geometry: Geometry) -> np.ndarray:
    """World positions of the outer corners of the grid's voxels."""
    size = np.asarray(geometry.size, float)
    return np.array([geometry.index_to_world(np.array(c) * size - 0.5)
                     for c in np.ndindex(2, 2, 2)])


def test_working_grid_keeps_small_scans_and_coarsens_only_the_long_axes_of_large_ones():
    small = Geometry((35, 51, 35), (1.0, 1.0, 1.0), (4.0, -2.0, 7.0), OBLIQUE_DIRECTION)
    assert working_grid(small) == small
    large = Geometry((512, 512, 100), (0.8, 0.8, 2.5), (10.0, 20.0, -30.0), OBLIQUE_DIRECTION)
    grid = working_grid(large)
    assert grid.size == (MAX_SIDE, MAX_SIDE, 100)
    assert grid.spacing == pytest.approx((3.2, 3.2, 2.5))
    assert grid.direction == large.direction
    assert np.allclose(corners(grid), corners(large)), "same physical extent, same orientation"


def test_patches_are_augmented_cubes_that_favour_the_drawn_structure():
    array = np.zeros((20, 90, 70), np.float32)
    mask = np.zeros_like(array, bool)
    mask[5:12, 60:75, 10:25] = True
    array[mask] = 1.0
    geometry = Geometry((70, 90, 20), ANISOTROPIC_SPACING, (0.0, 0.0, 0.0), OBLIQUE_DIRECTION)
    labels = Volume(mask.astype(np.uint8) * 3, geometry)
    volume = prepare_volume(Volume(array + np.random.default_rng(0).random(array.shape, np.float32), geometry),
                            labels, {"lesion": 3}, "MR")
    assert volume.image.shape == (PATCH, 90, 70), "padded to a patch along the short axis"
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(40):
        image, target = volume.example("lesion", rng)
        assert image.shape == target.shape == (1, 1, PATCH, PATCH, PATCH)
        assert set(torch.unique(target).tolist()) <= {0.0, 1.0}
        hits += bool(target.any())
    share = mask.sum() / mask.size
    assert hits / 40 > 0.5, f"patches hold the structure far more often than its share of the volume ({share:.3f})"


@pytest.fixture(scope="module")
def crop(tmp_path_factory):
    """Twelve slices of the sample on a rotated, anisotropic grid: image and label map files."""
    return oblique_crop_files(tmp_path_factory.mktemp("universal-data"), slice(9, 21))


@pytest.fixture(scope="module")
def model_folder(crop, tmp_path_factory):
    """A volume-backbone model trained on partial labels: one entry for the liver only, one for the spleen."""
    folder = tmp_path_factory.mktemp("universal-volume")
    collection = folder / "collection.csv"
    collection.write_text("image,labels,tasks,modality\n"
                          f"{crop['image']},{crop['labels']},liver={LIVER},CT\n"
                          f"{crop['image']},{crop['labels']},spleen={SPLEEN},CT\n")
    assert main(["universal", "train", str(collection), "-o", str(folder / "model"), "--backbone", "volume",
                 "--iterations", "80", "--device", "cpu", "--quiet"]) == 0
    return folder / "model"


def test_volume_model_trains_and_segments_prompt_free_on_the_image_grid(model_folder, crop, tmp_path, capsys):
    code, out, _ = run_cli(capsys, "universal", "show", model_folder)
    assert code == 0 and "volume backbone" in out and "liver | 5 | CT | yes" in out
    model = read_universal(model_folder)
    assert isinstance(model.network, VolumeUniversalNetwork) and model.record.base_model == "none"
    assert model.record.settings["batch_size"] == 2, "the volume backbone's own default"
    predict_liver_and_spleen(capsys, model_folder, crop, tmp_path / "both.nii.gz", liver_dice=0.7)


def test_volume_backbone_refuses_options_it_does_not_use_and_an_unknown_backbone(crop, tmp_path, capsys):
    collection = tmp_path / "c.csv"
    collection.write_text(f"image,labels,tasks,modality\n{crop['image']},{crop['labels']},liver={LIVER},CT\n")
    code, _, err = run_cli(capsys, "universal", "train", collection, "-o", tmp_path / "m", "--backbone", "volume",
                       "--base-model", "litemedsam", "--device", "cpu")
    assert code == 2 and "--base-model" in err and "volume backbone" in err
    code, _, err = run_cli(capsys, "universal", "train", collection, "-o", tmp_path / "m", "--backbone", "volume",
                       "--max-slices", "8", "--device", "cpu")
    assert code == 2 and "--max-slices" in err and "3D patches" in err
    assert universal_cli.BACKBONES == BACKBONES, "the command line offers every backbone the network has"
    with pytest.raises(SystemExit) as stop:
        main(["universal", "train", str(collection), "-o", str(tmp_path / "m"), "--backbone", "voxels"])
    assert stop.value.code == 2 and "--backbone: invalid choice: 'voxels'" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_adding_a_task_to_a_volume_model_leaves_the_earlier_tasks_unchanged(model_folder, crop, tmp_path, capsys):
    new = organs_entry_folder(crop, tmp_path, "CT")
    grown = tmp_path / "grown"
    code, _, err = run_cli(capsys, "universal", "add", new, "--model", model_folder, "-o", grown, "--iterations", "3",
                       "--device", "cpu", "--quiet")
    assert code == 0, err
    before, after = read_universal(model_folder), read_universal(grown)
    assert [t.name for t in after.record.tasks] == ["liver", "spleen", "organs"]
    patches = torch.rand(2, 1, PATCH, PATCH, PATCH)
    for task in ("liver", "spleen"):
        old, _ = before.network(patches, [task] * 2, ["CT"] * 2)
        now, _ = after.network(patches, [task] * 2, ["CT"] * 2)
        assert torch.equal(old, now), f"{task}'s output is bit-identical after adding a task"


def test_partial_labels_draw_only_the_labelled_tasks():
    image = np.random.default_rng(0).random((PATCH, PATCH, PATCH), np.float32)
    mask = np.zeros(image.shape, bool)
    mask[10:20, 10:20, 10:20] = True
    volumes = [PatchVolume(image, {"liver": mask}, "CT", 1.0, {"liver": True}),
               PatchVolume(image, {"spleen": mask}, "CT", 1.0, {"spleen": True})]
    drawn = draw_batch(volumes, 200, np.random.default_rng(0))
    assert set(drawn) == {(0, "liver"), (1, "spleen")}


def test_an_unknown_backbone_or_an_earlier_format_in_universal_json_is_refused(tmp_path):
    shape = shape_for("volume")
    task = TaskRecord(name="liver", value=5, modalities=["CT"], one_piece=True, stage=1, volumes=1)
    folder = tmp_path / "model"
    write_universal(folder, UniversalModel(new_record("none", "", shape, [task], ["CT"], {}),
                                           VolumeUniversalNetwork(shape, ["liver"], ["CT"])))
    record = json.loads((folder / "universal.json").read_text())
    for change, message in ((lambda r: r["network"].update(backbone="voxels"), "field network.backbone"),
                            (lambda r: r.update(format=1), "field format: 1 is an earlier MedAdapt")):
        edited = json.loads(json.dumps(record))
        change(edited)
        (folder / "universal.json").write_text(json.dumps(edited))
        with pytest.raises(InputError, match=message):
            read_universal(folder)
