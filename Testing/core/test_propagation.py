"""Outward walks with the real LiteMedSAM on a synthetic volume: where the painting narrows, a walk whose mask
grows stops; where it widens, the walk goes on. The leave-one-out check walks the same way."""

import numpy as np
import pytest

from medadapt.config import AdaptConfig
from medadapt.io.exemplars import find_exemplars
from medadapt.io.volume import Geometry, Volume
from medadapt.pipeline import EmbeddingCache, adapt

WAIST, WIDE, BELOW = 6, 10, 2


@pytest.fixture(scope="module")
def cache():
    """Slice embeddings shared by the tests (the volume is encoded once)."""
    return EmbeddingCache()


@pytest.fixture(scope="module")
def hourglass():
    """A bright disc in soft tissue whose radius grows by 1.5 pixels a slice away from slice ``WAIST`` (an
    hourglass), painted on ``WAIST`` (narrow) and ``WIDE``: below the waist the painting narrows towards the
    end while the image widens, as a tumour's walk running into tissue of the same intensity does."""
    depth, size = 14, 96  # fourteen slices: every slice a walk reaches is encoded once
    rows, cols = np.mgrid[:size, :size]
    radius = 10 + 1.5 * np.abs(np.arange(depth) - WAIST)
    disc = (rows - size / 2) ** 2 + (cols - size / 2) ** 2 < radius[:, None, None] ** 2
    rng = np.random.default_rng(0)
    image = (rng.normal(40, 8, disc.shape) + 120 * disc).astype(np.int16)
    geometry = Geometry((size, size, depth), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    volume = Volume(image, geometry)
    return volume, Volume(disc.astype(np.int16), geometry)


def _adapt(hourglass, cache, slices, between="warp", **stop):
    image, truth = hourglass
    # the walk's own rules, without Grow from seeds continuing a walk that stopped (test_grow_referee.py)
    config = AdaptConfig(method="zero-shot", device="cpu", between=between, grow_referee=False)
    for field, value in stop.items():
        setattr(config.stop, field, value)
    return adapt(image, find_exemplars(image, truth, axis=0, slices=slices), config, cache=cache)


def _covered(hourglass, cache, **stop) -> np.ndarray:
    result = _adapt(hourglass, cache, [WAIST, WIDE], **stop)
    return np.flatnonzero(result.segmentation.array.any(axis=(1, 2)))


def test_a_walk_stops_where_it_grows_beyond_a_narrowing_end(hourglass, cache):
    free = _covered(hourglass, cache, taper_growth=None)
    tapered = _covered(hourglass, cache)
    reach = 2  # half the 4-slice spacing of the painting
    assert free.min() < WAIST, "without the taper rule the walk follows the widening disc below the waist"
    assert tapered.min() == WAIST, "the painting narrows towards the waist: a growing mask beyond it stops"
    assert tapered.max() == free.max() == WIDE + reach, "the wide end widens in the painting: its walk goes on"


def test_the_held_out_check_walks_as_adapt_does(hourglass, cache):
    """Painted below, at and above the waist: holding out an outer slice leaves the waist as the outermost
    painted slice, narrower than the other, so the held-out walk follows the taper rule as Adapt's would and
    stops in the widening disc (a low validation Dice, where the free walk reaches the held slice)."""
    free = _adapt(hourglass, cache, [BELOW, WAIST, WIDE], between="model", taper_growth=None).validation_dice[1]
    tapered = _adapt(hourglass, cache, [BELOW, WAIST, WIDE], between="model").validation_dice[1]
    assert free > 0.8, "the walks follow the disc to the held-out slices"
    assert tapered < free - 0.4, "the held-out ends lie beyond a narrowing painting: their walks stop"
