"""``medadapt demo`` on (a crop of) the bundled sample with short training, and the overlay figure it draws."""

import numpy as np
import SimpleITK as sitk

from medadapt.cli.demo import IMAGE, LABELS, LIVER, PACKAGED_SAMPLE
from medadapt.cli.main import main
from medadapt.evaluation.figures import overlay_png
from medadapt.io.volume import read_volume


def test_demo_runs_every_method_and_writes_its_outputs(tmp_path, capsys):
    data = tmp_path / "sample"
    data.mkdir()
    for name in (IMAGE, LABELS):  # 8 liver slices of the sample (painted 1, 4 and 6) keep the test short
        sitk.WriteImage(sitk.ReadImage(str(PACKAGED_SAMPLE / name))[:, :, 12:20], str(data / name))
    assert main(["demo", "--out", str(tmp_path / "out"), "--data", str(data), "--device", "cpu", "--iterations",
                 "2", "--synthetic", "0", "--quiet"]) == 0
    printed = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in printed.splitlines() if line.split()[:1] in
            (["lora"], ["zero-shot"], ["fill"])}
    assert set(rows) == {"lora", "zero-shot", "fill"}
    assert all(0.5 < float(rows[m][1]) <= 1 for m in rows), printed
    segmentation = read_volume(tmp_path / "out" / "liver_lora.nii.gz", label=True)
    image = read_volume(data / IMAGE)
    assert segmentation.geometry == image.geometry and set(np.unique(segmentation.array)) == {0, LIVER}
    assert (tmp_path / "out" / "liver_overlay.png").stat().st_size > 10_000


def test_demo_names_a_folder_without_the_sample(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "out"), "--data", str(tmp_path), "--quiet"]) == 2
    assert f"--data: the sample ({IMAGE}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_overlay_draws_each_outline_in_its_colour(tmp_path):
    import matplotlib.image
    image = read_volume(PACKAGED_SAMPLE / IMAGE)
    labels = read_volume(PACKAGED_SAMPLE / LABELS, label=True)
    liver = image.with_array((labels.array == LIVER).astype(np.int16))
    empty = image.with_array(np.zeros(labels.array.shape, np.int16))
    path = overlay_png(tmp_path / "f.png", image, {"reference": liver, "nothing": empty}, [12, 15], (-160, 240),
                       given=[15])
    pixels = matplotlib.image.imread(path)[..., :3]
    pixels = pixels[: int(0.85 * len(pixels))]  # above the legend
    yellow = np.all(np.abs(pixels - np.array([1.0, 0xd4 / 255, 0.0])) < 0.05, axis=-1)
    cyan = np.all(np.abs(pixels - np.array([0.0, 0xe5 / 255, 1.0])) < 0.05, axis=-1)
    assert yellow.sum() > 200 and cyan.sum() == 0  # the first mask's outline is drawn, the empty one is not


def test_an_installed_wheel_carries_the_sample_and_the_model_catalogue(tmp_path):
    import subprocess
    import sys
    import zipfile
    import shutil
    core = tmp_path / "MedAdaptCore"  # a copy, so that the build leaves nothing in the checkout
    shutil.copytree(PACKAGED_SAMPLE.parents[2], core, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            str(core), "-w", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    names = zipfile.ZipFile(next(tmp_path.glob("medadapt-*.whl"))).namelist()
    assert {f"medadapt/sample/{IMAGE}", f"medadapt/sample/{LABELS}", "medadapt/backends/models.json"} <= set(names)
