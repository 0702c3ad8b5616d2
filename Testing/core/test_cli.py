"""The ``medadapt`` command line: exit codes and one-line errors naming the file; outputs on the input grid."""

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import oblique_image

from medadapt.cli.main import main
from medadapt.io.volume import read_volume


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_fill_writes_a_labelmap_on_exactly_the_input_grid(capsys, tmp_path, small_case):
    image, labels = small_case
    code, err = run(capsys, "adapt", image, "--exemplars", labels, "-o", tmp_path / "out.nrrd", "--method",
                    "fill", "--quiet")
    assert code == 0, err
    out, source = read_volume(tmp_path / "out.nrrd", label=True), read_volume(image)
    assert out.geometry.matches(source.geometry, tol=1e-9)
    assert (out.array[5] == 2).sum() > 0 and set(np.unique(out.array)) == {0, 2}


@pytest.mark.parametrize("problem, expected", [
    ("2d", "flat.nii.gz: expected a 3D image, got 2D"),
    ("4d", "movie.nii.gz: expected a 3D image, got 4D"),
    ("grid", "moved.nii.gz: grid differs from the image grid (origin"),
    ("empty", "empty.nii.gz: no annotated slice"),
    ("nan", "nan.nrrd: image holds 1 NaN or inf voxels"),
    ("truncated", "truncated.nrrd.gz: unreadable or truncated image file"),
    ("label", "painted.nii.gz: label(s) [7] not found"),
    ("output", "output folder"),
    ("method", "--method: expected one of lora, zero-shot, fill"),
    ("atlas", "--no-atlas (a job's \"atlas\": false): only with --save-model"),
])
def test_bad_input_exits_2_with_a_one_line_message(capsys, tmp_path, small_case, problem, expected):
    image, labels = small_case
    out = tmp_path / "out.nii.gz"
    extra = []
    if problem == "2d":
        sitk.WriteImage(sitk.Image(8, 8, sitk.sitkInt16), str(tmp_path / "flat.nii.gz"))
        image = tmp_path / "flat.nii.gz"
    elif problem == "4d":
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 4, 5), np.int16), isVector=False),
                        str(tmp_path / "movie.nii.gz"))
        image = tmp_path / "movie.nii.gz"
    elif problem == "grid":
        moved = sitk.ReadImage(str(labels))
        moved.SetOrigin((0.0, 0.0, 0.0))
        sitk.WriteImage(moved, str(tmp_path / "moved.nii.gz"))
        labels = tmp_path / "moved.nii.gz"
    elif problem == "empty":
        sitk.WriteImage(oblique_image(np.zeros((12, 40, 48), np.uint8)), str(tmp_path / "empty.nii.gz"))
        labels = tmp_path / "empty.nii.gz"
    elif problem == "nan":
        array = sitk.GetArrayFromImage(sitk.ReadImage(str(image))).astype(np.float32)
        array[0, 0, 0] = np.nan
        sitk.WriteImage(oblique_image(array), str(tmp_path / "nan.nrrd"))
        image = tmp_path / "nan.nrrd"
    elif problem == "truncated":
        sitk.WriteImage(sitk.ReadImage(str(image)), str(tmp_path / "full.nrrd"))
        import gzip
        data = gzip.compress((tmp_path / "full.nrrd").read_bytes())
        (tmp_path / "truncated.nrrd.gz").write_bytes(data[: len(data) // 2])
        image = tmp_path / "truncated.nrrd.gz"
    elif problem == "label":
        extra = ["--labels", "7"]
    elif problem == "output":
        out = tmp_path / "no" / "such" / "out.nii.gz"
    elif problem == "method":
        extra = ["--method", "magic"]
    elif problem == "atlas":
        extra = ["--no-atlas"]
    code, err = run(capsys, "adapt", image, "--exemplars", labels, "-o", out, "--quiet", *extra)
    assert code == 2
    assert expected in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_requested_without_a_gpu_is_bad_input(capsys, tmp_path, small_case):
    image, labels = small_case
    code, err = run(capsys, "adapt", image, "--exemplars", labels, "-o", tmp_path / "o.nii.gz", "--device", "cuda")
    assert code == 2 and "--device cuda: no CUDA GPU" in err


def test_predict_needs_a_prompt_and_a_real_adapter_folder(capsys, tmp_path, small_case):
    image, _ = small_case
    code, err = run(capsys, "predict", image, "--model", tmp_path, "-o", tmp_path / "o.nii.gz")
    assert code == 2 and "no manifest.json" in err


def test_installed_entry_point_runs_and_points_json_errors_name_the_file(tmp_path, small_case):
    image, labels = small_case
    (tmp_path / "points.json").write_text(json.dumps({"coordinates": "RAS", "points": [{"positive": True}]}))
    child = subprocess.run([sys.executable, "-m", "medadapt.cli", "adapt", str(image), "--exemplars", str(labels),
                            "-o", str(tmp_path / "o.nii.gz"), "--points", str(tmp_path / "points.json")],
                           capture_output=True, text=True)
    assert child.returncode == 2
    assert "points.json: every point needs a 'position'" in child.stderr


def test_between_fill_takes_fill_between_painted_slices_and_the_model_beyond(capsys, tmp_path, small_case):
    image, labels = small_case
    runs = {"fill": ["--method", "fill"], "model": ["--method", "zero-shot", "--between", "model"],
            "mixed": ["--method", "zero-shot", "--between", "fill"]}
    for name, options in runs.items():
        code, err = run(capsys, "adapt", image, "--exemplars", labels, "-o", tmp_path / f"{name}.nrrd", *options,
                        "--device", "cpu", "--quiet")
        assert code == 0, err
    fill, model, mixed = (read_volume(tmp_path / f"{name}.nrrd", label=True).array for name in runs)
    np.testing.assert_array_equal(mixed[3:9], fill[3:9])  # painted slices 3 and 8 and Fill between them
    np.testing.assert_array_equal(mixed[:3], model[:3])  # beyond them: the model's outward walks
    np.testing.assert_array_equal(mixed[9:], model[9:])
    assert not np.array_equal(model[4:8], fill[4:8])
    with pytest.raises(SystemExit) as bad:
        run(capsys, "adapt", image, "--exemplars", labels, "-o", tmp_path / "x.nrrd", "--between", "both")
    assert bad.value.code == 2 and "--between: invalid choice: 'both'" in capsys.readouterr().err


def test_progress_keeps_one_line_per_stage():
    from medadapt.cli.progress_bar import TqdmProgress
    from medadapt.progress import Progress
    progress = TqdmProgress()
    for event in (Progress("encode slices", 1, 5), Progress("segment", 1, 2), Progress("encode slices", 3, 5),
                  Progress("train", 4, 10, loss=0.5), Progress("segment", 2, 2), Progress("encode slices", 5, 5)):
        progress(event)
    assert list(progress.bars) == ["encode slices", "segment", "train"]  # a returning stage reuses its line
    assert [bar.n for bar in progress.bars.values()] == [5, 2, 4]
    assert progress.bars["train"].postfix == "loss=0.500"
    progress(Progress("segment", 1, 3))  # a new round of a stage starts that line again
    assert (progress.bars["segment"].n, progress.bars["segment"].total) == (1, 3)
    progress.close()
    assert progress.bars == {}
