"""What segments the slices between painted ones: the model's propagation, Fill-between-slices, or the painted
masks carried by registration, chosen per structure by leave-one-out checks of the painted slices
(``AdaptConfig.between``)."""

from __future__ import annotations

import numpy as np

from medadapt.config import AdaptConfig
from medadapt.io.exemplars import Exemplars
from medadapt.slices.fill import fill_between_slices
from medadapt.slices.leave_one_out import GAP_FILLERS, LeaveOneOut, leave_one_out
from medadapt.slices.model import SliceModel
from medadapt.slices.registration import carry_between
from medadapt.slices.seeds import exemplar_seeds


def check_exemplars(model: SliceModel, exemplars: Exemplars, config: AdaptConfig
                    ) -> tuple[LeaveOneOut, dict[int, str]]:
    """Leave-one-out checks of every label's painted slices and what fills each label's gaps between painted
    slices (:func:`chosen_gap_fillers`); ``checks.validation_dice(fillers)`` is the validation Dice of ``adapt``."""
    checks = leave_one_out(model, exemplar_seeds(exemplars), config.stop, interior_checks(exemplars, config))
    return checks, chosen_gap_fillers(checks, exemplars, config)


def gap_fillers(model: SliceModel, exemplars: Exemplars, config: AdaptConfig) -> dict[int, str]:
    """What fills each label's gaps between painted slices, running only the leave-one-out walks this choice
    needs: none for ``model``, ``fill`` or ``warp``, those of labels with a gap to fill for ``auto``."""
    scored = _scored_labels(exemplars, config)
    seeds = {label: masks for label, masks in exemplar_seeds(exemplars).items() if label in scored}
    return chosen_gap_fillers(leave_one_out(model, seeds, config.stop, interior_checks(exemplars, config)),
                              exemplars, config)


def interior_checks(exemplars: Exemplars, config: AdaptConfig) -> dict[int, tuple[str, ...]]:
    """Which gap fillers the leave-one-out checks score on each label's painted slices that lie between two
    others: the configured one for ``fill`` / ``warp``, all three for ``auto``'s labels with a gap to fill, the
    model otherwise."""
    if config.between in ("fill", "warp"):
        return {label: (config.between,) for label in exemplars.labels}
    return {label: GAP_FILLERS for label in _scored_labels(exemplars, config)}


def chosen_gap_fillers(checks: LeaveOneOut, exemplars: Exemplars, config: AdaptConfig) -> dict[int, str]:
    """Label -> ``fill`` or ``warp`` for the labels whose gaps between painted slices are not the model's:
    every label for ``config.between`` ``fill`` / ``warp``; for ``auto``, each label's best held-out filler
    (:meth:`LeaveOneOut.best_gap_filler`); none for ``model``."""
    if config.between in ("fill", "warp"):
        return {label: config.between for label in exemplars.labels}
    if config.between != "auto":
        return {}
    chosen = {label: checks.best_gap_filler(label) for label in exemplars.labels}
    return {label: filler for label, filler in chosen.items() if filler != "model"}


def _scored_labels(exemplars: Exemplars, config: AdaptConfig) -> set[int]:
    """Labels whose held-out checks decide what fills their gaps (``auto`` only; see :func:`gap_labels`)."""
    return gap_labels(exemplars, config) if config.between == "auto" else set()


def fill_gaps(probability: np.ndarray, model: SliceModel, exemplars: Exemplars, label: int, filler: str,
              max_gap: float | None = None) -> np.ndarray:
    """``probability`` (slice axis first, as in :func:`segment`) with ``filler`` (``fill``: Fill-between-slices;
    ``warp``: the painted masks carried by registration of ``model``'s slices) taking over in the gaps between
    consecutive painted slices of ``label`` that are at most ``max_gap`` slices apart (every gap when ``None``)."""
    painted = exemplars.label_slices[label]
    gaps = fillable_gaps(painted, max_gap)
    if not gaps:
        return probability
    out = probability.copy()
    masks = np.moveaxis(exemplars.labelmap.array, exemplars.axis, 0) == label
    if filler == "warp":
        for low, high in gaps:
            for s, carried in carry_between(model.stack, low, masks[low], high, masks[high], model.cancel).items():
                out[s] = carried
        return out
    only = exemplars.labelmap.with_array((exemplars.labelmap.array == label).astype(np.int16))
    filled = np.moveaxis(fill_between_slices(Exemplars(only, exemplars.axis, painted, {1: painted})),
                         exemplars.axis, 0) > 0
    for low, high in gaps:
        out[low + 1:high] = filled[low + 1:high]
    return out


def fill_max_gap(exemplars: Exemplars, config: AdaptConfig) -> float | None:
    """Longest gap (in slices) Fill or registration may take over: ``config.fill_max_gap_mm`` for ``auto``, any
    for ``fill`` and ``warp``."""
    if config.between in ("fill", "warp"):
        return None
    return config.fill_max_gap_mm / float(tuple(reversed(exemplars.labelmap.geometry.spacing))[exemplars.axis])


def fillable_gaps(painted: list[int], max_gap: float | None) -> list[tuple[int, int]]:
    """Consecutive painted slices (low, high) with unpainted slices between them, at most ``max_gap`` slices
    apart (any distance when ``None``)."""
    return [(low, high) for low, high in zip(painted[:-1], painted[1:])
            if high - low > 1 and (max_gap is None or high - low <= max_gap)]


def gap_labels(exemplars: Exemplars, config: AdaptConfig) -> set[int]:
    """Labels with a gap between consecutive painted slices that Fill or registration may take over
    (:func:`fill_max_gap`)."""
    max_gap = fill_max_gap(exemplars, config)
    return {label for label, painted in exemplars.label_slices.items() if fillable_gaps(painted, max_gap)}
