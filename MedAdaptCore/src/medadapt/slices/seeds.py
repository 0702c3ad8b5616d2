"""Where propagation starts: painted masks, masks predicted from clicks, or (with no prompt at all) from a
seed head's prediction."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medadapt.io.exemplars import Exemplars
from medadapt.io.points import PointPrompt
from medadapt.slices.model import SliceModel
from medadapt.slices.propagation import SlicePrompts


def prompts_by_label(points: list[PointPrompt], axis: int) -> dict[int, SlicePrompts]:
    """Point prompts grouped by structure label and slice along ``axis`` (row, col in the slice)."""
    grouped: dict[int, SlicePrompts] = {}
    for point in points:
        prompts = grouped.setdefault(point.label, SlicePrompts())
        index = point.index_zyx[axis]
        in_plane = tuple(v for a, v in enumerate(point.index_zyx) if a != axis)
        prompts.points.setdefault(index, []).append(in_plane)
        prompts.labels.setdefault(index, []).append(1 if point.positive else 0)
    return grouped


def exemplar_seeds(exemplars: Exemplars) -> dict[int, dict[int, np.ndarray]]:
    """Painted masks by label and slice."""
    painted = np.moveaxis(exemplars.labelmap.array, exemplars.axis, 0)
    return {label: {s: painted[s] == label for s in exemplars.label_slices[label]} for label in exemplars.labels}


def seeds_from_points(model: SliceModel, prompts: dict[int, SlicePrompts]) -> dict[int, dict[int, np.ndarray]]:
    """Seed masks predicted from the clicks alone on every slice with a positive point, by label."""
    seeds: dict[int, dict[int, np.ndarray]] = {}
    for label, by_slice in prompts.items():
        for index, labels in by_slice.labels.items():
            if 1 not in labels:
                continue
            points, point_labels = by_slice.on(index)
            probability, _ = model.predict(index, None, points, point_labels)
            if np.any(probability > 0.5):
                seeds.setdefault(label, {})[index] = probability > 0.5
    return seeds


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected component of a binary ``mask`` (unchanged when it has at most one)."""
    components, count = ndimage.label(mask)
    if count < 2:
        return mask
    return components == (np.argmax(np.bincount(components.ravel())[1:]) + 1)


def segment_in_box(model: SliceModel, index: int, mask: np.ndarray, margin: float) -> np.ndarray:
    """``model``'s mask on slice ``index`` prompted by the box of ``mask`` grown by ``margin`` frame pixels."""
    return model.predict(index, model.frame.box_from_mask(mask, margin))[0] > 0.5


def seeds_from_atlas(model: SliceModel, warped: np.ndarray, margin: float) -> dict[int, dict[int, np.ndarray]]:
    """Seed masks without any prompt from an atlas warped onto the volume (``warped``: labels, slice axis
    first; see :mod:`medadapt.methods.atlas`): every slice the warped structure covers, segmented by ``model`` from the
    box of the warped structure there (grown by ``margin`` frame pixels). Seeding every slice scored better
    than seeding 3, 5 or 8 of them and propagating between (docs/benchmarks/cross-subject.md, "Cross-subject")."""
    seeds: dict[int, dict[int, np.ndarray]] = {}
    for label in (int(v) for v in np.unique(warped) if v != 0):
        for index in np.flatnonzero((warped == label).any(axis=(1, 2))).tolist():
            seed = segment_in_box(model, index, warped[index] == label, margin)
            if seed.any():
                seeds.setdefault(label, {})[index] = seed
    return seeds
