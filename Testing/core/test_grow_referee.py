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
from medadapt.slices.grow_referee import (MARGIN, continue_with_grow, grow_between, grow_held_out, grow_wins,
                                          interior_slices)

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


def test_no_grow_referee_reaches_the_config_from_every_front_end():
    from medadapt.cli.main import build_parser
    from medadapt.options import AdaptOptions, build_config
    from medadapt.server.work import adapt_options
    args = build_parser().parse_args(["adapt", "i.nii.gz", "--exemplars", "e.nii.gz", "-o", "o.nii.gz",
                                      "--no-grow-referee", "--device", "cpu"])
    assert build_config(AdaptOptions.from_args(args)).grow_referee is False
    assert build_config(AdaptOptions(device="cpu")).grow_referee is True
    assert build_config(adapt_options({"grow_referee": False}, "cpu", False)).grow_referee is False  # a server job


def test_adapt_gives_an_edge_drawn_structure_to_grow_and_says_so(capsys, tmp_path):
    image, truth = phantom(splits=True, contrast=400.0)
    painted = np.zeros_like(truth)
    painted[PAINTED] = truth[PAINTED]
    write_volume(image, tmp_path / "image.nrrd")
    write_volume(image.with_array(painted), tmp_path / "painted.nrrd")
    out, model = tmp_path / "out.nrrd", tmp_path / "model"
    code, stdout, err = run_cli(capsys, "adapt", tmp_path / "image.nrrd", "--exemplars", tmp_path / "painted.nrrd",
                                "-o", out, "--method", "zero-shot", "--device", "cpu", "--save-model", model, "--quiet")
    assert code == 0, err
    result = read_volume(out, label=True)
    assert result.geometry.matches(image.geometry, tol=1e-6)
    manifest = json.loads((model / "manifest.json").read_text())
    hidden = [s for s in range(11) if s not in PAINTED]
    # Grow from seeds takes the structure: the split disks on the hidden slices are segmented
    assert "label 1: leave-one-exemplar-out Dice 1.000 (Grow from seeds, chosen by the grow referee)" in stdout
    assert manifest["grown_labels"] == [1] and manifest["config"]["grow_referee"] is True
    assert dice(result.array[hidden] == 1, truth[hidden] == 1) > 0.95


def test_grow_continues_a_walk_where_it_stopped_and_nowhere_else():
    labels = np.zeros((10, 6, 6), np.int16)
    labels[3:6, 1:5, 1:5] = 1  # painted 4, walks reached 3 and 5, then stopped
    labels[7, 0, 0] = 2  # another structure
    grown = np.zeros_like(labels)
    grown[5, 0, :] = 1  # on a slice the walk segments: MedAdapt's mask stays as it is
    grown[6, 1:5, 1:4] = 1
    grown[7, 0:3, 0:3] = 1  # its voxel of label 2 stays label 2
    grown[9, 2, 2] = 1  # past an empty slice: Grow's region still continues the structure there
    grown[1, 5, 5] = 1  # below, past the walk's end at 3 (slice 2 empty)
    before = labels.copy()
    assert continue_with_grow(labels, grown, 1, 4, 4) == [1, 6, 7, 9]
    assert np.count_nonzero(labels[6] == 1) == 12 and labels[7, 0, 0] == 2 and np.count_nonzero(labels[7] == 1) == 8
    assert np.array_equal(labels[2:6], before[2:6]) and labels[9, 2, 2] == 1 and labels[1, 5, 5] == 1
    assert not continue_with_grow(labels, np.zeros_like(labels), 1, 4, 4)  # nothing grown: nothing added


def test_grow_between_replaces_only_the_slices_between_the_outermost_painted_ones():
    labels = np.zeros((7, 4, 4), np.int16)
    labels[1:6, 1:3, 1:3] = 1
    labels[3, 0, 0] = 2
    grown = np.zeros_like(labels)
    grown[:, 0:2, 0:2] = 1
    grow_between(labels, grown, 1, 2, 4)
    assert np.array_equal(labels[2] == 1, grown[2] == 1) and labels[3, 0, 0] == 2  # other labels kept
    assert np.count_nonzero(labels[3] == 1) == 3
    assert np.array_equal(labels[1] == 1, labels[5] == 1) and labels[1, 1, 1] == 1 and labels[1, 0, 0] == 0
