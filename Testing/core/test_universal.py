"""The universal model (task and modality priors, after Hermes): training on partially labelled volumes through the
command line, prompt-free prediction of chosen tasks, adding a task without changing the others, a tampered model
refused, the network's ablations and training under a 2-process gloo group (both backbones)."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import (free_port, LIVER, oblique_crop_files, organs_entry_folder, predict_liver_and_spleen, run_cli,
                      SPLEEN)

from medadapt.cli.main import main
from medadapt.errors import InputError
from medadapt.universal.collection import read_collection
from medadapt.universal.folder import WEIGHTS, read_universal
from medadapt.universal.network import UniversalNetwork
from medadapt.universal.network3d import VolumeUniversalNetwork
from medadapt.universal.priors import NetworkShape, shape_for
from medadapt.universal.slices import EncodedVolume, encode_entry
from medadapt.universal.train import TrainSettings, draw_batch, labelled_pairs, train_network
from medadapt.universal.volumes import PATCH, PatchVolume


@pytest.fixture(scope="module")
def crop(tmp_path_factory):
    """Six slices of the sample on a rotated, anisotropic grid: image and label map files."""
    return oblique_crop_files(tmp_path_factory.mktemp("universal-data"), slice(12, 18))


@pytest.fixture(scope="module")
def collection(crop, tmp_path_factory):
    """Partial labels: one entry labelled for the liver only, one for the spleen only (same volume)."""
    path = tmp_path_factory.mktemp("collection") / "collection.csv"
    path.write_text("image,labels,tasks,modality\n"
                    f"{crop['image']},{crop['labels']},liver={LIVER},CT\n"
                    f"{crop['image']},{crop['labels']},spleen={SPLEEN},CT\n")
    return path


@pytest.fixture(scope="module")
def model_folder(collection, tmp_path_factory):
    folder = tmp_path_factory.mktemp("universal") / "model"
    assert main(["universal", "train", str(collection), "-o", str(folder), "--iterations", "50", "--batch-size", "4",
                 "--device", "cpu",
                 "--quiet"]) == 0
    return folder


def test_partial_labels_teach_only_the_labelled_tasks(collection, litemedsam):
    liver_only, spleen_only = read_collection(collection)
    encoded = {}
    volumes = [encode_entry(litemedsam, entry, 4, encoded=encoded) for entry in (liver_only, spleen_only)]
    assert len(encoded) == 1, "one image file is encoded once for both entries"
    assert labelled_pairs(volumes) == [(0, "liver"), (1, "spleen")]
    drawn = draw_batch(volumes, 400, np.random.default_rng(0))
    assert set(drawn) == {(0, "liver"), (1, "spleen")}, \
        "the liver-only volume never teaches 'not spleen', nor the spleen-only one 'not liver'"


def test_train_then_predict_chosen_tasks_prompt_free(model_folder, crop, tmp_path, capsys):
    code, out, _ = run_cli(capsys, "universal", "show", model_folder)
    assert code == 0 and "liver | 5 | CT | yes" in out and "spleen | 1 | CT | yes" in out
    array = predict_liver_and_spleen(capsys, model_folder, crop, tmp_path / "both.nii.gz", liver_dice=0.8)
    only_liver = tmp_path / "liver.nii.gz"
    assert run_cli(capsys, "predict", crop["image"], "--model", model_folder, "--tasks", "liver", "-o", only_liver,
               "--device", "cpu", "--quiet")[0] == 0
    liver = sitk.GetArrayFromImage(sitk.ReadImage(str(only_liver)))
    assert set(np.unique(liver)) <= {0, LIVER}
    assert np.all(liver[array == LIVER] == LIVER), "without the spleen competing, the liver keeps its voxels"


def test_unknown_task_and_bad_collection_are_refused(model_folder, crop, tmp_path, capsys):
    code, _, err = run_cli(capsys, "predict", crop["image"], "--model", model_folder, "--tasks", "kidney",
                       "-o", tmp_path / "x.nii.gz", "--device", "cpu")
    assert code == 2 and "kidney" in err and "liver" in err
    bad = tmp_path / "bad.csv"
    bad.write_text(f"image,labels,tasks,modality\n{crop['image']},{crop['labels']},liver=77,CT\n")
    code, _, err = run_cli(capsys, "universal", "train", bad, "-o", tmp_path / "m", "--device", "cpu")
    assert code == 2 and "liver=77" in err and "no voxel" in err
    bad.write_text(f"image,labels,tasks\n{crop['image']},{crop['labels']},liver=5\n")
    code, _, err = run_cli(capsys, "universal", "train", bad, "-o", tmp_path / "m", "--device", "cpu")
    assert code == 2 and "row 2" in err and "modality" in err
    assert not (tmp_path / "m").exists()


def test_tampered_model_is_refused(model_folder, crop, tmp_path, capsys):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(model_folder, copy)
    weights = bytearray((copy / WEIGHTS).read_bytes())
    weights[-1] ^= 0xFF
    (copy / WEIGHTS).write_bytes(bytes(weights))
    code, _, err = run_cli(capsys, "predict", crop["image"], "--model", copy, "-o", tmp_path / "x.nii.gz",
                       "--device", "cpu")
    assert code == 2 and "checksum" in err and WEIGHTS in err
    assert not (tmp_path / "x.nii.gz").exists()


def test_adding_a_task_leaves_the_earlier_tasks_unchanged(model_folder, crop, tmp_path, capsys):
    new = organs_entry_folder(crop, tmp_path, "CTA")
    grown = tmp_path / "grown"
    code, out, err = run_cli(capsys, "universal", "add", new, "--model", model_folder, "-o", grown, "--check",
                         _check_csv(crop, tmp_path), "--iterations", "5", "--device", "cpu", "--quiet")
    assert code == 0, err
    before, after = read_universal(model_folder), read_universal(grown)
    assert [t.name for t in after.record.tasks] == ["liver", "spleen", "organs"]
    assert after.task("organs").value == 3 and after.task("organs").stage == 2
    assert after.record.modalities == ["CT", "CTA"]
    stage = after.record.history[-1]
    assert stage.dice_before == stage.dice_after and set(stage.dice_before) == {"liver", "spleen"}
    embeddings = torch.randn(2, 256, 64, 64)
    for task in ("liver", "spleen"):
        old, _ = before.network(embeddings, [task] * 2, ["CT"] * 2)
        now, _ = after.network(embeddings, [task] * 2, ["CT"] * 2)
        assert torch.equal(old, now), f"{task}'s output is bit-identical after adding a task"
    assert "liver" in out and "->" in out


def _check_csv(crop, folder):
    path = folder / "check.csv"
    path.write_text(f"image,labels,tasks,modality\n{crop['image']},{crop['labels']},liver={LIVER};spleen={SPLEEN},"
                    "CT\n")
    return path


@pytest.mark.parametrize("part", ["task_priors", "modality_priors", "fusion"])
def test_each_ablation_changes_the_network_and_still_tells_tasks_apart(part):
    torch.manual_seed(0)
    network = UniversalNetwork(NetworkShape(width=32, heads=2, **{part: False}), ["a", "b"], ["CT", "MR"])
    full = UniversalNetwork(NetworkShape(width=32, heads=2), ["a", "b"], ["CT", "MR"])
    if part == "fusion":
        assert len(network.fusions) == 0 and len(full.fusions) > 0
    embeddings = torch.randn(1, 256, 64, 64).expand(2, -1, -1, -1)
    logits, modality = network(embeddings, ["a", "b"], ["CT", "CT"])
    assert logits.shape == (2, 1, 64, 64) and modality.shape == (2, 2)
    assert not torch.equal(logits[0], logits[1]), "each task keeps its own output"


def _group_case(backbone: str):
    """A one-task network of ``backbone`` and a volume of random inputs with a box-shaped mask to train it on."""
    gen = torch.Generator().manual_seed(0)
    if backbone == "volume":
        image = torch.rand(PATCH, PATCH, PATCH, generator=gen).numpy()
        mask = np.zeros(image.shape, bool)
        mask[10:30, 12:40, 5:25] = True
        return (VolumeUniversalNetwork(shape_for("volume"), ["a"], ["CT"]),
                PatchVolume(image, {"a": mask}, "CT", 1.0, {"a": True}))
    masks = torch.zeros(4, 1, 256, 256, dtype=torch.bool)
    masks[:, :, 60:160, 80:200] = True
    return (UniversalNetwork(NetworkShape(width=32, heads=2), ["a"], ["CT"]),
            EncodedVolume(torch.randn(4, 256, 64, 64, generator=gen).half(), {"a": masks}, "CT", 1.0, {"a": True}))


def _train_in_group(rank: int, port: int, backbone: str, results) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        torch.manual_seed(rank)  # different starting weights: the group must start from rank 0's
        network, volume = _group_case(backbone)
        losses = train_network(network, [volume], TrainSettings(iterations=2, batch_size=2, seed=0))
        results[rank] = (torch.cat([p.detach().flatten() for p in network.parameters()]).numpy(), losses)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("backbone", ["embeddings", "volume"])
def test_training_under_a_two_process_gloo_group_keeps_the_processes_identical(backbone):
    results = mp.Manager().dict()
    mp.spawn(_train_in_group, args=(free_port(), backbone, results), nprocs=2, join=True)
    (first, first_losses), (second, second_losses) = results[0], results[1]
    assert np.array_equal(first, second), "averaged gradients keep both processes' weights equal"
    assert first_losses != second_losses, "each process trained on its own batches"


def test_collection_names_the_file_and_field(tmp_path):
    sidecar = tmp_path / "a.json"
    sidecar.write_text(json.dumps({"image": "x.nii.gz", "labels": "y.nii.gz", "tasks": {"liver": 5},
                                   "modality": "CT"}))
    with pytest.raises(InputError, match=r"a\.json: image: .*x\.nii\.gz does not exist"):
        read_collection(tmp_path)
    sidecar.write_text(json.dumps({"image": "x", "labels": "y", "tasks": "liver=five", "modality": "CT"}))
    with pytest.raises(InputError, match="tasks: expected name=label value pairs"):
        read_collection(tmp_path)
