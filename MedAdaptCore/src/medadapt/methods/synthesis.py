"""Exemplar-guided data synthesis (after "Cheap Lunch"): many plausible training pairs from one painted slice.

Joint random affine + elastic warp of image and mask, blur / down-up-sampling, gamma, contrast, brightness
and noise changes (MONAI transforms), and pasting the warped foreground onto an unannotated background slice.
"""

from __future__ import annotations

import numpy as np
from monai.transforms import (Compose, Rand2DElasticd, RandAdjustContrastd, RandAffined, RandGaussianNoised,
                              RandGaussianSmoothd, RandScaleIntensityd, RandShiftIntensityd, RandSimulateLowResolutiond)
from scipy import ndimage

from medadapt.config import SynthesisConfig


def _transforms(config: SynthesisConfig, shape: tuple[int, int]) -> Compose:
    keys = ["image", "mask"]
    grid = max(4, min(shape) // 6)
    return Compose([
        RandAffined(keys, prob=1.0, rotate_range=np.deg2rad(config.rotate_degrees),
                    scale_range=(config.scale, config.scale),
                    translate_range=(config.translate * shape[0], config.translate * shape[1]),
                    mode=("bilinear", "nearest"), padding_mode="border"),
        Rand2DElasticd(keys, spacing=(grid, grid), magnitude_range=config.elastic_magnitude,
                       prob=config.elastic_prob, mode=("bilinear", "nearest"), padding_mode="border"),
        RandGaussianSmoothd("image", sigma_x=config.blur_sigma, sigma_y=config.blur_sigma, prob=config.blur_prob),
        RandSimulateLowResolutiond("image", prob=config.lowres_prob, zoom_range=config.lowres_zoom,
                                   upsample_mode="bilinear"),
        RandAdjustContrastd("image", prob=config.gamma_prob, gamma=config.gamma),
        RandScaleIntensityd("image", factors=config.contrast, prob=1.0),
        RandShiftIntensityd("image", offsets=config.brightness, prob=1.0),
        RandGaussianNoised("image", prob=config.noise_prob, std=config.noise_std),
    ])


def paste_foreground(image: np.ndarray, mask: np.ndarray, background: np.ndarray) -> np.ndarray:
    """``image`` inside ``mask`` blended with a 1-pixel soft edge onto ``background``."""
    weight = ndimage.gaussian_filter(ndimage.binary_dilation(mask, iterations=1).astype(np.float32), 1.0)
    weight = np.maximum(weight, mask.astype(np.float32))
    return weight * image + (1 - weight) * background


def synthesize(image: np.ndarray, mask: np.ndarray, config: SynthesisConfig, rng: np.random.Generator,
               backgrounds: list[np.ndarray] = ()) -> list[tuple[np.ndarray, np.ndarray]]:
    """``config.per_exemplar`` (image, mask) pairs from one 2D slice in [0, 1] and its binary mask.

    ``backgrounds`` are unannotated slices of the same volume (same shape) to paste the warped foreground on.
    """
    transforms = _transforms(config, image.shape)
    transforms.set_random_state(seed=int(rng.integers(2 ** 31)))
    pairs = []
    for _ in range(config.per_exemplar):
        sample = transforms({"image": image[None].astype(np.float32), "mask": mask[None].astype(np.float32)})
        warped = np.clip(np.asarray(sample["image"])[0], 0, 1).astype(np.float32)
        warped_mask = np.asarray(sample["mask"])[0] > 0.5
        if len(backgrounds) and warped_mask.any() and rng.random() < config.paste_prob:
            background = backgrounds[int(rng.integers(len(backgrounds)))]
            warped = paste_foreground(warped, warped_mask, background).astype(np.float32)
        pairs.append((warped, warped_mask))
    return pairs
