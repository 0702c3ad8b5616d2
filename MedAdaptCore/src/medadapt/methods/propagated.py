"""Segmenting from the painted slices by propagation with the foundation model: the ``zero-shot`` method, and
the last step of ``lora`` once its adapters are trained."""

from __future__ import annotations

import numpy as np

from medadapt.errors import InputError
from medadapt.methods.heads import HeadSet
from medadapt.methods.result import AdaptResult, AdaptRun
from medadapt.slices.between import check_exemplars
from medadapt.slices.grow import grow_from_seeds
from medadapt.slices.grow_referee import continue_with_grow, grow_between, grow_held_out, grow_wins
from medadapt.slices.labels import segment
from medadapt.slices.leave_one_out import LeaveOneOut
from medadapt.slices.seeds import exemplar_seeds, prompts_by_label


def propagated_result(run: AdaptRun, losses: list[float] = (), heads: HeadSet | None = None) -> AdaptResult:
    """Propagate every label from its painted slices (and clicks) with ``run.model``; the leave-one-out checks
    decide where Fill or registration takes the gaps between painted slices and give the validation Dice of
    what segmented them."""
    prompts = prompts_by_label(run.points, run.exemplars.axis)
    checks, fillers = check_exemplars(run.model, run.exemplars, run.config)
    labels = segment(run.model, run.exemplars, exemplar_seeds(run.exemplars), run.config, prompts, run.progress,
                     run.cancel, fillers)
    validation = checks.validation_dice(fillers)
    grown = {}
    if run.config.grow_referee and not prompts:
        grown = refereed_by_grow(run, checks, fillers)
        validation.update(grown)
        with_grow(labels, run, set(grown))
    return run.result(labels, validation_dice=validation, losses=list(losses), heads=heads,
                      grown_labels=sorted(grown))


def with_grow(labels: np.ndarray, run: AdaptRun, refereed: set[int]) -> None:
    """Slicer's Grow from seeds in ``labels`` (slice axis first, in place): between the outermost painted slices
    of the ``refereed`` labels, and beyond every label's outermost painted slices where its walk stopped while
    Grow's region goes on (:mod:`medadapt.slices.grow_referee`); nothing without slicer-core."""
    try:
        grown = np.moveaxis(grow_from_seeds(run.image.array, run.exemplars), run.exemplars.axis, 0)
    except InputError:  # no slicer-core: the filter is absent, MedAdapt's own result stands
        return
    for label, painted in run.exemplars.label_slices.items():
        if label in refereed:
            grow_between(labels, grown, label, min(painted), max(painted))
        continue_with_grow(labels, grown, label, min(painted), max(painted))


def refereed_by_grow(run: AdaptRun, checks: LeaveOneOut, fillers: dict[int, str]) -> dict[int, float]:
    """Label -> Grow's mean held-out Dice, for the labels the grow referee gives to Grow from seeds
    (:mod:`medadapt.slices.grow_referee`); none without slicer-core, which carries the filter."""
    try:
        grow = grow_held_out(run.image.array, run.exemplars)
    except InputError:  # no slicer-core: the filter is absent, MedAdapt's own result stands
        return {}
    chosen = {}
    for label, scores in grow.items():
        filler = getattr(checks, fillers.get(label, "model")).get(label, {})
        if grow_wins(scores, filler):
            chosen[label] = float(np.mean(list(scores.values())))
    return chosen


def adapt_zero_shot(run: AdaptRun) -> AdaptResult:
    """``zero-shot``: the foundation model as it is, propagated from the painted slices."""
    return propagated_result(run)
