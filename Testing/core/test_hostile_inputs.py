"""Hostile and careless input to the command line: each case exits with the documented code and one line
naming the file or option, leaves every input byte-identical and writes no output."""

import hashlib
import os

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import oblique_image

from medadapt.cli.main import main
from medadapt.io.volume import read_volume


def digest(folder):
    """SHA-256 of every file under ``folder`` by relative path."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def case(tmp_path, small_case):
    """(folder, image, painting) of conftest's ``small_case``: label 2 painted on slices 3 and 8."""
    return (tmp_path, *small_case)


def refused(capsys, folder, argv, expected, code=2):
    """Run ``medadapt argv``; assert ``code``, one stderr line holding ``expected`` and ``folder`` unchanged."""
    before = digest(folder)
    result = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert result == code, err
    assert len(err.splitlines()) == 1 and expected in err, err
    assert digest(folder) == before
    return err


def write_labels(folder, name, array):
    sitk.WriteImage(oblique_image(array), str(folder / name))
    return folder / name


@pytest.mark.parametrize("target", ["image", "exemplars"])
def test_output_that_is_an_input_is_refused(capsys, case, target):
    folder, image, painted = case
    output = image if target == "image" else painted
    refused(capsys, folder, ["adapt", image, "--exemplars", painted, "-o", output, "--method", "fill"],
            f"would overwrite the input {output}")


def test_output_through_another_path_to_the_input_is_refused(capsys, case):
    folder, image, painted = case
    (folder / "link.nrrd").symlink_to(image)
    refused(capsys, folder, ["adapt", image, "--exemplars", painted, "-o", folder / "link.nrrd", "--method",
                             "fill"], "would overwrite the input")


@pytest.mark.parametrize("output, expected", [
    ("sub", "output is a folder"),
    ("out.png", "unknown output file type"),
    ("missing/out.nii.gz", "output folder"),
])
def test_bad_output_names_are_refused_before_any_work(capsys, case, output, expected):
    folder, image, painted = case
    (folder / "sub").mkdir()
    refused(capsys, folder, ["adapt", image, "--exemplars", painted, "-o", folder / output, "--method", "fill"],
            expected)


@pytest.mark.parametrize("save_model, expected", [
    ("adapter", "method 'fill' trains no model"),
    ("missing/adapter", "parent folder"),
])
def test_save_model_problems_stop_the_run_before_it_writes(capsys, case, save_model, expected):
    folder, image, painted = case
    method = "fill" if save_model == "adapter" else "zero-shot"
    refused(capsys, folder, ["adapt", image, "--exemplars", painted, "-o", folder / "out.nii.gz", "--method",
                             method, "--save-model", folder / save_model], expected)
    assert not (folder / "out.nii.gz").exists()


@pytest.mark.parametrize("option, value", [("--iterations", 10 ** 20), ("--iterations", 0), ("--rank", 100000),
                                           ("--synthetic", -1), ("--synthetic", 5000)])
def test_option_ranges(capsys, case, option, value):
    folder, image, painted = case
    refused(capsys, folder, ["adapt", image, "--exemplars", painted, "-o", folder / "out.nii.gz", option, value],
            f"{option}: expected")


@pytest.mark.parametrize("value, expected", [(-3, "negative values"), (70000, "above 65535")])
def test_label_values_outside_0_to_65535_are_refused(capsys, case, value, expected):
    folder, image, painted = case
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(painted))).astype(np.int32)
    array[array == 2] = value
    bad = write_labels(folder, "bad.nii.gz", array)
    refused(capsys, folder, ["adapt", image, "--exemplars", bad, "-o", folder / "out.nii.gz", "--method", "fill"],
            expected)


def test_an_image_given_as_exemplars_gets_a_hint(capsys, case):
    folder, _, _ = case
    ct = np.random.default_rng(1).normal(40, 300, (12, 40, 48)).astype(np.int16)
    image = write_labels(folder, "wide.nrrd", ct)
    refused(capsys, folder, ["adapt", image, "--exemplars", image, "-o", folder / "out.nii.gz", "--method",
                             "fill"], "is this an image rather than a label map?")


def test_large_label_values_are_kept_exactly(capsys, case):
    folder, image, painted = case
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(painted))).astype(np.int32)
    array[array == 2] = 40000
    big = write_labels(folder, "big.nii.gz", array)
    assert main([str(a) for a in ["adapt", image, "--exemplars", big, "-o", folder / "out.nii.gz", "--method",
                                  "fill", "--quiet"]]) == 0
    out = read_volume(folder / "out.nii.gz", label=True).array
    assert set(np.unique(out)) == {0, 40000} and (out[5] == 40000).any()


def test_batch_output_folder_that_is_the_input_folder_is_refused(capsys, case, tmp_path_factory):
    folder, image, _ = case
    cohort = tmp_path_factory.mktemp("cohort")
    (cohort / "a.nrrd").write_bytes(image.read_bytes())
    model = tmp_path_factory.mktemp("model")  # empty: the clash is found before the model is read
    refused(capsys, cohort, ["predict", "--batch", cohort, "--model", model, "-o", cohort], "would overwrite the input")


def test_predict_output_that_is_its_image_is_refused(capsys, case, tmp_path_factory):
    folder, image, _ = case
    model = tmp_path_factory.mktemp("model")
    refused(capsys, folder, ["predict", image, "--model", model, "-o", image], "would overwrite the input")


@pytest.mark.parametrize("option", ["--reference", "--points"])
def test_output_that_is_the_reference_or_the_points_file_is_refused(capsys, case, option):
    """Every input, not only the image and the painting, is never an output (a points file named like a label
    map is the only way ``-o`` can name it)."""
    folder, image, painted = case
    given = folder / ("reference.nii.gz" if option == "--reference" else "points.nrrd")
    given.write_bytes(painted.read_bytes() if option == "--reference" else b'{"points": []}')
    refused(capsys, folder, ["adapt", image, "--exemplars", painted, option, given, "-o", given, "--method",
                             "fill"], f"would overwrite the input {given} ({option})")


@pytest.mark.parametrize("command", ["adapt", "predict"])
def test_output_hard_linked_to_the_input_image_is_refused(capsys, case, tmp_path_factory, command):
    """A hard link is the input under another name: compared by inode, not by path."""
    folder, image, painted = case
    os.link(image, folder / "out.nrrd")
    prompt = (["--exemplars", painted, "--method", "fill"] if command == "adapt"
              else ["--model", tmp_path_factory.mktemp("model")])  # empty: the clash is found before the model
    refused(capsys, folder, [command, image, *prompt, "-o", folder / "out.nrrd"], f"would overwrite the input {image}")
    assert os.path.samefile(image, folder / "out.nrrd")


@pytest.mark.parametrize("points, expected", [
    ('{"points": [{"position": [1, 2, 3], "label": "liver"}]}', "'label' must be a label value"),
    ('{"points": [{"position": ["a", 2, 3]}]}', "position must be three finite numbers"),
    ('{"points": [{"position": [1, 2, 3], "positive": "yes"}]}', "'positive' must be true or false"),
    ('{"points": [{"position": [1, 2]}]}', "position must be three finite numbers"),
    ('{"points": {"position": [1, 2, 3]}}', "expected an object with a 'points' list"),
    ('not json', "not valid JSON"),
])
def test_malformed_points_files(capsys, case, points, expected):
    folder, image, painted = case
    (folder / "clicks.json").write_text(points)
    err = refused(capsys, folder, ["adapt", image, "--exemplars", painted, "-o", folder / "out.nii.gz",
                                   "--points", folder / "clicks.json", "--method", "fill"], "clicks.json: ")
    assert expected in err


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "metal"])
def test_unknown_device_is_refused_at_once(capsys, case, device):
    folder, image, painted = case
    refused(capsys, folder, ["adapt", image, "--exemplars", painted, "-o", folder / "out.nii.gz", "--device",
                             device], "--device: expected auto, cpu, cuda")


def test_an_absent_mps_device_is_refused_before_any_work(capsys, case):
    folder, image, painted = case  # this machine has no Apple GPU
    refused(capsys, folder, ["adapt", image, "--exemplars", painted, "-o", folder / "out.nii.gz", "--device",
                             "mps"], "--device mps: PyTorch's Apple Metal backend is not available")


def test_a_painting_smaller_than_a_model_pixel_still_trains():
    from medadapt.slices.frame import SliceFrame
    frame = SliceFrame((512, 512), (0.7, 0.7), 256)
    masks = np.zeros((2, 512, 512), bool)
    masks[0, 100, 200] = True  # one voxel: a quarter of a frame pixel
    masks[1, 100:140, 50:90] = True
    converted = frame.mask_to_frame(masks)
    assert converted[0].sum() == 1 and converted[0, 0, 50, 100] == 1
    assert converted[1].sum() == 400  # ordinary masks are resized as before


def test_a_constant_image_is_refused(capsys, case):
    folder, _, painted = case
    flat = write_labels(folder, "flat.nrrd", np.full((12, 40, 48), 7, np.int16))
    refused(capsys, folder, ["adapt", flat, "--exemplars", painted, "-o", folder / "out.nii.gz", "--method",
                             "zero-shot"], "constant image")


def test_an_unexpected_failure_is_one_line_and_exit_1_with_the_traceback_under_debug(capsys, case, monkeypatch):
    import medadapt.pipeline

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")
    monkeypatch.setattr(medadapt.pipeline, "adapt", broken)
    folder, image, painted = case
    argv = ["adapt", image, "--exemplars", painted, "-o", folder / "out.nii.gz"]
    err = refused(capsys, folder, argv, "internal error: ZeroDivisionError: a bug", code=1)
    assert "Traceback" not in err
    assert main(["--debug"] + [str(a) for a in argv]) == 1
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize("moment", ["start-up", "mid-run"])
def test_ctrl_c_exits_130_and_writes_nothing(capsys, case, monkeypatch, moment):
    import medadapt.cli.commands
    import medadapt.pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    if moment == "start-up":
        monkeypatch.setattr(medadapt.cli.commands, "adapt_config", interrupted)
    else:  # during training: the progress callback is where a real Ctrl-C lands between steps
        monkeypatch.setattr(medadapt.cli.commands, "TqdmProgress", lambda enabled: _interrupt_at("adapt"))
    folder, image, painted = case
    refused(capsys, folder, ["adapt", image, "--exemplars", painted, "-o", folder / "out.nii.gz", "--method",
                             "lora", "--iterations", "5", "--synthetic", "0", "--save-model", folder / "model"],
            "cancelled; nothing was written", code=130)


class _interrupt_at:
    """Progress callback that raises KeyboardInterrupt when ``stage`` starts."""

    def __init__(self, stage):
        self.stage = stage

    def __call__(self, event):
        if event.stage == self.stage:
            raise KeyboardInterrupt

    def close(self):
        pass


@pytest.mark.parametrize("name", ["nan.nii.gz", "nan.nii", "nan.nrrd", "nan.mha"])
def test_nan_voxels_are_refused_in_every_format(capsys, case, name):
    folder, image, painted = case
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(image))).astype(np.float32)
    array[4, 20, 20] = np.nan
    array[5, 20, 20] = np.inf
    bad = write_labels(folder, name, array)
    refused(capsys, folder, ["adapt", bad, "--exemplars", painted, "-o", folder / "out.nii.gz", "--method",
                             "fill"], f"{name}: image holds 2 NaN or inf voxels")


def write_dicom_series(folder, array, z_positions):
    """A CT DICOM series, one file per slice of ``array`` (z, y, x) at ``z_positions`` (mm)."""
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for n, z in enumerate(z_positions):
        image = sitk.GetImageFromArray(array[n:n + 1].astype(np.int16))
        image.SetSpacing((0.8, 0.8, 1.0))
        for tag, value in (("0008|0060", "CT"), ("0020|000d", "1.2.3.4"), ("0020|000e", "1.2.3.4.5"),
                           ("0020|0013", str(n + 1)), ("0020|0032", f"0\\0\\{z}"),
                           ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0008|0018", f"1.2.3.4.5.{n + 1}")):
            image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{n:03d}.dcm"))
        writer.Execute(image)
    return folder


def test_a_dicom_series_with_a_missing_slice_is_refused(capsys, case):
    folder, _, _ = case
    array = np.random.default_rng(2).normal(40, 300, (6, 40, 48))
    even = write_dicom_series(folder / "even", array, [0, 2.5, 5, 7.5, 10, 12.5])
    assert read_volume(even).array.shape == (6, 40, 48)
    gap = write_dicom_series(folder / "gap", array, [0, 2.5, 5, 10, 12.5, 15])
    labels = write_labels(folder, "dicom_labels.nii.gz", np.zeros((6, 40, 48), np.uint8))
    refused(capsys, folder, ["adapt", gap, "--exemplars", labels, "-o", folder / "out.nii.gz", "--method", "fill"],
            "DICOM slices are unevenly spaced (a gap of 5 mm where 2.5 mm is typical)")


@pytest.mark.parametrize("name, content, expected", [
    ("zero.nii.gz", b"", "unreadable or truncated image file"),
    ("text.nrrd", b"hello, I am not an image\n", "unreadable or truncated image file"),
    ("noise.nii.gz", bytes(np.random.default_rng(3).integers(0, 256, 5000, dtype=np.uint8)),
     "unreadable or truncated image file"),
    ("missing.nii.gz", None, "no such file or folder"),
])
def test_unreadable_images(capsys, case, name, content, expected):
    folder, _, painted = case
    if content is not None:
        (folder / name).write_bytes(content)
    refused(capsys, folder, ["adapt", folder / name, "--exemplars", painted, "-o", folder / "out.nii.gz",
                             "--method", "fill"], f"{name}: {expected}")


@pytest.mark.parametrize("checkpoint, expected", [
    ("random.pth", "random.pth"),
    ("pickle.pth", "pickle.pth"),
    ("missing.pth", "missing.pth"),
])
def test_bad_checkpoints_are_refused_by_name(capsys, case, checkpoint, expected):
    import torch
    folder, image, painted = case
    if checkpoint == "random.pth":
        (folder / checkpoint).write_bytes(bytes(np.random.default_rng(4).integers(0, 256, 4096, dtype=np.uint8)))
    elif checkpoint == "pickle.pth":
        torch.save({"model": np.random.default_rng}, folder / checkpoint)  # code, not tensors
    refused(capsys, folder, ["adapt", image, "--exemplars", painted, "-o", folder / "out.nii.gz", "--method",
                             "zero-shot", "--checkpoint", folder / checkpoint], expected)


def test_two_runs_writing_one_output_leave_one_complete_file(case):
    import subprocess
    import sys
    folder, image, painted = case
    command = [sys.executable, "-m", "medadapt.cli", "adapt", str(image), "--exemplars", str(painted), "-o",
               str(folder / "out.nii.gz"), "--method", "fill", "--quiet"]
    runs = [subprocess.Popen(command, stderr=subprocess.PIPE) for _ in range(2)]
    assert [run.wait(timeout=300) for run in runs] == [0, 0]
    out = read_volume(folder / "out.nii.gz", label=True)
    assert set(np.unique(out.array)) == {0, 2}
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []  # no temporary file left


@pytest.mark.parametrize("change, expected", [
    ("size", "grid differs from the image grid (size"),
    ("spacing", "grid differs from the image grid (spacing"),
    ("direction", "grid differs from the image grid (direction"),
])
def test_exemplar_and_reference_grids_must_match_the_image(capsys, case, change, expected):
    folder, image, painted = case
    labels = sitk.ReadImage(str(painted))
    if change == "size":
        labels = labels[:, :, :11]
    elif change == "spacing":
        labels.SetSpacing((1.0, 1.0, 1.0))
    else:
        labels.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, 1))
    sitk.WriteImage(labels, str(folder / "other.nii.gz"))
    for option in ("--exemplars", "--reference"):
        argv = (["adapt", image, "--exemplars", folder / "other.nii.gz"] if option == "--exemplars" else
                ["adapt", image, "--exemplars", painted, "--reference", folder / "other.nii.gz"])
        refused(capsys, folder, argv + ["-o", folder / "out.nii.gz", "--method", "fill"], expected)


@pytest.mark.parametrize("components", ["vector", "4d-series"])
def test_multi_component_and_4d_images_are_refused(capsys, case, components):
    folder, _, painted = case
    if components == "vector":
        image = sitk.GetImageFromArray(np.zeros((12, 40, 48, 3), np.uint8), isVector=True)
        expected = "expected one component per voxel, got 3"
    else:
        image = sitk.JoinSeries([sitk.GetImageFromArray(np.zeros((12, 40, 48), np.int16))] * 3)
        expected = "expected a 3D image, got 4D"
    sitk.WriteImage(image, str(folder / "odd.nrrd"))
    refused(capsys, folder, ["adapt", folder / "odd.nrrd", "--exemplars", painted, "-o", folder / "out.nii.gz",
                             "--method", "fill"], expected)


@pytest.mark.parametrize("options, expected", [
    (["--slices", "3,x"], "--slices: expected comma-separated slice numbers"),
    (["--slices", "3,99"], "--slices: [99] outside 0..11"),
    (["--slices", "5,6"], "no annotated slice among [5, 6]"),
    (["--axis", "w"], "--axis: expected one of x, y, z"),
    (["--labels", "two"], "--labels: expected comma-separated integers"),
    (["--labels", "9"], "label(s) [9] not found"),
    (["--method", "magic"], "--method: expected one of"),
    (["--between", "both"], None),
])
def test_bad_option_values_name_the_option(capsys, case, options, expected):
    folder, image, painted = case
    argv = ["adapt", image, "--exemplars", painted, "-o", folder / "out.nii.gz"] + options
    if expected is None:  # argparse's own choice check: exit 2 with its usage line, nothing written
        before = digest(folder)
        with pytest.raises(SystemExit) as stop:
            main([str(a) for a in argv])
        assert stop.value.code == 2 and "--between: invalid choice" in capsys.readouterr().err
        assert digest(folder) == before
        return
    refused(capsys, folder, argv, expected)


@pytest.mark.parametrize("points, expected", [
    ('{"coordinates": "XYZ", "points": [{"position": [1, 2, 3]}]}', "'coordinates' must be RAS, LPS or voxel"),
    ('{"coordinates": "voxel", "points": [{"position": [100, 2, 3]}]}', "lies outside the image"),
    ('{"points": [{"positive": true}]}', "every point needs a 'position'"),
])
def test_points_outside_or_in_unknown_coordinates(capsys, case, points, expected):
    folder, image, painted = case
    (folder / "clicks.json").write_text(points)
    refused(capsys, folder, ["adapt", image, "--exemplars", painted, "-o", folder / "out.nii.gz", "--points",
                             folder / "clicks.json", "--method", "fill"], expected)


@pytest.mark.parametrize("argv, expected", [
    (["predict", "--model", "M", "-o", "out.nii.gz"], "give either one IMAGE or --batch"),
    (["predict", "IMG", "--batch", "B", "--model", "M", "-o", "out"], "give either one IMAGE or --batch"),
    (["predict", "--batch", "B", "--points", "P", "--model", "M", "-o", "out"], "--batch: --exemplars and --points"),
])
def test_predict_argument_combinations(capsys, case, argv, expected):
    folder, image, _ = case
    argv = [str(image) if a == "IMG" else str(folder) if a in ("B", "M") else a for a in argv]
    refused(capsys, folder, argv, expected)
