"""Segmenting from the painted slices by propagation with the foundation model: the ``zero-shot`` method, and
the last step of ``lora`` once its adapters are trained."""

from __future__ import annotations

from medadapt.methods.heads import HeadSet
from medadapt.methods.result import AdaptResult, AdaptRun
from medadapt.slices.between import check_exemplars
from medadapt.slices.labels import segment
from medadapt.slices.seeds import exemplar_seeds, prompts_by_label


def propagated_result(run: AdaptRun, losses: list[float] = (), heads: HeadSet | None = None) -> AdaptResult:
    """Propagate every label from its painted slices (and clicks) with ``run.model``; the leave-one-out checks
    decide where Fill or registration takes the gaps between painted slices and give the validation Dice of
    what segmented them."""
    prompts = prompts_by_label(run.points, run.exemplars.axis)
    checks, fillers = check_exemplars(run.model, run.exemplars, run.config)
    labels = segment(run.model, run.exemplars, exemplar_seeds(run.exemplars), run.config, prompts, run.progress,
                     run.cancel, fillers)
    return run.result(labels, validation_dice=checks.validation_dice(fillers), losses=list(losses), heads=heads)


def adapt_zero_shot(run: AdaptRun) -> AdaptResult:
    """``zero-shot``: the foundation model as it is, propagated from the painted slices."""
    return propagated_result(run)
