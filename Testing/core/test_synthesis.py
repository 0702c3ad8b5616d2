"""Exemplar-guided synthesis keeps image and mask aligned and varies them."""

import numpy as np

from medadapt.config import SynthesisConfig
from medadapt.methods.synthesis import synthesize


def test_warps_move_image_and_mask_together():
    yy, xx = np.mgrid[:96, :96]
    disc = (yy - 40) ** 2 + (xx - 50) ** 2 < 15 ** 2
    image = np.where(disc, 0.9, 0.2).astype(np.float32)
    geometric_only = SynthesisConfig(per_exemplar=8, blur_prob=0, lowres_prob=0, gamma_prob=0, contrast=0,
                                     brightness=0, noise_prob=0, paste_prob=0)
    pairs = synthesize(image, disc, geometric_only, np.random.default_rng(3))
    assert len(pairs) == 8
    moved = 0
    for warped, mask in pairs:
        bright = warped > 0.55
        assert (bright & mask).sum() / (bright | mask).sum() > 0.9
        moved += int(not np.array_equal(mask, disc))
    assert moved == 8


def test_intensity_changes_and_pasting_stay_in_range_and_keep_the_mask():
    rng = np.random.default_rng(0)
    image = rng.random((64, 64)).astype(np.float32)
    mask = np.zeros((64, 64), bool)
    mask[20:40, 25:45] = True
    background = np.full((64, 64), 0.1, np.float32)
    pairs = synthesize(image, mask, SynthesisConfig(per_exemplar=12, paste_prob=1.0), rng, [background])
    for warped, warped_mask in pairs:
        assert warped.dtype == np.float32 and 0 <= warped.min() and warped.max() <= 1
        assert 0.6 < warped_mask.sum() / mask.sum() < 1.6
    far_from_mask = ~np.pad(pairs[0][1], 4)[4:-4, 4:-4] & (np.abs(pairs[0][0] - 0.1) < 0.2)
    assert far_from_mask.mean() > 0.3  # pasted: most of the slice is now the background slice
