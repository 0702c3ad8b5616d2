"""Atlas localisation: the painted subject registered onto a moved volume finds its structure there."""

import numpy as np
from conftest import ANISOTROPIC_SPACING, OBLIQUE_DIRECTION
from scipy import ndimage

from medadapt.methods.atlas import make_atlas, warp_atlas
from medadapt.io.exemplars import find_exemplars
from medadapt.evaluation.metrics import mask_dice
from medadapt.io.volume import Geometry, Volume

SHAPE = (40, 64, 64)


def _scene(shift_zyx) -> tuple[np.ndarray, np.ndarray]:
    """A textured volume with a bright ellipsoid, everything moved by ``shift_zyx`` voxels: (image, mask)."""
    texture = ndimage.gaussian_filter(np.random.default_rng(3).normal(0, 1, SHAPE), 3) * 400
    z, y, x = np.ogrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]]
    mask = ((z - 20) / 8) ** 2 + ((y - 30) / 14) ** 2 + ((x - 34) / 10) ** 2 <= 1
    image = texture + 300 * ndimage.gaussian_filter(mask.astype(float), 1)
    return ndimage.shift(image, shift_zyx, order=1, mode="nearest"), ndimage.shift(mask.astype(float), shift_zyx) > 0.5


def test_registered_atlas_finds_the_structure_on_a_moved_volume():
    geometry = Geometry(SHAPE[::-1], ANISOTROPIC_SPACING, (-12.5, 40.25, 7.0), OBLIQUE_DIRECTION)
    source, source_mask = _scene((0, 0, 0))
    painted = np.zeros(SHAPE, np.int16)
    painted[[15, 20, 25]] = np.where(source_mask[[15, 20, 25]], 4, 0)
    image = Volume(source.astype(np.float32), geometry)
    exemplars = find_exemplars(image, image.with_array(painted), axis=0)
    atlas = make_atlas(image, exemplars, max_voxels=40000)  # coarsened to keep the saved copy small
    assert atlas.image.array.size <= 40000 and atlas.labels.geometry.matches(atlas.image.geometry)
    assert atlas.image.geometry.direction == geometry.direction and set(np.unique(atlas.labels.array)) == {0, 4}
    assert make_atlas(image, exemplars).image.geometry.matches(geometry)  # small enough as it is
    target, target_mask = _scene((3, -6, 5))
    moved = Volume(target.astype(np.float32), geometry)
    for deformable in (False, True):
        warped = warp_atlas(atlas, moved, deformable)
        assert warped.geometry.matches(moved.geometry) and set(np.unique(warped.array)) == {0, 4}
        assert mask_dice(warped.array == 4, target_mask) > 0.75
        assert mask_dice(warped.array == 4, target_mask) > mask_dice(source_mask, target_mask) + 0.2
