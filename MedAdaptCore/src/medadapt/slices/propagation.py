"""Volumetric inference: propagate box prompts slice by slice from the painted slices, in both directions.

Between two exemplars the walks from both ends are blended by distance; beyond the outermost exemplars a
walk goes on until the structure vanishes or changes too fast, or where the painting narrows towards that end,
widens, and at most half the painted slices' spacing (see :class:`StopRule`), so slices past the last painted
one are segmented too.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np

from medadapt.config import StopRule
from medadapt.progress import check_cancel
from medadapt.slices.model import SliceModel


@dataclass
class SlicePrompts:
    """Point prompts of one structure, by slice: lists of (row, col) and labels (1 positive, 0 negative)."""

    points: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    labels: dict[int, list[int]] = field(default_factory=dict)

    def on(self, index: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Points and labels on slice ``index`` (``None`` when it has none)."""
        if index not in self.points:
            return None, None
        return np.asarray(self.points[index]), np.asarray(self.labels[index])

    def furthest_positive(self, direction: int) -> int | None:
        """The outermost slice with a positive point in ``direction`` (+1 up, -1 down)."""
        positives = [s for s, labels in self.labels.items() if 1 in labels]
        if not positives:
            return None
        return max(positives) if direction > 0 else min(positives)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def narrows_towards(seeds: dict[int, np.ndarray], start: int, direction: int) -> bool:
    """Whether the painting narrows towards its end at ``start``, the outermost painted slice in ``direction``
    (+1 up, -1 down): its mask is smaller than that of the nearest painted slice inward. Never with one painted
    slice. Outward walks from such an end follow ``StopRule.taper_growth``."""
    inward = [s for s in seeds if (s - start) * direction < 0]
    if not inward:
        return False
    nearest = max(inward) if direction > 0 else min(inward)
    return np.count_nonzero(seeds[start]) < np.count_nonzero(seeds[nearest])


def walk(model: SliceModel, start: int, seed: np.ndarray, direction: int, end: int, rule: StopRule | None,
         prompts: SlicePrompts, negatives: set[int], tapering: bool = False) -> dict[int, np.ndarray]:
    """Probabilities of slices ``start + direction`` .. ``end`` (inclusive) from a walk seeded by ``seed``.

    With ``rule`` the walk stops early when the structure vanishes; without, it runs to ``end``. A
    ``tapering`` walk follows ``rule.taper_growth`` (see :class:`StopRule`).
    """
    growth = rule.taper_growth if tapering and rule is not None else None
    out = {}
    previous = seed.astype(bool)
    seed_area = max(1, np.count_nonzero(seed))
    must_reach = prompts.furthest_positive(direction)
    for index in range(start + direction, end + direction, direction):
        check_cancel(model.cancel)
        if index in negatives:
            break
        box = model.frame.box_from_mask(previous, rule.box_margin if rule else 3.0)
        points, labels = prompts.on(index)
        if box is None and points is None:
            break
        probability, _ = model.predict(index, box, points, labels)
        current = probability > 0.5
        forced = must_reach is not None and (index - must_reach) * direction <= 0
        if rule is not None and not forced:
            area = np.count_nonzero(current)
            too_small = area < rule.min_area_fraction * seed_area
            limit = growth or rule.max_growth
            grows = limit is not None and area > limit * np.count_nonzero(previous)
            if too_small or grows or _iou(previous, current) < rule.min_iou:
                break
        out[index] = probability
        previous = current
    return out


def propagate(model: SliceModel, seeds: dict[int, np.ndarray], rule: StopRule, prompts: SlicePrompts | None = None,
              negatives: set[int] = frozenset(), reach: int | None = None,
              taken: Collection[tuple[int, int]] = ()) -> np.ndarray:
    """Foreground probability for every slice of ``model``'s stack from exemplar masks ``seeds`` by slice.

    Exemplar slices keep their painted masks exactly. Outward walks go at most ``reach`` slices beyond the
    outermost seed (any distance when ``None``), or further to reach a positive click. The gaps between
    consecutive seeds listed in ``taken`` (low, high) are left at zero for another filler to take.
    """
    prompts = prompts or SlicePrompts()
    probability = np.zeros(model.stack.shape, dtype=np.float32)
    order = sorted(seeds)
    for index in order:
        probability[index] = seeds[index]
    for low, high in zip(order[:-1], order[1:]):
        if high - low < 2 or (low, high) in taken:
            continue
        up = walk(model, low, seeds[low], +1, high - 1, None, prompts, negatives)
        down = walk(model, high, seeds[high], -1, low + 1, None, prompts, negatives)
        for index in range(low + 1, high):
            weight = (high - index) / (high - low)
            blend = np.zeros(model.stack.shape[1:], np.float32)
            if index in up:
                blend += weight * up[index]
            if index in down:
                blend += (1 - weight) * down[index]
            probability[index] = blend
    outer = [(order[0], -1, 0), (order[-1], +1, len(model) - 1)]
    for start, direction, end in outer:
        if reach is not None:
            furthest = prompts.furthest_positive(direction)
            limit = start + direction * reach
            if furthest is not None and (furthest - limit) * direction > 0:
                limit = furthest
            end = min(end, limit) if direction > 0 else max(end, limit)
        if start == end:
            continue
        for index, p in walk(model, start, seeds[start], direction, end, rule, prompts, negatives,
                             narrows_towards(seeds, start, direction)).items():
            probability[index] = p
    return probability
