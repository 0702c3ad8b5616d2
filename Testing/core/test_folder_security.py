"""MedAdapt's folders under attack: adapters, lineages and universal models hold only the plain files their record
lists (a symbolic link, a stray file or a special file is refused by name, exit 2, before anything is read or
copied); ``universal.json`` fits its schema (a malformed field is exit 2 naming it, never an allocation or a late
exit 1); checksums catch a flipped byte inside a file that still parses; folder and volume writes are atomic; and a
batch never writes over its own list or inputs.

The adapter folders here come from a small stand-in backend (a real base model is not needed to save one, and every
refusal tested happens before a base model would be loaded)."""

import csv
import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import oblique_image, run_cli
from safetensors.torch import load_file, save_file

from medadapt.artifacts import (ATLAS_FILES, BASE_DELTA, HEADS, MANIFEST, WEIGHTS, load_adapter, load_atlas,
                                load_heads, save_adapter)
from medadapt.config import AdaptConfig
from medadapt.errors import InputError
from medadapt.io.volume import Volume, read_volume, write_volume
from medadapt.lineage import folder as lineage_folder
from medadapt.lineage.folder import (BaseFacts, StageSettings, TaskFacts, new_record as new_lineage_record,
                                     read_lineage, write_lineage)
from medadapt.methods.atlas import Atlas
from medadapt.methods.heads import HeadSet
from medadapt.universal import folder as universal_folder
from medadapt.universal.folder import TaskRecord, UniversalModel, build_network, read_universal, write_universal
from medadapt.universal.priors import NetworkShape

SECRET = b"-----BEGIN PRIVATE KEY----- not for the lineage"


def digest(folder):
    """SHA-256 of every file under ``folder`` by relative path."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


class StandInBackend(torch.nn.Module):
    """What :func:`save_adapter` reads of a backend: name, weights' checksum and trainable tensors."""

    name, checkpoint_sha256, base_delta = "litemedsam", "0" * 64, None

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.decoder = torch.nn.Linear(16, 16)


def tiny_volume(label: bool) -> Volume:
    """A 4 x 10 x 12 volume on a rotated grid (labels: a block of 5)."""
    array = np.zeros((4, 10, 12), np.uint8) if label else np.random.default_rng(0).normal(40, 10, (4, 10, 12))
    if label:
        array[1:3, 2:8, 3:9] = 5
    return Volume.from_sitk(oblique_image(array.astype(np.uint8 if label else np.float32)))


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    """An adapter folder with weights, linear-probe heads and an atlas."""
    folder = tmp_path_factory.mktemp("adapter") / "model"
    heads = HeadSet("linear-probe", "embedding", 8, [5])
    atlas = Atlas(tiny_volume(False), tiny_volume(True))
    save_adapter(folder, StandInBackend(), AdaptConfig(), {"window": [0.0, 100.0], "exemplars": {"axis": 0}},
                 heads=heads, atlas=atlas)
    return folder


@pytest.fixture(scope="module")
def lineage(tmp_path_factory):
    """A one-stage lineage folder (a small delta and one task's retained slices)."""
    folder = tmp_path_factory.mktemp("lineage") / "abdomen"
    record = new_lineage_record(BaseFacts(name="litemedsam", sha256="0" * 64), "medseqft", True, StageSettings())
    record.tasks.append(TaskFacts(stage=1, name="liver", label=5, label_maps=["labels.nii.gz"], slices=2,
                                  retained=1, seconds=1, peak_rss_gb=0.1))
    record.history.append({"liver": 0.9})
    write_lineage(folder, record, {"mask_decoder.w": torch.ones(4)},
                  {1: {"frames": torch.zeros(1, 3, 8, 8, dtype=torch.uint8),
                       "masks": torch.ones(1, 1, 8, 8, dtype=torch.uint8)}})
    return folder


@pytest.fixture(scope="module")
def universal(tmp_path_factory):
    """An untrained volume-backbone universal model (width 8) for liver (5) on CT."""
    torch.manual_seed(0)
    record = universal_folder.new_record("none", "", NetworkShape(backbone="volume", in_channels=1, width=8),
                                         [TaskRecord(name="liver", value=5, modalities=["CT"], one_piece=True,
                                                     stage=1, volumes=1)], ["CT"], {})
    folder = tmp_path_factory.mktemp("universal") / "model"
    write_universal(folder, UniversalModel(record, build_network(record)))
    return folder


FOLDERS = {  # kind: (fixture, its record, a file the record lists, the command that reads the folder)
    "adapter": ("adapter", MANIFEST, WEIGHTS, lambda folder, image, out: ["predict", image, "--model", folder,
                                                                          "-o", out, "--quiet"]),
    "lineage": ("lineage", "lineage.json", "model_delta.safetensors", lambda folder, image, out: [
        "lineage", "show", folder]),
    "universal": ("universal", "universal.json", "weights.safetensors", lambda folder, image, out: [
        "universal", "show", folder]),
}


def plant(copy, attack: str, record: str, listed: str, outside):
    """Plant ``attack`` in the folder ``copy``; returns (the planted entry's name, what the error says)."""
    if attack == "link to a secret":
        (outside / "secret.key").write_bytes(SECRET)
        (copy / "extra.safetensors").symlink_to(outside / "secret.key")
        return "extra.safetensors", "symbolic link"
    if attack in ("listed file as a link", "record as a link"):
        name = record if attack == "record as a link" else listed
        shutil.move(copy / name, outside / name)  # same bytes: the checksum alone would pass it
        (copy / name).symlink_to(outside / name)
        return name, "symbolic link"
    if attack == "linked subfolder":
        (outside / "elsewhere").mkdir()
        (copy / "more").symlink_to(outside / "elsewhere", target_is_directory=True)
        return "more", "symbolic link"
    if attack == "stray file":
        (copy / "notes.txt").write_text("hello")
        return "notes.txt", f"not listed in {record}"
    if attack == "stray folder":
        (copy / "cache").mkdir()
        return "cache", f"not listed in {record}"
    os.mkfifo(copy / "pipe")
    return "pipe", "not a regular file"


@pytest.mark.parametrize("attack", ["link to a secret", "listed file as a link", "record as a link",
                                    "linked subfolder", "stray file", "stray folder", "special file"])
@pytest.mark.parametrize("kind", list(FOLDERS))
def test_a_folder_holding_anything_its_record_does_not_list_is_refused(request, capsys, tmp_path, small_case,
                                                                       kind, attack):
    fixture, record, listed, command = FOLDERS[kind]
    copy, outside = tmp_path / kind, tmp_path / "outside"
    outside.mkdir()
    shutil.copytree(request.getfixturevalue(fixture), copy)
    name, expected = plant(copy, attack, record, listed, outside)
    code, out, err = run_cli(capsys, *command(copy, small_case[0], tmp_path / "out.nii.gz"))
    assert code == 2 and f"{copy / name}: {expected}" in err, err
    assert not (tmp_path / "out.nii.gz").exists() and out == ""


def test_a_clean_copy_of_each_folder_loads(adapter, lineage, universal, tmp_path):
    """The folders above are refused for what was planted in them, not for themselves."""
    manifest = json.loads((adapter / MANIFEST).read_text())
    assert load_heads(adapter, manifest).labels == [5] and load_atlas(adapter, manifest) is not None
    assert read_lineage(lineage).stage == 1
    assert read_universal(universal).record.tasks[0].value == 5


def test_lineage_add_never_copies_a_planted_link_into_the_lineage(capsys, tmp_path, sample_image_path,
                                                                  sample_labels_path):
    """The reported attack: a link planted as ``retention/task-99.safetensors`` was copied into the new stage's
    folder as a plain 0644 file holding the link's target."""
    folder = tmp_path / "lineage"
    code, _, err = run_cli(capsys, "lineage", "create", folder, "--iterations", "2", "--max-slices", "2",
                           "--retain", "1")
    assert code == 0, err
    (tmp_path / "secret.key").write_bytes(SECRET)
    planted = folder / "retention" / "task-99.safetensors"
    planted.symlink_to(tmp_path / "secret.key")
    before = digest(folder)
    code, _, err = run_cli(capsys, "lineage", "add", folder, "--image", sample_image_path, "--labels",
                           sample_labels_path, "--label", 5, "--name", "liver", "--device", "cpu", "--quiet")
    assert code == 2 and f"{planted}: symbolic link" in err, err
    assert planted.is_symlink() and digest(folder) == before
    assert not any(SECRET in p.read_bytes() for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def test_a_lineage_changed_while_a_stage_trained_is_checked_again_before_copying(lineage, tmp_path):
    """Between reading a lineage and writing its next stage (minutes of training), a link may be planted or a
    retained file swapped: the copy refuses both and the lineage stays as it was."""
    copy = tmp_path / "abdomen"
    shutil.copytree(lineage, copy)
    loaded = read_lineage(copy)
    record = loaded.record.model_copy(deep=True)
    (tmp_path / "secret.key").write_bytes(SECRET)
    (copy / "retention" / "task-99.safetensors").symlink_to(tmp_path / "secret.key")
    before = digest(copy)
    with pytest.raises(InputError, match="task-99.safetensors: symbolic link"):
        write_lineage(copy, record, {"mask_decoder.w": torch.zeros(4)}, {}, keep_from=loaded)
    assert digest(copy) == before
    (copy / "retention" / "task-99.safetensors").unlink()
    (copy / "retention" / "task-01.safetensors").write_bytes(SECRET)  # swapped after it was read
    before = digest(copy)
    with pytest.raises(InputError, match="task-01.safetensors: checksum does not match"):
        write_lineage(copy, record, {"mask_decoder.w": torch.zeros(4)}, {}, keep_from=loaded)
    assert digest(copy) == before and sorted(p.name for p in tmp_path.iterdir()) == ["abdomen", "secret.key"]


def flip_inside_tensor_data(path):
    """Flip one byte in the middle of a safetensors file's tensor data (after its header): the file still
    parses, only its checksum can tell."""
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    data[(start + len(data)) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    load_file(str(path))


def change_one_voxel(path):
    """Rewrite an image file with one voxel changed: a valid image, only its checksum can tell."""
    image = sitk.ReadImage(str(path))
    image[1, 1, 1] = image[1, 1, 1] + 1
    sitk.WriteImage(image, str(path), useCompression=True)


@pytest.mark.parametrize("name", [WEIGHTS, HEADS, ATLAS_FILES["image"], ATLAS_FILES["labels"]])
def test_a_byte_changed_inside_a_file_that_still_parses_is_refused_by_name(adapter, tmp_path, name):
    copy = tmp_path / "model"
    shutil.copytree(adapter, copy)
    (flip_inside_tensor_data if name.endswith(".safetensors") else change_one_voxel)(copy / name)
    manifest = json.loads((copy / MANIFEST).read_text())
    load = {WEIGHTS: lambda: load_adapter(copy), HEADS: lambda: load_heads(copy, manifest)}.get(
        name, lambda: load_atlas(copy, manifest))
    with pytest.raises(InputError, match=f"{name}: checksum does not match"):
        load()


@pytest.mark.parametrize("target", ["model_delta.safetensors", "retention/task-01.safetensors"])
def test_a_byte_changed_inside_a_lineage_tensor_is_refused(lineage, tmp_path, capsys, target):
    copy = tmp_path / "abdomen"
    shutil.copytree(lineage, copy)
    flip_inside_tensor_data(copy / target)
    code, _, err = run_cli(capsys, "lineage", "show", copy)
    assert code == 2 and f"{copy / target}: checksum does not match" in err


def test_a_byte_changed_inside_the_universal_weights_is_refused(universal, tmp_path, capsys):
    copy = tmp_path / "model"
    shutil.copytree(universal, copy)
    flip_inside_tensor_data(copy / "weights.safetensors")
    code, _, err = run_cli(capsys, "universal", "show", copy)
    assert code == 2 and f"{copy / 'weights.safetensors'}: checksum does not match" in err


def test_an_adapter_delta_changed_inside_is_refused(adapter, tmp_path):
    """The lineage delta an adapter carries (base_delta.safetensors) is checked like the rest."""
    copy = tmp_path / "model"
    shutil.copytree(adapter, copy)
    save_file({"mask_decoder.w": torch.ones(4)}, str(copy / BASE_DELTA))
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["base_delta"] = {"sha256": hashlib.sha256((copy / BASE_DELTA).read_bytes()).hexdigest()}
    (copy / MANIFEST).write_text(json.dumps(manifest))
    flip_inside_tensor_data(copy / BASE_DELTA)
    with pytest.raises(InputError, match=f"{BASE_DELTA}: checksum does not match"):
        load_adapter(copy)


MALFORMED = [  # (what to change in universal.json, the field the error names)
    (lambda r: r["network"].update(width=1_000_000), "network.width: Input should be less than or equal to 256"),
    (lambda r: r["network"].update(width=100), "network.width: Input should be a multiple of 8"),
    (lambda r: r["network"].update(width=0), "network.width"),
    (lambda r: r["network"].update(in_channels=10 ** 9), "network.in_channels"),
    (lambda r: r["network"].update(task_tokens=100_000), "network.task_tokens"),
    (lambda r: r["network"].update(modality_tokens=-1), "network.modality_tokens"),
    (lambda r: r["network"].update(heads=3), "network.heads"),
    (lambda r: r["network"].update(backbone="mystery"), "network.backbone"),
    (lambda r: r["network"].update(fusion="sometimes"), "network.fusion"),
    (lambda r: r["network"].update(depth=9), "network.depth"),
    (lambda r: r.update(network=[1, 2]), "field network"),
    (lambda r: r["tasks"][0].update(value=70000), "tasks.0.value: Input should be less than or equal to 65535"),
    (lambda r: r["tasks"][0].update(value=0), "tasks.0.value"),
    (lambda r: r["tasks"][0].update(value="five"), "tasks.0.value"),
    (lambda r: r["tasks"][0].update(name="a.b"), "tasks.0.name"),
    (lambda r: r["tasks"].append(dict(r["tasks"][0], name="other")), "label values must be unique"),
    (lambda r: r["tasks"].extend(dict(r["tasks"][0], name=f"t{n}", value=n + 10) for n in range(300)),
     "tasks: List should have at most 255 items"),
    (lambda r: r.update(modalities=["CT", "CT"]), "modalities: Value error, modality names must be unique"),
    (lambda r: r.update(modalities=[f"M{n}" for n in range(100)]), "modalities: List should have at most 64"),
    (lambda r: r.update(modalities="CT"), "field modalities"),
]


@pytest.mark.parametrize("tamper, expected", MALFORMED)
def test_a_malformed_universal_model_is_exit_2_naming_the_field(universal, tmp_path, capsys, small_case, tamper,
                                                                  expected):
    copy = tmp_path / "model"
    shutil.copytree(universal, copy)
    record = json.loads((copy / "universal.json").read_text())
    tamper(record)
    (copy / "universal.json").write_text(json.dumps(record))
    code, out, err = run_cli(capsys, "universal", "show", copy)
    assert code == 2 and f"{copy / 'universal.json'}: field " in err and expected in err, err
    code, out, err = run_cli(capsys, "predict", small_case[0], "--model", copy, "-o", tmp_path / "out.nii.gz",
                             "--device", "cpu", "--quiet")
    assert code == 2 and expected in err, err
    assert not (tmp_path / "out.nii.gz").exists()


def test_a_universal_model_predicts_with_the_schema_in_place(universal, tmp_path, capsys, small_case):
    """The tiny model above passes its own schema and predicts (so the refusals above are the tampering's)."""
    code, _, err = run_cli(capsys, "predict", small_case[0], "--model", universal, "-o", tmp_path / "out.nii.gz",
                           "--device", "cpu", "--quiet")
    assert code == 0, err
    assert set(np.unique(read_volume(tmp_path / "out.nii.gz", label=True).array)) <= {0, 5}


def test_a_universal_model_that_would_be_refused_is_never_written(universal, tmp_path):
    model = read_universal(universal)
    model.record.tasks[0].value = 70000  # as a bug in training could leave it
    with pytest.raises(InputError, match=r"tasks\.0\.value"):
        write_universal(tmp_path / "model", model)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture()
def cohort(tmp_path, small_case):
    """Two images in ``in/`` and an output folder ``out/``, a CSV list of the images."""
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    for name in ("a.nrrd", "b.nrrd"):
        shutil.copy(small_case[0], tmp_path / "in" / name)
    return tmp_path


def write_list(path, images):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image"])
        writer.writerows([str(image)] for image in images)
    return path


@pytest.mark.parametrize("model", ["adapter", "universal"])
def test_a_batch_never_writes_its_summary_over_its_own_list(request, capsys, cohort, model):
    listing = write_list(cohort / "out" / "summary.csv", [cohort / "in" / "a.nrrd", cohort / "in" / "b.nrrd"])
    before = digest(cohort)
    code, _, err = run_cli(capsys, "predict", "--batch", listing, "--model", request.getfixturevalue(model), "-o",
                           cohort / "out", "--device", "cpu", "--quiet")
    assert code == 2 and f"{listing} would overwrite the input {listing}" in err, err
    assert digest(cohort) == before


@pytest.mark.parametrize("linked", ["list", "image"])
def test_a_batch_output_hard_linked_to_an_input_is_refused(capsys, cohort, universal, linked):
    listing = write_list(cohort / "list.csv", [cohort / "in" / "a.nrrd"])
    source, output = ((listing, cohort / "out" / "summary.csv") if linked == "list"
                      else (cohort / "in" / "a.nrrd", cohort / "out" / "a.nrrd"))
    os.link(source, output)
    before = digest(cohort)
    code, _, err = run_cli(capsys, "predict", "--batch", listing, "--model", universal, "-o", cohort / "out",
                           "--device", "cpu", "--quiet")
    assert code == 2 and f"{output} would overwrite the input {source}" in err, err
    assert digest(cohort) == before


@pytest.mark.parametrize("row, expected", [
    ("in", "is a folder; expected a NIfTI, NRRD or MetaImage image file"),
    ("/etc/passwd", "is not an image file name; expected a NIfTI, NRRD or MetaImage image file"),
])
def test_a_batch_row_naming_a_folder_or_a_non_image_says_what_was_expected(capsys, cohort, universal, row,
                                                                           expected):
    listing = write_list(cohort / "list.csv", [cohort / "in" / "a.nrrd", row])
    code, _, err = run_cli(capsys, "predict", "--batch", listing, "--model", universal, "-o", cohort / "out",
                           "--device", "cpu", "--quiet")
    assert code == 2 and f"--batch {listing} row 3: " in err and expected in err, err
    assert list((cohort / "out").iterdir()) == []


def test_a_failed_volume_write_leaves_the_old_output_and_no_partial_file(tmp_path, monkeypatch):
    """Writes go to a temporary file renamed over the target: a write that fails midway (disk full, killed) leaves
    the old output whole and nothing at the target's name or beside it."""
    target = tmp_path / "out.nii.gz"
    write_volume(tiny_volume(True), target)
    before = digest(tmp_path)

    def fail_midway(image, name, *args, **kwargs):
        with open(name, "wb") as handle:
            handle.write(b"\x1f\x8b partial")
        raise RuntimeError("No space left on device")

    monkeypatch.setattr(sitk, "WriteImage", fail_midway)
    with pytest.raises(RuntimeError, match="No space left"):
        write_volume(tiny_volume(False), target)
    assert digest(tmp_path) == before and [p.name for p in tmp_path.iterdir()] == ["out.nii.gz"]


def test_a_failed_adapter_save_leaves_the_old_adapter_and_no_partial_folder(adapter, tmp_path, monkeypatch):
    """The atlas is written last: failing there, after the weights and heads were written, must leave the adapter
    folder that was there untouched."""
    import medadapt.artifacts as artifacts
    copy = tmp_path / "model"
    shutil.copytree(adapter, copy)
    before = digest(tmp_path)

    def fail_midway(volume, path):
        path.write_bytes(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(artifacts, "write_volume", fail_midway)
    with pytest.raises(OSError, match="No space left"):
        save_adapter(copy, StandInBackend(), AdaptConfig(), {}, heads=HeadSet("linear-probe", "embedding", 8, [5]),
                     atlas=Atlas(tiny_volume(False), tiny_volume(True)))
    assert digest(tmp_path) == before and [p.name for p in tmp_path.iterdir()] == ["model"]


@pytest.mark.parametrize("kind", ["universal", "lineage"])
def test_a_failed_save_leaves_the_old_universal_model_or_lineage(request, tmp_path, monkeypatch, kind):
    copy = tmp_path / "model"
    shutil.copytree(request.getfixturevalue(kind), copy)
    if kind == "universal":
        folder_module, save = universal_folder, lambda: write_universal(copy, read_universal(copy))
    else:
        record = read_lineage(copy).record.model_copy(deep=True)
        folder_module, save = lineage_folder, lambda: write_lineage(copy, record, {"mask_decoder.w": torch.zeros(4)})
    before = digest(tmp_path)

    def fail_midway(tensors, name, *args, **kwargs):
        open(name, "wb").write(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(folder_module, "save_file", fail_midway)
    with pytest.raises(OSError, match="No space left"):
        save()
    assert digest(tmp_path) == before and [p.name for p in tmp_path.iterdir()] == ["model"]


@pytest.mark.parametrize("name", ["atlas_image.nii.gz", "atlas_labels.nii.gz"])
def test_predict_never_writes_over_a_file_of_its_own_model(capsys, adapter, tmp_path, name):
    """``-o MODEL/atlas_image.nii.gz`` would break the adapter it reads: refused (naming the option) before the
    model loads."""
    model = tmp_path / "model"
    shutil.copytree(adapter, model)
    image = tmp_path / "image.nrrd"
    write_volume(tiny_volume(False), image)
    before = digest(model)
    code, _, err = run_cli(capsys, "predict", image, "--model", model, "-o", model / name, "--device", "cpu")
    assert code == 2 and f"would overwrite the input {model / name} (--model {name})" in err, err
    assert digest(model) == before
