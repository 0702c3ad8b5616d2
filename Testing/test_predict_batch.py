"""``medadapt predict`` without prompts (FSEFT heads; lora with an atlas), and ``--batch`` over a folder or a
CSV file."""

import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import LIVER, liver_crop

from medadapt.cli.predict_batch import batch_inputs, output_paths
from medadapt.cli.main import main
from medadapt.errors import InputError
from medadapt.io.volume import read_volume, write_volume

PAINTED = [0, 3]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def model(sample, tmp_path_factory):
    """A spatial adapter saved from a 4-slice crop painted on 2 slices, with the crop and its segmentation."""
    folder = tmp_path_factory.mktemp("batch")
    image, liver = liver_crop(sample, slice(12, 16))
    painted = liver.with_array(np.where(np.isin(np.arange(4), PAINTED)[:, None, None], liver.array, 0))
    write_volume(image, folder / "crop.nii.gz")
    write_volume(painted, folder / "painted.nii.gz")
    code = main([str(a) for a in ("adapt", folder / "crop.nii.gz", "--exemplars", folder / "painted.nii.gz",
                                  "--method", "spatial-adapter", "--synthetic", "0", "--iterations", "40",
                                  "-o", folder / "adapted.nii.gz", "--save-model", folder / "model", "--quiet")])
    assert code == 0
    return folder, image, liver


def test_batch_writes_one_output_per_input_and_skips_a_corrupt_file(capsys, tmp_path, model):
    folder, image, liver = model
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_volume(image, inputs / "a.nii.gz")
    data = (folder / "crop.nii.gz").read_bytes()
    (inputs / "bad.nii.gz").write_bytes(data[: len(data) // 2])
    (inputs / "notes.txt").write_text("not an image")
    code, err = run(capsys, "predict", "--batch", inputs, "--model", folder / "model", "-o", tmp_path / "out",
                    "--quiet")
    assert code == 2 and "1 of 2 inputs failed" in err and err.count("\n") == 1
    with (tmp_path / "out" / "summary.csv").open() as handle:
        rows = {row["input"].split("/")[-1]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"a.nii.gz", "bad.nii.gz"}
    assert rows["a.nii.gz"]["status"] == "ok" and float(rows["a.nii.gz"]["seconds"]) > 0
    assert rows["bad.nii.gz"]["status"] == "failed" and "truncated" in rows["bad.nii.gz"]["error"]
    out = read_volume(tmp_path / "out" / "a.nii.gz", label=True)
    adapted = read_volume(folder / "adapted.nii.gz", label=True)
    assert out.geometry.matches(image.geometry)
    hidden = [s for s in range(4) if s not in PAINTED]  # the reloaded heads predict exactly as the trained ones
    np.testing.assert_array_equal(out.array[hidden], adapted.array[hidden])
    truth = liver.array[hidden] == LIVER
    assert 2 * np.count_nonzero((out.array[hidden] == LIVER) & truth) / ((out.array[hidden] == LIVER).sum()
                                                                          + truth.sum()) > 0.8


def test_predict_one_image_without_prompts(capsys, tmp_path, model, sample):
    folder, _, _ = model
    image, _ = liver_crop(sample, slice(18, 20))
    write_volume(image, tmp_path / "other.nrrd")
    code, err = run(capsys, "predict", tmp_path / "other.nrrd", "--model", folder / "model", "-o",
                    tmp_path / "seg.nrrd", "--quiet")
    assert code == 0, err
    out = read_volume(tmp_path / "seg.nrrd", label=True)
    assert out.geometry.matches(image.geometry) and (out.array == LIVER).any()


def test_batch_inputs_from_csv_and_bad_sources(tmp_path, capsys, model):
    (tmp_path / "list.csv").write_text("image,note\nscans/a.nii.gz,x\n/abs/b.nrrd,y\n,empty\n")
    assert batch_inputs(tmp_path / "list.csv") == [tmp_path / "scans" / "a.nii.gz", Path("/abs/b.nrrd")]
    (tmp_path / "wrong.csv").write_text("path\na.nii.gz\n")
    with pytest.raises(InputError, match="wrong.csv: no 'image' column"):
        batch_inputs(tmp_path / "wrong.csv")
    with pytest.raises(InputError, match="no NIfTI, NRRD or MHA image found"):
        batch_inputs(tmp_path)
    assert [p.name for p in output_paths([tmp_path / "x" / "a.nii.gz", tmp_path / "y" / "a.nii.gz"], tmp_path)] \
        == ["a.nii.gz", "a_2.nii.gz"]
    folder, _, _ = model
    code, err = run(capsys, "predict", "--model", folder / "model", "-o", tmp_path / "o.nii.gz")
    assert code == 2 and "give either one IMAGE or --batch" in err
    code, err = run(capsys, "predict", "--batch", tmp_path / "list.csv", "--model", folder / "model", "-o",
                    tmp_path / "out", "--quiet")
    assert code == 2 and "2 of 2 inputs failed" in err


def test_lora_saved_with_an_atlas_predicts_a_batch_without_prompts(capsys, tmp_path, model):
    folder, image, liver = model
    code, err = run(capsys, "adapt", folder / "crop.nii.gz", "--exemplars", folder / "painted.nii.gz", "--method",
                    "lora", "--iterations", "3", "--synthetic", "0", "-o", tmp_path / "adapted.nii.gz",
                    "--save-model", tmp_path / "lora", "--atlas", "--quiet")
    assert code == 0, err
    assert (tmp_path / "lora" / "atlas_image.nii.gz").is_file()
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_volume(image, inputs / "a.nii.gz")
    code, err = run(capsys, "predict", "--batch", inputs, "--model", tmp_path / "lora", "-o", tmp_path / "out",
                    "--quiet")
    assert code == 0, err
    out = read_volume(tmp_path / "out" / "a.nii.gz", label=True)
    truth = liver.array == LIVER
    found = out.array == LIVER
    assert out.geometry.matches(image.geometry)
    assert 2 * np.count_nonzero(found & truth) / (found.sum() + truth.sum()) > 0.8
