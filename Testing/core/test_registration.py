"""Carrying painted masks between slices by deformable registration of the image slices."""

import numpy as np

from medadapt.evaluation.metrics import mask_dice
from medadapt.slices.leave_one_out import fill_held_slice
from medadapt.slices.registration import carry_between


def _disc(centre_col: float, radius: float = 9.0, shape=(64, 96)) -> np.ndarray:
    rows, cols = np.ogrid[:shape[0], :shape[1]]
    return (rows - 32) ** 2 + (cols - centre_col) ** 2 <= radius ** 2


def test_registration_follows_a_structure_that_moves_where_interpolation_cannot():
    # a bright disc moves right by 2 pixels a slice for four slices and back again: slices 0 and 8 are painted at
    # the same place, so interpolating the two painted contours keeps it there, while the image shows where it went
    centres = [30 + 2 * min(s, 8 - s) for s in range(9)]
    truth = np.stack([_disc(c) for c in centres])
    rng = np.random.default_rng(0)
    stack = np.clip(0.2 + 0.6 * truth + rng.normal(0, 0.03, truth.shape), 0, 1).astype(np.float32)
    carried = carry_between(stack, 0, truth[0], 8, truth[8])
    assert sorted(carried) == list(range(1, 8))
    warp_dice = [mask_dice(carried[s] > 0.5, truth[s]) for s in range(1, 8)]
    assert min(warp_dice) > 0.8, warp_dice
    assert mask_dice(fill_held_slice({0: truth[0], 8: truth[8]}, 4), truth[4]) < 0.5 < 0.8 < warp_dice[3]


def test_registration_carries_the_painted_liver_between_two_slices_of_the_sample_ct(sample):
    from conftest import LIVER

    from medadapt.io.intensity import intensity_window
    from medadapt.slices.stack import slice_stack

    image, labels = sample
    liver = labels.array == LIVER
    stack = slice_stack(image, 0, intensity_window(image.array, liver))
    carried = carry_between(stack, 12, liver[12], 18, liver[18])
    assert all(mask_dice(carried[s] > 0.5, liver[s]) > 0.9 for s in range(13, 18))
    assert all(carried[s].shape == liver[s].shape and 0 <= carried[s].min() and carried[s].max() <= 1
               for s in carried)


def test_nothing_painted_carries_nothing():
    stack = np.random.default_rng(1).random((5, 20, 30)).astype(np.float32)
    empty = np.zeros((20, 30), bool)
    carried = carry_between(stack, 0, empty, 4, empty)
    assert sorted(carried) == [1, 2, 3] and not any(m.any() for m in carried.values())

