"""The volume backbone's data: each entry's image on its working grid, intensities normalised, every labelled
task's mask beside it, and augmented training patches drawn from them.

The working grid keeps the scan's own spacing, coarsened only along an axis that would otherwise hold more than
:data:`MAX_SIDE` voxels (origin, direction and physical extent kept), so a small crop is seen at full resolution
and a large scan fits a CPU; a new image goes through the same rule at prediction. Intensities use the window
MedAdapt uses for a volume with no painting, as the slice backbone does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from monai.transforms import (Compose, RandAdjustContrastd, RandAffined, RandScaleIntensityd,
                              RandShiftIntensityd)

from medadapt.io.grid3d import resample
from medadapt.io.intensity import intensity_window, normalise
from medadapt.io.volume import Geometry, Volume
from medadapt.universal.collection import Entry
from medadapt.universal.slices import forms_one_piece, read_entry

MAX_SIDE = 128
"""Most voxels along any axis of the working grid."""

PATCH = 48
"""Side of the cubic training and inference patches, in working-grid voxels (a multiple of 8: three halvings)."""

FOREGROUND_SHARE = 0.5
"""Share of training patches centred on a voxel of the drawn task's structure (the rest anywhere)."""

FOREGROUND_KEPT = 20_000
"""Most structure voxels kept per task as patch centres (an even subsample)."""


def working_grid(geometry: Geometry) -> Geometry:
    """``geometry`` with each axis's spacing coarsened just enough to hold at most :data:`MAX_SIDE` voxels over
    the same physical extent; origin moved so the extent stays put, direction kept."""
    spacing = np.asarray(geometry.spacing, float)
    extent = np.asarray(geometry.size, float) * spacing
    coarse = np.maximum(spacing, extent / MAX_SIDE)
    size = tuple(int(v) for v in np.minimum(np.ceil(extent / coarse - 1e-6), MAX_SIDE))
    origin = np.asarray(geometry.origin) + geometry.direction_matrix @ ((coarse - spacing) / 2)
    return Geometry(size, tuple(float(v) for v in coarse), tuple(float(v) for v in origin), geometry.direction)


def working_image(image: Volume) -> tuple[np.ndarray, Geometry]:
    """``image`` normalised to [0, 1] and sampled on its working grid: (z, y, x) float32 array and the grid."""
    array = normalise(image.array, intensity_window(image.array))
    grid = working_grid(image.geometry)
    if grid == image.geometry:
        return array, grid
    return resample(array, image.geometry, grid).astype(np.float32), grid


def _padded(array: np.ndarray) -> np.ndarray:
    """``array`` padded with zeros at the far end of every axis shorter than :data:`PATCH`."""
    return np.pad(array, [(0, max(0, PATCH - side)) for side in array.shape])


def augmentation() -> Compose:
    """Random rotation (up to 0.2 rad about each axis) and scaling (10 %), then gamma, scale and shift of the
    intensities: what a scanner, a subject and a head position change."""
    return Compose([
        RandAffined(["image", "mask"], prob=1.0, rotate_range=(0.2, 0.2, 0.2), scale_range=(0.1, 0.1, 0.1),
                    mode=("bilinear", "nearest"), padding_mode="zeros"),
        RandAdjustContrastd(["image"], prob=1.0, gamma=(0.75, 1.35)),
        RandScaleIntensityd(["image"], factors=0.1, prob=1.0),
        RandShiftIntensityd(["image"], offsets=0.1, prob=1.0),
    ])


@dataclass
class PatchVolume:
    """One entry on its working grid: ``image`` (z, y, x) float32 and ``masks`` by task, padded to at least a
    patch; the modality, the sampling weight, per task whether it forms one connected piece, and per task the
    voxels patches centre on."""

    image: np.ndarray
    masks: dict[str, np.ndarray]
    modality: str
    weight: float
    one_piece: dict[str, bool]
    centres: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        for task, mask in self.masks.items():
            points = np.argwhere(mask)
            self.centres[task] = points[::max(1, len(points) // FOREGROUND_KEPT)]
        self._augment = augmentation()

    def example(self, task: str, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """An augmented (1, 1, P, P, P) image patch and its ``task`` mask: centred on the structure with
        probability :data:`FOREGROUND_SHARE`, anywhere otherwise."""
        shape = np.asarray(self.image.shape)
        centres = self.centres[task]
        if len(centres) and rng.random() < FOREGROUND_SHARE:
            centre = centres[rng.integers(len(centres))]
        else:
            centre = np.array([rng.integers(side) for side in shape])
        start = np.clip(centre - PATCH // 2, 0, shape - PATCH)
        window = tuple(slice(s, s + PATCH) for s in start)
        self._augment.set_random_state(seed=int(rng.integers(2 ** 31)))
        patch = self._augment({"image": self.image[window][None], "mask": self.masks[task][window][None]
                               .astype(np.float32)})
        return (torch.as_tensor(np.asarray(patch["image"]))[None].float(),
                torch.as_tensor(np.asarray(patch["mask"]))[None].float())


def prepare_volume(image: Volume, labels: Volume, tasks: dict[str, int], modality: str, weight: float = 1.0,
                   working: np.ndarray | None = None) -> PatchVolume:
    """``image`` and the masks of ``tasks`` (name -> label value in ``labels``, on the image's grid) on the
    working grid; ``working``: the image's working array when already made."""
    grid = working_grid(image.geometry)
    masks = {}
    for name, value in tasks.items():
        mask = (labels.array == value).astype(np.float32)
        if grid != image.geometry:
            mask = resample(mask, image.geometry, grid)
        masks[name] = _padded(mask >= 0.5)
    one_piece = {name: forms_one_piece(labels.array == value) for name, value in tasks.items()}
    working = _padded(working_image(image)[0]) if working is None else working
    return PatchVolume(working, masks, modality, weight, one_piece)


def prepare_entry(entry: Entry, prepared: dict | None = None) -> PatchVolume:
    """``entry``'s image and task masks on its working grid; ``prepared`` shares one image file's array between
    entries (one volume labelled for different tasks in different label maps)."""
    image, labels = read_entry(entry)
    prepared = {} if prepared is None else prepared
    volume = prepare_volume(image, labels, entry.tasks, entry.modality, entry.weight,
                            prepared.get(entry.image.resolve()))
    prepared[entry.image.resolve()] = volume.image
    return volume
