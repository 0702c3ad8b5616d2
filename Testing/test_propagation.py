"""Outward walks with the real LiteMedSAM on a synthetic volume: where the painting narrows, a walk whose mask
grows stops; where it widens, the walk goes on."""

import numpy as np
import pytest

from medadapt.config import AdaptConfig
from medadapt.io.exemplars import find_exemplars
from medadapt.io.volume import Geometry, Volume
from medadapt.pipeline import EmbeddingCache, adapt

WAIST, WIDE = 12, 20


@pytest.fixture(scope="module")
def hourglass():
    """A bright disc in soft tissue whose radius grows by 1.5 pixels a slice away from slice ``WAIST`` (an
    hourglass), painted on ``WAIST`` (narrow) and ``WIDE``: below the waist the painting narrows towards the
    end while the image widens, as a tumour's walk running into tissue of the same intensity does."""
    depth, size = 26, 96
    rows, cols = np.mgrid[:size, :size]
    radius = 10 + 1.5 * np.abs(np.arange(depth) - WAIST)
    disc = (rows - size / 2) ** 2 + (cols - size / 2) ** 2 < radius[:, None, None] ** 2
    rng = np.random.default_rng(0)
    image = (rng.normal(40, 8, disc.shape) + 120 * disc).astype(np.int16)
    geometry = Geometry((size, size, depth), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    volume = Volume(image, geometry)
    return volume, find_exemplars(volume, Volume(disc.astype(np.int16), geometry), axis=0, slices=[WAIST, WIDE])


def _covered(hourglass, cache, **stop) -> np.ndarray:
    image, exemplars = hourglass
    config = AdaptConfig(method="zero-shot", device="cpu")
    for field, value in stop.items():
        setattr(config.stop, field, value)
    return np.flatnonzero(adapt(image, exemplars, config, cache=cache).segmentation.array.any(axis=(1, 2)))


def test_a_walk_stops_where_it_grows_beyond_a_narrowing_end(hourglass):
    cache = EmbeddingCache()
    free = _covered(hourglass, cache, taper_growth=None)
    tapered = _covered(hourglass, cache)
    reach = 4  # half the 8-slice spacing of the painting
    assert free.min() < WAIST, "without the taper rule the walk follows the widening disc below the waist"
    assert tapered.min() == WAIST, "the painting narrows towards the waist: a growing mask beyond it stops"
    assert tapered.max() == free.max() == WIDE + reach, "the wide end widens in the painting: its walk goes on"
