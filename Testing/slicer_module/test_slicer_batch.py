"""The headless batch script, run in-process on a real scene (method 'fill' for speed)."""

import sys

import numpy as np

from slicer_fixtures import CT_IMAGE, REPO, needs_ct, reference_labels, scene  # noqa: F401
from medadapt.io.volume import read_volume, write_volume

sys.path.insert(0, str(REPO / "MedAdaptSlicer"))
import batch  # noqa: E402


@needs_ct
def test_batch_writes_a_label_map_on_the_image_grid(scene, tmp_path, capsys):
    labels = reference_labels()
    painted = np.zeros_like(labels)
    for z in (12, 20):
        painted[z][labels[z] == 5] = 5
        painted[z][labels[z] == 1] = 1
    image = read_volume(CT_IMAGE)
    write_volume(image.with_array(painted), tmp_path / "painted.nii.gz")
    out = tmp_path / "out.nii.gz"
    code = batch.main(["--image", str(CT_IMAGE), "--exemplars", str(tmp_path / "painted.nii.gz"),
                       "-o", str(out), "--method", "fill", "--quiet"])
    assert code == 0, capsys.readouterr().err
    result = read_volume(out, label=True)
    assert result.geometry.matches(image.geometry)
    assert set(np.unique(result.array)) == {0, 1, 5}
    np.testing.assert_array_equal(result.array[12], painted[12])
    assert (result.array[16] == 5).any() and not (result.array[25] == 5).any()


def test_batch_rejects_bad_input_with_exit_code_2(scene, tmp_path, capsys):
    assert batch.main(["-o", str(tmp_path / "x.nii.gz"), "--exemplars", "y"]) == 2
    assert "--image" in capsys.readouterr().err
    assert batch.main(["--image", str(tmp_path / "missing.nii.gz"), "--exemplars", "y", "-o",
                       str(tmp_path / "x.nii.gz"), "--axis", "z"]) == 2
    assert "--axis" in capsys.readouterr().err


def test_batch_refuses_options_it_cannot_honour_by_name(scene, tmp_path, capsys):
    for option in (["--slices", "3,4"], ["--reference", "r.nii.gz"], ["--no-atlas"], ["--pretrained-class", "3"],
                   ["--iterations", "0"]):
        assert batch.main(["--image", "ct.nii.gz", "--exemplars", "y", "-o", str(tmp_path / "x.nii.gz"),
                           *option]) == 2
        assert option[0] in capsys.readouterr().err
    assert not (tmp_path / "x.nii.gz").exists()
