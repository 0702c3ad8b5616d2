"""``medadapt clinic``: accepted segmentations in a clinic folder teach the clinic model, which replaces the current
one only when it is at least as good on the held-back entries; the next volume is segmented from it prompt-free.
Three 8-slice crops of the sample CT stand for three patients (liver)."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
from assertions import assert_same_grid, dice
from conftest import LIVER, oblique_crop_files, run_cli

from medadapt.clinic.folder import entries_folder, model_folder, read_clinic
from medadapt.clinic.train import backbone_for, split_entries
from medadapt.universal.collection import read_collection

CROPS = (slice(3, 11), slice(11, 19), slice(19, 27))
"""Three patients: slices of the sample on a rotated, anisotropic grid."""


@pytest.fixture(scope="module")
def patients(tmp_path_factory):
    """Image and label map files of the three crops."""
    folder = tmp_path_factory.mktemp("clinic-patients")
    out = []
    for number, crop in enumerate(CROPS):
        (folder / str(number)).mkdir()
        out.append(oblique_crop_files(folder / str(number), crop))
    return out


@pytest.fixture(scope="module")
def clinic(patients, tmp_path_factory):
    """A clinic folder with the three livers added and one training of 25 steps."""
    folder = tmp_path_factory.mktemp("clinic") / "clinic"
    from medadapt.cli.main import main
    for patient in patients:
        assert main(["clinic", "add", str(folder), "--image", str(patient["image"]), "--labels",
                     str(patient["labels"]), "--label", str(LIVER), "--task", "liver", "--modality", "CT"]) == 0
    assert main(["clinic", "train", str(folder), "--iterations", "25", "--device", "cpu", "--quiet"]) == 0
    return folder


def test_entries_hold_back_the_newest_of_a_task_and_pick_the_backbone(clinic):
    entries = read_collection(entries_folder(clinic))
    assert [e.source.split("/")[-1] for e in entries] == ["liver_001.json", "liver_002.json", "liver_003.json"]
    training, held = split_entries(entries)
    assert len(training) == 2 and [e.image.name for e in held] == ["liver_003_image.nii.gz"]
    assert backbone_for(training) == "volume" and backbone_for(training[:1]) == "embeddings"
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(entries[0].labels)))
    assert set(np.unique(labels)) == {0, 1}  # the structure alone, as value 1


def test_training_is_recorded_and_a_worse_model_does_not_replace_a_better_one(clinic, capsys):
    first = read_clinic(clinic).trainings[0]
    assert first.kept and first.backbone == "volume" and first.held_back == ["liver_003"]
    assert first.trained_on == ["liver_001", "liver_002"] and first.dice_new["liver"] > 0.3
    weights = (model_folder(clinic) / "weights.safetensors").read_bytes()
    code, out, err = run_cli(capsys, "clinic", "train", clinic, "--iterations", "1", "--seed", "3", "--device", "cpu",
                             "--quiet")
    assert code == 0, err
    second = read_clinic(clinic).trainings[1]
    assert second.dice_old == first.dice_new  # the current model, checked on the same held-back entry
    assert second.dice_new["liver"] < second.dice_old["liver"] and not second.kept
    assert "not kept: the current clinic model did better" in out
    assert (model_folder(clinic) / "weights.safetensors").read_bytes() == weights  # untouched
    assert read_clinic(clinic).current() == first


def test_show_lists_tasks_subjects_dice_and_size(clinic, capsys):
    code, out, err = run_cli(capsys, "clinic", "show", clinic)
    assert code == 0, err
    dice_text = f"{read_clinic(clinic).current().dice_new['liver']:.3f}"
    assert f"liver | 3 | 2 | {dice_text}" in out and "3 entries" in out and " MB on disk" in out
    assert "liver_002: liver (CT)" in out


def test_predict_segments_a_new_volume_prompt_free_on_its_grid(clinic, patients, tmp_path, capsys):
    out = tmp_path / "next.nii.gz"
    code, _, err = run_cli(capsys, "clinic", "predict", clinic, patients[1]["image"], "-o", out, "--device", "cpu",
                           "--quiet")
    assert code == 0, err
    predicted, image = sitk.ReadImage(str(out)), sitk.ReadImage(str(patients[1]["image"]))
    assert_same_grid(predicted, image)
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(patients[1]["labels"]))) == LIVER
    assert dice(sitk.GetArrayFromImage(predicted) == 1, truth) > 0.3  # liver_002 taught it (25 steps only)


def test_remove_deletes_an_entry_and_only_its_files(patients, tmp_path, capsys):
    folder = tmp_path / "clinic"
    for patient in patients[:2]:
        code, _, err = run_cli(capsys, "clinic", "add", folder, "--image", patient["image"], "--labels",
                               patient["labels"], "--label", LIVER, "--task", "liver", "--modality", "CT")
        assert code == 0, err
    code, out, err = run_cli(capsys, "clinic", "remove", folder, "liver_001")
    assert code == 0, err
    assert sorted(p.name for p in entries_folder(folder).iterdir()) == [
        "liver_002.json", "liver_002_image.nii.gz", "liver_002_labels.nii.gz"]
    (entries_folder(folder) / "liver_003.json").write_text(json.dumps(
        {"image": str(patients[0]["image"]), "labels": "liver_002_labels.nii.gz", "tasks": {"liver": 1},
         "modality": "CT"}))  # an entry written by hand, naming a file outside the folder
    for name, expected in (("liver_003", "names files other than"), ("liver_009", "has no entry 'liver_009'"),
                           ("../liver_002", "has no entry")):
        code, _, err = run_cli(capsys, "clinic", "remove", folder, name)
        assert code == 2 and expected in err
    assert patients[0]["image"].is_file()


def test_bad_input_is_refused_naming_what_is_wrong(patients, tmp_path, capsys):
    folder, patient = tmp_path / "clinic", patients[0]
    code, _, err = run_cli(capsys, "clinic", "add", folder, "--image", patient["image"], "--labels",
                           patient["labels"], "--task", "liver", "--modality", "CT")
    assert code == 2 and "name the structure's with --label" in err  # liver and spleen in the label map
    code, _, err = run_cli(capsys, "clinic", "add", folder, "--image", patient["image"], "--labels",
                           patient["labels"], "--label", "9", "--task", "liver", "--modality", "CT")
    assert code == 2 and "--label 9: not in" in err
    code, _, err = run_cli(capsys, "clinic", "add", folder, "--image", patient["image"], "--labels",
                           patient["labels"], "--label", LIVER, "--task", "../liver", "--modality", "CT")
    assert code == 2 and "task name" in err
    code, _, err = run_cli(capsys, "clinic", "train", folder, "--device", "cpu")
    assert code == 2 and "no accepted segmentation yet" in err
    code, _, err = run_cli(capsys, "clinic", "predict", folder, patient["image"], "-o", tmp_path / "o.nii.gz")
    assert code == 2 and "has no model yet" in err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    code, _, err = run_cli(capsys, "clinic", "add", tmp_path / "other", "--image", patient["image"], "--labels",
                           patient["labels"], "--label", LIVER, "--task", "liver", "--modality", "CT")
    assert code == 2 and "holds other files" in err
