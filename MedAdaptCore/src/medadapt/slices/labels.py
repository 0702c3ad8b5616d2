"""From seeds to a label stack: propagate each label's seeds, let Fill or registration take the gaps the
between-slice policy gives them, bound outward walks, and assemble one label per voxel."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medadapt.config import AdaptConfig, StopRule
from medadapt.io.exemplars import Exemplars
from medadapt.progress import CancelFlag, Progress, ProgressCallback, check_cancel, report
from medadapt.slices.between import fill_gaps, fill_max_gap, fillable_gaps
from medadapt.slices.model import SliceModel
from medadapt.slices.propagation import SlicePrompts, propagate
from medadapt.slices.seeds import largest_component
from medadapt.slices.size_prior import mean_spacing


def segment(model: SliceModel, exemplars: Exemplars | None, seeds_by_label: dict[int, dict[int, np.ndarray]],
            config: AdaptConfig, prompts: dict[int, SlicePrompts], progress: ProgressCallback | None = None,
            cancel: CancelFlag | None = None, fillers: dict[int, str] | None = None) -> np.ndarray:
    """Label stack (slice axis first) from :func:`label_probabilities` (see :func:`assign_labels`)."""
    probabilities = label_probabilities(model, exemplars, seeds_by_label, config, prompts, progress, cancel,
                                        fillers)
    return assign_labels(probabilities, exemplars, config)


def label_probabilities(model: SliceModel, exemplars: Exemplars | None,
                        seeds_by_label: dict[int, dict[int, np.ndarray]], config: AdaptConfig,
                        prompts: dict[int, SlicePrompts], progress: ProgressCallback | None = None,
                        cancel: CancelFlag | None = None, fillers: dict[int, str] | None = None
                        ) -> dict[int, np.ndarray]:
    """Foreground probability by label (slice axis first) from propagating each label's seed masks; outward
    walks of painted labels go at most :func:`outward_reach` slices; for the labels in ``fillers`` Fill or
    registration (``fill`` / ``warp``) replaces the model in the gaps between painted slices that
    :func:`fill_max_gap` allows."""
    fillers = fillers or {}
    labels = sorted(seeds_by_label)
    probabilities = {}
    for n, label in enumerate(labels):
        check_cancel(cancel)
        painted = exemplars is not None and label in exemplars.label_slices
        negatives = set(exemplars.negative_slices(label)) if painted else set()
        reach = outward_reach(exemplars, label, config.stop) if painted else None
        filled = label in fillers and exemplars is not None and len(exemplars.label_slices.get(label, [])) > 1
        max_gap = fill_max_gap(exemplars, config) if filled else None
        taken = fillable_gaps(exemplars.label_slices[label], max_gap) if filled else []
        probability = propagate(model, seeds_by_label[label], config.stop, prompts.get(label), negatives, reach, taken)
        if filled:
            probability = fill_gaps(probability, model, exemplars, label, fillers[label], max_gap)
        probabilities[label] = probability
        report(progress, Progress("segment", n + 1, len(labels)))
    return probabilities


def outward_reach(exemplars: Exemplars, label: int, rule: StopRule) -> int | None:
    """How many slices an outward walk of painted ``label`` may go beyond its outermost painted slice:
    ``rule.reach`` times the mean spacing between its painted slices (at least one slice); ``None`` (no
    limit but the stop rule) without ``rule.reach`` or with a single painted slice, which tells nothing of
    the structure's length along the slice axis."""
    slices = exemplars.label_slices[label]
    if rule.reach is None or len(slices) < 2:
        return None
    return max(1, int(np.ceil(rule.reach * mean_spacing(slices))))


def assign_labels(probabilities: dict[int, np.ndarray], exemplars: Exemplars | None, config: AdaptConfig
                  ) -> np.ndarray:
    """Label stack from foreground probabilities by label (slice axis first), post-processed per
    ``config``; overlaps go to the most confident label; painted slices keep their painted labels."""
    shape = next(iter(probabilities.values())).shape
    best = np.zeros(shape, np.float32)
    out = np.zeros(shape, np.int32)
    for label in sorted(probabilities):
        probability = probabilities[label]
        mask = probability > 0.5
        if config.fill_holes:
            mask = np.stack([ndimage.binary_fill_holes(m) for m in mask])
        if config.largest_component:
            mask = largest_component(mask)
        take = mask & (probability > best)
        out[take], best[take] = label, probability[take]
    if exemplars is not None:
        painted = np.moveaxis(exemplars.labelmap.array, exemplars.axis, 0)
        for s in exemplars.slices:
            out[s] = painted[s]
    return out
