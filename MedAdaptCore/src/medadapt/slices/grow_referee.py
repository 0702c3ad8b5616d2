"""The grow referee: where the image's intensity edge carries a structure better than MedAdapt's shape tools,
Slicer's Grow from seeds takes over.

Each painted slice that lies between two other painted slices of a label is hidden in turn and predicted from the
remaining painted slices twice: by what fills MedAdapt's gaps between painted slices (registration by default,
already scored by the leave-one-out checks) and by Slicer's Grow from seeds (the effect's crop and seeds,
:mod:`medadapt.slices.grow`). Every candidate reaches such a slice, so the comparison is fair. When Grow wins on
every such slice by more than :data:`MARGIN`, Grow from seeds segments the label between its outermost painted
slices (:func:`grow_between`): the structure is one whose boundary the image draws (a lesion with strong contrast)
rather than one the shapes of neighbouring slices predict. The referee has no evidence beyond the outermost painted
slices, so there the model's outward walks stay; where a walk stops while Grow's region goes on (for every
structure, with or without the referee), Grow's region continues it (:func:`continue_with_grow`): the image's
evidence that the structure goes on, where the walk's reach cap or stop rule ended it.
"""

from __future__ import annotations

import numpy as np

from medadapt.evaluation.metrics import mask_dice
from medadapt.io.exemplars import Exemplars
from medadapt.slices.grow import exemplar_seed_labels, grow_cut

MARGIN = 0.01
"""Grow must beat the gap filler's held-out Dice by more than this on every interior painted slice: the tolerance
within which two results count as equal (the accuracy targets' own), so a tie keeps MedAdapt's result."""


def interior_slices(exemplars: Exemplars, label: int) -> list[int]:
    """Painted slices of ``label`` that lie strictly between two other painted slices of it."""
    painted = exemplars.label_slices.get(label, [])
    return [s for s in painted if min(painted) < s < max(painted)]


def grow_held_out(intensity: np.ndarray, exemplars: Exemplars) -> dict[int, dict[int, float]]:
    """Label -> {interior painted slice: Dice of Grow from seeds predicting it with that slice's seeds removed}
    (every label's seeds and the background of the other painted slices stay, as a user would have them)."""
    seeds, background = exemplar_seed_labels(exemplars)
    seeds = np.moveaxis(seeds, exemplars.axis, 0)
    painted = np.moveaxis(exemplars.labelmap.array, exemplars.axis, 0)
    image = np.moveaxis(intensity, exemplars.axis, 0)
    spacing = tuple(reversed(exemplars.labelmap.geometry.spacing))
    spacing = (spacing[exemplars.axis], *[v for a, v in enumerate(spacing) if a != exemplars.axis])
    wanted = {label: interior_slices(exemplars, label) for label in exemplars.labels}
    scores: dict[int, dict[int, float]] = {label: {} for label, held in wanted.items() if held}
    for held in sorted({s for slices in wanted.values() for s in slices}):
        hidden = seeds.copy()
        hidden[held] = 0
        grown = grow_cut(image, hidden, spacing)[held]
        for label, slices in wanted.items():
            if held in slices:
                scores[label][held] = mask_dice(grown == label, painted[held] == label)
    return scores


def grow_wins(grow: dict[int, float], filler: dict[int, float]) -> bool:
    """Grow's held-out Dice beats the gap filler's by more than :data:`MARGIN` on every slice both predicted: one
    slice where the shape changes abruptly (registration's worst case) does not hand the whole structure over."""
    shared = [s for s in grow if s in filler]
    return bool(shared) and all(grow[s] > filler[s] + MARGIN for s in shared)


def grow_between(labels: np.ndarray, grown: np.ndarray, label: int, low: int, high: int) -> None:
    """In ``labels`` (slice axis first, changed in place) Grow's region of ``label`` replaces MedAdapt's on the
    slices ``low``..``high`` (the outermost painted ones), where nothing else is labelled."""
    inside = labels[low:high + 1]
    inside[inside == label] = 0
    inside[(grown[low:high + 1] == label) & (inside == 0)] = label


def continue_with_grow(labels: np.ndarray, grown: np.ndarray, label: int, low: int, high: int) -> list[int]:
    """Beyond the outermost painted slices ``low`` and ``high`` of ``label``: past the last slice its walk
    segments on each side, Grow's region of ``label`` (the effect's crop: 20 % of the painted range beyond it, at
    least 3 slices) continues the structure, on voxels nothing else labels. Changes ``labels`` (slice axis first) in
    place; returns the slices added."""
    added = []
    for start, step in ((high, +1), (low, -1)):
        s = start + step
        while 0 <= s < len(labels) and np.any(labels[s] == label):
            s += step
        while 0 <= s < len(labels):
            candidate = (grown[s] == label) & (labels[s] == 0)
            if np.any(candidate):
                labels[s][candidate] = label
                added.append(s)
            s += step
    return sorted(added)
