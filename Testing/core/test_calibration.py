"""Leave-one-exemplar-out checks: Fill's and the registration's held-out predictions, and the choice between the
model, Fill and registration for the slices between painted ones."""

import numpy as np
import pytest

from medadapt.slices.leave_one_out import LeaveOneOut, fill_held_slice
from medadapt.evaluation.metrics import mask_dice


def _disc(radius: float, shape=(64, 80), centre=(30, 45)) -> np.ndarray:
    rows, cols = np.ogrid[:shape[0], :shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius ** 2


def test_fill_predicts_a_held_slice_between_its_painted_neighbours():
    seeds = {10: _disc(6), 14: _disc(6), 18: _disc(14)}
    predicted = fill_held_slice(seeds, 14)
    assert predicted.shape == seeds[14].shape
    # interpolated between radius 6 (slice 10) and radius 14 (slice 18): about radius 10 at slice 14
    assert mask_dice(predicted, _disc(10)) > 0.85
    assert not predicted[:, :20].any()  # stays inside the painted extent


def test_fill_predicts_a_held_slice_of_a_structure_touching_the_slice_edges():
    # within 2 pixels of the bottom and right edges: the bounding box with its margin must stay on the slice
    seeds = {s: _disc(r, shape=(40, 50), centre=(36, 46)) for s, r in ((3, 5), (6, 6), (9, 7))}
    predicted = fill_held_slice(seeds, 6)
    assert predicted.shape == (40, 50)
    assert mask_dice(predicted, seeds[6]) > 0.8


def test_the_gap_filler_is_whichever_predicted_the_interior_slices_best():
    # compared on the interior slice 9 only: label 1 fill 0.8 / warp 0.7 / model 0.4; label 2 model 0.75 / fill 0.7
    # / warp 0.9, although label 2's model scores worse than label 1's on the outer slices 5 and 13; label 4 a tie
    checks = LeaveOneOut(model={1: {5: 0.9, 9: 0.4, 13: 0.9}, 2: {5: 0.1, 9: 0.75, 13: 0.1}, 3: {5: 0.5, 9: 0.5},
                                4: {5: 0.5, 9: 0.6, 13: 0.5}},
                         fill={1: {9: 0.8}, 2: {9: 0.7}, 3: {}, 4: {9: 0.6}},
                         warp={1: {9: 0.7}, 2: {9: 0.9}, 3: {}, 4: {9: 0.6}})
    assert checks.best_gap_filler(1) == "fill"
    assert checks.best_gap_filler(2) == "warp"
    assert checks.best_gap_filler(3) == "model"  # no interior slice: nothing to compare, the model stays
    assert checks.best_gap_filler(4) == "model"  # a tie keeps the model
    assert checks.validation_dice()[2] == np.mean([0.1, 0.75, 0.1])
    # with label 2's gaps filled by registration its interior slice counts with registration's Dice
    assert checks.validation_dice({2: "warp"})[2] == np.mean([0.1, 0.9, 0.1])
    outer_only = LeaveOneOut(model={5: {3: 0.6}}, warp={5: {4: 0.8}, 6: {}})  # no model walk to slice 4
    assert outer_only.validation_dice({5: "warp", 6: "warp"}) == {5: np.mean([0.6, 0.8])}


def test_auto_lets_fill_take_only_short_gaps_and_fill_takes_all():
    from conftest import ANISOTROPIC_SPACING, OBLIQUE_DIRECTION

    from medadapt.config import AdaptConfig
    from medadapt.io.exemplars import find_exemplars
    from medadapt.slices.between import fill_gaps, fill_max_gap, gap_labels
    from medadapt.io.volume import Geometry, Volume

    painted = np.zeros((20, 64, 80), np.int16)
    for s in (2, 5, 15):  # gaps of 3 and 10 slices: 7.5 and 25 mm at 2.5 mm spacing
        painted[s][_disc(8)] = 3
    geometry = Geometry((80, 64, 20), ANISOTROPIC_SPACING, (1.0, 2.0, 3.0), OBLIQUE_DIRECTION)
    exemplars = find_exemplars(Volume(painted, geometry), Volume(painted, geometry))
    auto = AdaptConfig(between="auto")
    assert exemplars.axis == 0 and fill_max_gap(exemplars, auto) == 10.0 / 2.5
    assert fill_max_gap(exemplars, AdaptConfig(between="fill")) is None
    assert fill_max_gap(exemplars, AdaptConfig(between="warp")) is None
    assert gap_labels(exemplars, auto) == {3}  # the 3-slice gap is short enough
    assert gap_labels(exemplars, AdaptConfig(between="auto", fill_max_gap_mm=5.0)) == set()  # held-out runs skipped
    model = np.full(painted.shape, 0.25, np.float32)
    short_only = fill_gaps(model, None, exemplars, 3, "fill", fill_max_gap(exemplars, auto))
    assert all(mask_dice(short_only[s] > 0.5, _disc(8)) > 0.95 for s in (3, 4))
    np.testing.assert_array_equal(short_only[6:15], model[6:15])
    every_gap = fill_gaps(model, None, exemplars, 3, "fill")
    assert all(mask_dice(every_gap[s] > 0.5, _disc(8)) > 0.95 for s in range(3, 15) if s != 5)
    np.testing.assert_array_equal(every_gap[16:], model[16:])  # nothing past the last painted slice


@pytest.fixture(scope="module")
def liver_crop_model(sample, litemedsam):
    """The sample's 14-slice liver crop and a maker of new slice models of it that share one set of slice
    embeddings (each slice is encoded once for the tests that walk it)."""
    from conftest import liver_crop

    from medadapt.io.intensity import intensity_window
    from medadapt.slices.frame import in_plane_spacing
    from medadapt.slices.model import SliceModel
    from medadapt.slices.stack import slice_stack

    image, liver = liver_crop(sample)
    stack, embeddings = slice_stack(image, 0, intensity_window(image.array)), {}
    return image, liver, lambda: SliceModel(litemedsam, stack, in_plane_spacing(image.geometry.spacing, 0),
                                            embeddings=embeddings)


def test_predict_runs_only_the_held_out_walks_its_gap_choice_needs(liver_crop_model):
    from conftest import LIVER

    from medadapt.slices.between import gap_fillers
    from medadapt.config import AdaptConfig
    from medadapt.io.exemplars import find_exemplars

    image, liver, new_model = liver_crop_model
    exemplars = find_exemplars(image, liver, axis=0, slices=[3, 6, 9])
    model = new_model()
    calls = []
    predict = model.predict
    model.predict = lambda *args, **kwargs: calls.append(args[0]) or predict(*args, **kwargs)
    assert gap_fillers(model, exemplars, AdaptConfig(between="fill")) == {LIVER: "fill"} and not calls
    assert gap_fillers(model, exemplars, AdaptConfig(between="warp")) == {LIVER: "warp"} and not calls
    assert gap_fillers(model, exemplars, AdaptConfig()) == {LIVER: "warp"} and not calls  # the default
    assert gap_fillers(model, exemplars, AdaptConfig(between="model")) == {} and not calls
    no_short_gap = AdaptConfig(between="auto", fill_max_gap_mm=1.0)  # no gap Fill may take: nothing to score
    assert gap_fillers(model, exemplars, no_short_gap) == {} and not calls
    chosen = gap_fillers(model, exemplars, AdaptConfig(between="auto"))  # held-out walks of the model on the liver
    assert calls and set(chosen) <= {LIVER} and set(chosen.values()) <= {"fill", "warp"}


def test_registration_takes_the_gaps_it_is_given_and_nothing_else(sample, litemedsam):
    from conftest import LIVER

    from medadapt.io.exemplars import find_exemplars
    from medadapt.io.intensity import intensity_window
    from medadapt.slices.between import fill_gaps
    from medadapt.slices.frame import in_plane_spacing
    from medadapt.slices.model import SliceModel
    from medadapt.slices.stack import slice_stack

    image, labels = sample
    liver = labels.array == LIVER
    exemplars = find_exemplars(image, labels, axis=0, slices=[12, 18, 20], labels=[LIVER])
    model = SliceModel(litemedsam, slice_stack(image, 0, intensity_window(image.array, liver)),
                       in_plane_spacing(image.geometry.spacing, 0))
    before = np.full(liver.shape, 0.25, np.float32)
    after = fill_gaps(before, model, exemplars, LIVER, "warp", max_gap=4)  # the 6-slice gap is too long
    assert all(mask_dice(after[s] > 0.5, liver[s]) > 0.9 for s in (19,))
    np.testing.assert_array_equal(after[13:18], before[13:18])
    np.testing.assert_array_equal(after[21:], before[21:])
    every = fill_gaps(before, model, exemplars, LIVER, "warp")
    assert all(mask_dice(every[s] > 0.5, liver[s]) > 0.9 for s in range(13, 18))


def test_the_default_checks_the_painted_slices_without_walking_the_model_across_the_gaps(liver_crop_model):
    from conftest import LIVER

    from medadapt.config import AdaptConfig
    from medadapt.io.exemplars import find_exemplars
    from medadapt.slices.between import check_exemplars

    image, liver, new_model = liver_crop_model
    model = new_model()
    calls = []
    predict = model.predict
    model.predict = lambda *args, **kwargs: calls.append(args[0]) or predict(*args, **kwargs)
    three = find_exemplars(image, liver, axis=0, slices=[3, 6, 9])
    checks, fillers = check_exemplars(model, three, AdaptConfig())
    assert fillers == {LIVER: "warp"} and not calls  # slice 6 carried from 3 and 9 by registration, no encoding
    assert set(checks.warp[LIVER]) == {6} and not checks.model[LIVER]
    assert checks.validation_dice(fillers)[LIVER] == checks.warp[LIVER][6] > 0.8
    two = find_exemplars(image, liver, axis=0, slices=[3, 9])  # nothing between: the model walks to each end
    checks, fillers = check_exemplars(model, two, AdaptConfig())
    assert calls and set(checks.model[LIVER]) == {3, 9} and not checks.warp[LIVER]
    assert 0.0 <= checks.validation_dice(fillers)[LIVER] <= 1.0
