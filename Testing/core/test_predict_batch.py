"""``medadapt predict`` without prompts (FSEFT heads; lora with an atlas), and ``--batch`` over a folder or a
CSV file: retries, skipping finished outputs, and sharding over ``torchrun`` processes."""

import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import free_port, LIVER, liver_crop

from medadapt.cli.predict_batch import batch_inputs, finish_batch, output_paths, run_batch, shard
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
                    "--save-model", tmp_path / "lora", "--quiet")  # a lora model keeps its atlas by default
    assert code == 0, err
    assert (tmp_path / "lora" / "atlas_image.nii.gz").is_file()
    assert not any(name.startswith("atlas") for name in os.listdir(folder / "model"))  # heads keep none
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


def _summary(folder: Path) -> list[dict]:
    with (folder / "summary.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_a_failed_input_is_retried_once_and_the_batch_goes_on(tmp_path, sample, capsys):
    image, _ = liver_crop(sample, slice(12, 13))
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a.nii.gz", "broken.nii.gz", "flaky.nii.gz"):
        write_volume(image, inputs / name)
    tries: dict[str, int] = {}

    def segment_one(path: Path, output: Path) -> None:  # a real segmentation stand-in: thresholds and writes
        tries[path.name] = tries.get(path.name, 0) + 1
        if path.name == "broken.nii.gz" or (path.name == "flaky.nii.gz" and tries[path.name] == 1):
            raise RuntimeError(f"no luck with {path.name} on try {tries[path.name]}")
        volume = read_volume(path)
        write_volume(volume.with_array((volume.array > 0).astype(np.uint8)), output)

    rows = run_batch(batch_inputs(inputs), tmp_path / "out", segment_one, show_progress=False)
    assert tries == {"a.nii.gz": 1, "broken.nii.gz": 2, "flaky.nii.gz": 2}
    assert [(Path(r.input).name, r.status, r.attempts) for r in rows] == [
        ("a.nii.gz", "ok", 1), ("broken.nii.gz", "failed", 2), ("flaky.nii.gz", "ok", 2)]
    assert rows[1].error == "RuntimeError: no luck with broken.nii.gz on try 2" and rows[1].output == ""
    written = _summary(tmp_path / "out")
    assert [(Path(r["input"]).name, r["status"], r["attempts"]) for r in written] == [
        ("a.nii.gz", "ok", "1"), ("broken.nii.gz", "failed", "2"), ("flaky.nii.gz", "ok", "2")]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.nii.gz", "flaky.nii.gz", "summary.csv"]
    with pytest.raises(InputError, match=r"1 of 3 inputs failed \(first: RuntimeError: no luck with broken"):
        finish_batch(rows, tmp_path / "out")
    assert capsys.readouterr().out.startswith("wrote 2 of 3 outputs and ")
    assert shard(6, 0, 2) == [0, 2, 4] and shard(6, 1, 2) == [1, 3, 5] and shard(2, 2, 3) == []


def _cohort(sample, folder: Path) -> list[str]:
    """Six tiny inputs (one-slice crops of the sample CT), the fourth truncated: their names."""
    folder.mkdir()
    names = [f"case{i}.nii.gz" for i in range(6)]
    for i, name in enumerate(names):
        write_volume(liver_crop(sample, slice(10 + 2 * i, 11 + 2 * i))[0], folder / name)
    data = (folder / names[3]).read_bytes()
    (folder / names[3]).write_bytes(data[: len(data) // 2])
    return names


def test_two_torchrun_ranks_write_what_one_process_writes_and_a_rerun_skips_it(capsys, tmp_path, model, sample):
    folder, _, _ = model
    names = _cohort(sample, tmp_path / "in")
    common = ("predict", "--batch", tmp_path / "in", "--model", folder / "model", "--quiet")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in each torchrun process (OMP_NUM_THREADS=1): the same arithmetic
    try:
        code, err = run(capsys, *common, "-o", tmp_path / "one")
    finally:
        torch.set_num_threads(threads)
    assert code == 2 and "1 of 6 inputs failed" in err, err
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr",
                          "127.0.0.1", "--master-port", str(free_port()), "-m", "medadapt.cli",
                          *map(str, common), "-o", str(tmp_path / "two")],
                         capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=600)
    # rank 0 reports (its exit code 2 fails the launch), rank 1 (which segmented case3) says nothing
    assert two.returncode != 0 and two.stderr.count("1 of 6 inputs failed") == 1, two.stderr
    assert re.search(r"exitcode\s*:\s*2", two.stderr) and not re.search(r"rank\s*:\s*1\b", two.stderr)
    assert two.stdout.count("wrote 5 of 6 outputs") == 1, two.stdout
    expected = sorted(set(names) - {"case3.nii.gz"} | {"summary.csv"})
    assert sorted(os.listdir(tmp_path / "one")) == sorted(os.listdir(tmp_path / "two")) == expected  # no parts
    for name in set(expected) - {"summary.csv"}:
        a, b = (sitk.ReadImage(str(tmp_path / run / name)) for run in ("one", "two"))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
        assert read_volume(tmp_path / "one" / name).geometry.matches(read_volume(tmp_path / "two" / name).geometry)
        assert a.GetOrigin() == b.GetOrigin() and a.GetSpacing() == b.GetSpacing()
    rows = {run: [(Path(r["input"]).name, Path(r["output"]).name if r["output"] else "", r["status"], r["attempts"])
                  for r in _summary(tmp_path / run)] for run in ("one", "two")}
    assert rows["one"] == rows["two"] == [
        (n, "" if n == "case3.nii.gz" else n, "failed" if n == "case3.nii.gz" else "ok",
         "2" if n == "case3.nii.gz" else "1") for n in names]
    assert "truncated" in _summary(tmp_path / "two")[3]["error"]

    # a re-run leaves the finished outputs alone and only tries case3 again
    stamps = {n: (tmp_path / "one" / n).stat().st_mtime_ns for n in expected if n != "summary.csv"}
    time.sleep(0.05)
    code = main([str(a) for a in (*common, "-o", tmp_path / "one")])
    printed = capsys.readouterr()
    assert code == 2 and "1 of 6 inputs failed" in printed.err
    assert printed.out == (f"wrote 0 of 6 outputs and {tmp_path / 'one' / 'summary.csv'} (5 skipped: already in "
                           f"{tmp_path / 'one'})\n")
    assert {n: (tmp_path / "one" / n).stat().st_mtime_ns for n in stamps} == stamps
    again = _summary(tmp_path / "one")
    assert [(Path(r["input"]).name, r["status"], r["attempts"], r["seconds"]) for r in again] == [
        (n, "failed" if n == "case3.nii.gz" else "skipped", "2" if n == "case3.nii.gz" else "0",
         again[3]["seconds"] if n == "case3.nii.gz" else "0.0") for n in names]
    assert all(r["output"] == str(tmp_path / "one" / r["input"].split("/")[-1]) for r in again if r["status"] ==
               "skipped")
    # an output folder that is the inputs' folder is still refused, although its "outputs" all exist
    code, err = run(capsys, *common, "-o", tmp_path / "in")
    assert code == 2 and "would overwrite the input" in err
