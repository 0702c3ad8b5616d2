"""The grow referee (:mod:`medadapt.slices.grow_referee`): Slicer's Grow from seeds takes a structure whose hidden
interior painted slice it predicts better than registration does, and only then."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
from assertions import dice
from conftest import ANISOTROPIC_SPACING, OBLIQUE_DIRECTION, run_cli

from medadapt.io.exemplars import find_exemplars
from medadapt.io.intensity import intensity_window
from medadapt.io.volume import Volume, read_volume, write_volume
from medadapt.slices.registration import carry_between
from medadapt.slices.stack import slice_stack
from medadapt.slices.grow_referee import MARGIN, grow_held_out, grow_wins, interior_slices

pytest.importorskip("slicer", reason="the grow referee runs Slicer's Grow from seeds, which needs slicer-core")

PAINTED = [1, 5, 9]
"""Painted slices (z) of the 11-slice phantoms; 5 lies between the others (the filter ignores seeds on the
volume's first and last slices, so none is painted there)."""


def phantom(splits: bool, contrast: float) -> tuple[Volume, np.ndarray]:
    """(image, truth) on an oblique anisotropic grid: a disk on every slice, or (``splits``) two smaller disks on
    slices 4-6 that registration of the outer painted slices cannot make; ``contrast`` is the structure's
    brightness over noise of SD 20."""
    y, x = np.mgrid[0:64, 0:64]
    disk = lambda cy, cx, r: (y - cy) ** 2 + (x - cx) ** 2 <= r * r  # noqa: E731
    truth = np.zeros((11, 64, 64), np.int16)
    for s in range(11):
        truth[s] = (disk(32, 22, 7) | disk(32, 42, 7)) if splits and s in (4, 5, 6) else disk(32, 32, 11)
    array = np.random.default_rng(0).normal(0, 20, truth.shape) + contrast * truth
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing(ANISOTROPIC_SPACING)
    image.SetDirection(OBLIQUE_DIRECTION)
    return Volume.from_sitk(image), truth


def painted_exemplars(image: Volume, truth: np.ndarray):
    """The truth on :data:`PAINTED` only, as exemplars."""
    painted = np.zeros_like(truth)
    painted[PAINTED] = truth[PAINTED]
    return find_exemplars(image, image.with_array(painted), axis=0, slices=PAINTED)


def registration_held_out(image: Volume, truth: np.ndarray) -> float:
    """Dice of registration (MedAdapt's default gap filler) predicting slice 5 from painted slices 1 and 9."""
    painted = np.zeros(truth.shape, bool)
    painted[PAINTED] = truth[PAINTED] > 0
    stack = slice_stack(image, 0, intensity_window(image.array, painted))
    return dice(carry_between(stack, 1, truth[1] > 0, 9, truth[9] > 0)[5] > 0.5, truth[5] > 0)


def test_grow_predicts_a_hidden_slice_the_image_edge_draws_and_wins():
    image, truth = phantom(splits=True, contrast=400.0)
    exemplars = painted_exemplars(image, truth)
    assert interior_slices(exemplars, 1) == [5]
    held = grow_held_out(image.array, exemplars)
    registration = registration_held_out(image, truth)
    assert held[1][5] > 0.95 and registration < 0.8  # measured 1.0 and 0.61: registration cannot split the disk
    assert grow_wins(held[1], {5: registration})
    assert not grow_wins(held[1], {5: held[1][5] - MARGIN / 2})  # a tie keeps MedAdapt's result


def test_grow_loses_where_only_the_shape_carries_the_structure():
    image, truth = phantom(splits=False, contrast=0.0)  # no edge: the disk is noise like its surroundings
    held = grow_held_out(image.array, painted_exemplars(image, truth))
    registration = registration_held_out(image, truth)
    assert held[1][5] < registration - MARGIN  # measured 0.83 against 1.0
    assert not grow_wins(held[1], {5: registration})


def test_two_painted_slices_leave_nothing_to_referee():
    image, truth = phantom(splits=True, contrast=400.0)
    painted = np.zeros_like(truth)
    painted[[1, 9]] = truth[[1, 9]]
    exemplars = find_exemplars(image, image.with_array(painted), axis=0, slices=[1, 9])
    assert interior_slices(exemplars, 1) == [] and grow_held_out(image.array, exemplars) == {}


@pytest.mark.parametrize("referee", [True, False])
def test_adapt_gives_the_structure_to_grow_only_when_the_referee_says_so(capsys, tmp_path, referee):
    image, truth = phantom(splits=True, contrast=400.0)
    painted = np.zeros_like(truth)
    painted[PAINTED] = truth[PAINTED]
    write_volume(image, tmp_path / "image.nrrd")
    write_volume(image.with_array(painted), tmp_path / "painted.nrrd")
    out, model = tmp_path / "out.nrrd", tmp_path / "model"
    code, stdout, err = run_cli(capsys, "adapt", tmp_path / "image.nrrd", "--exemplars", tmp_path / "painted.nrrd",
                                "-o", out, "--method", "zero-shot", "--device", "cpu", "--save-model", model,
                                *([] if referee else ["--no-grow-referee"]), "--quiet")
    assert code == 0, err
    result = read_volume(out, label=True)
    assert result.geometry.matches(image.geometry, tol=1e-6)
    manifest = json.loads((model / "manifest.json").read_text())
    hidden = [s for s in range(11) if s not in PAINTED]
    if referee:  # Grow from seeds takes the structure: the split disks on the hidden slices are segmented
        assert "label 1: leave-one-exemplar-out Dice 1.000 (Grow from seeds, chosen by the grow referee)" in stdout
        assert manifest["grown_labels"] == [1] and manifest["config"]["grow_referee"] is True
        assert dice(result.array[hidden] == 1, truth[hidden] == 1) > 0.95
    else:
        assert "Grow from seeds" not in stdout
        assert manifest["grown_labels"] == [] and manifest["config"]["grow_referee"] is False
