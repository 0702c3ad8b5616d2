"""Leave-one-exemplar-out checks: how well the adapted model (and Fill-between-slices, and the painted masks
carried by registration) predict a painted slice from the other painted slices. They give the validation Dice
and decide, per structure, what fills the slices between painted ones."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import numpy as np

from medadapt.config import StopRule
from medadapt.evaluation.metrics import mask_dice
from medadapt.slices.fill import interpolate_mask
from medadapt.slices.model import SliceModel
from medadapt.slices.propagation import SlicePrompts, narrows_towards, walk
from medadapt.slices.registration import carry_between

GAP_FILLERS = ("model", "fill", "warp")
"""What can segment the slices between two painted ones, in the order that wins a tie: the model's walks, Fill
between slices, the painted masks carried by registration (:mod:`medadapt.slices.registration`)."""


@dataclass
class LeaveOneOut:
    """Per label: Dice of the model's prediction of each held-out painted slice, and of Fill's and of the
    registration's on the held slices that lie between two other painted slices."""

    model: dict[int, dict[int, float]] = field(default_factory=dict)
    fill: dict[int, dict[int, float]] = field(default_factory=dict)
    warp: dict[int, dict[int, float]] = field(default_factory=dict)

    def validation_dice(self, fillers: Mapping[int, str] = {}) -> dict[int, float]:
        """Mean held-out Dice per label of what segments its unpainted slices: on a held slice between two
        others, the label's gap filler (``fillers``, the model when not named) where it was scored; elsewhere
        the model's walk."""
        dice = {}
        for label in set(self.model) | set(self.fill) | set(self.warp):
            between = getattr(self, fillers.get(label, "model")).get(label, {})
            scores = {**self.model.get(label, {}), **between}
            if scores:
                dice[label] = float(np.mean(list(scores.values())))
        return dice

    def best_gap_filler(self, label: int) -> str:
        """Which of :data:`GAP_FILLERS` predicted the held interior slices of ``label`` best (mean Dice; the
        earlier one on a tie); ``model`` when no interior slice was held out."""
        interior = self.fill.get(label, {})
        if not interior:
            return "model"
        means = {"model": np.mean([self.model[label][s] for s in interior]), "fill": np.mean(list(interior.values())),
                 "warp": np.mean([self.warp[label][s] for s in interior])}
        return max(GAP_FILLERS, key=lambda name: (means[name], -GAP_FILLERS.index(name)))


def predict_held_slice(model: SliceModel, seeds: dict[int, np.ndarray], held: int, rule: StopRule) -> np.ndarray:
    """Probability on painted slice ``held`` from propagation of the other painted slices only: blended walks
    from both neighbours when it lies between them, else the outward walk with its stopping rule."""
    below = [s for s in seeds if s < held]
    above = [s for s in seeds if s > held]
    probability = np.zeros(model.stack.shape[1:], np.float32)
    if below and above:
        low, high = max(below), min(above)
        up = walk(model, low, seeds[low], +1, held, None, SlicePrompts(), set())
        down = walk(model, high, seeds[high], -1, held, None, SlicePrompts(), set())
        weight = (high - held) / (high - low)
        return weight * up.get(held, probability) + (1 - weight) * down.get(held, probability)
    start, direction = (max(below), +1) if below else (min(above), -1)
    tapering = narrows_towards(seeds, start, direction)
    return walk(model, start, seeds[start], direction, held, rule, SlicePrompts(), set(), tapering).get(held,
                                                                                                     probability)


def fill_held_slice(seeds: dict[int, np.ndarray], held: int) -> np.ndarray:
    """Fill-between-slices' mask on painted slice ``held`` from its two painted neighbours only (run on their
    bounding box, so it is quick on large volumes)."""
    low, high = max(s for s in seeds if s < held), min(s for s in seeds if s > held)
    both = seeds[low] | seeds[high]
    rows, cols = np.flatnonzero(both.any(axis=1)), np.flatnonzero(both.any(axis=0))
    r0, r1 = max(0, rows[0] - 2), min(both.shape[0], rows[-1] + 3)
    c0, c1 = max(0, cols[0] - 2), min(both.shape[1], cols[-1] + 3)
    stack = np.zeros((high - low + 1, r1 - r0, c1 - c0), bool)
    stack[0], stack[-1] = seeds[low][r0:r1, c0:c1], seeds[high][r0:r1, c0:c1]
    out = np.zeros(both.shape, bool)
    out[r0:r1, c0:c1] = interpolate_mask(stack, 0)[held - low]
    return out


def warp_held_slice(model: SliceModel, seeds: dict[int, np.ndarray], held: int) -> np.ndarray:
    """Probability on painted slice ``held`` from its two painted neighbours carried by registration."""
    low, high = max(s for s in seeds if s < held), min(s for s in seeds if s > held)
    return carry_between(model.stack, low, seeds[low], high, seeds[high], model.cancel)[held]


def leave_one_out(model: SliceModel, seeds_by_label: dict[int, dict[int, np.ndarray]], rule: StopRule,
                  interior: Mapping[int, Collection[str]] = {}) -> LeaveOneOut:
    """Held-out Dice of the painted slices of labels with >= 2 of them. On a slice between two other painted
    slices each of ``interior[label]`` (names from :data:`GAP_FILLERS`; the model when the label is not named)
    predicts it from those two; the model also walks to the outer painted slices when it is among them or no
    painted slice lies between two others (so registration or Fill alone costs no encoding of the slices in
    the gaps)."""
    result = LeaveOneOut()
    predictors = {"model": lambda others, held: predict_held_slice(model, others, held, rule) > 0.5,
                  "fill": lambda others, held: fill_held_slice(others, held),
                  "warp": lambda others, held: warp_held_slice(model, others, held) > 0.5}
    for label, seeds in seeds_by_label.items():
        if len(seeds) < 2:
            continue
        names = tuple(interior.get(label, ("model",)))
        inner = [held for held in seeds if min(seeds) < held < max(seeds)]
        scores = {name: {} for name in GAP_FILLERS}
        for held, truth in seeds.items():
            others = {s: m for s, m in seeds.items() if s != held}
            checked = names if held in inner else (("model",) if "model" in names or not inner else ())
            for name in checked:
                scores[name][held] = mask_dice(predictors[name](others, held), truth)
        for name in GAP_FILLERS:
            getattr(result, name)[label] = scores[name]
    return result
