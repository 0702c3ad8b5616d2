"""FSEFT black-box adaptation: train small heads (:mod:`medadapt.methods.heads`) on frozen dense slice features
(:mod:`medadapt.slices.features`) from the painted slices, optionally with constrained transductive inference, and
segment every slice without prompts.

Training follows FSEFT: Dice loss only, AdamW without weight decay, linear warm-up then cosine decay (MONAI
``WarmupCosineSchedule``), early stop when the exponentially smoothed training loss stops improving.
Constrained transductive inference (``transductive=True``) adds, from ``size_start`` of the iterations on,
``size_weight`` x the hinge of :func:`medadapt.slices.size_prior.size_penalty` between the volume predicted on the
unlabelled query volume (estimated from ``query_slices`` random slices per step) and the size prior S of
:func:`medadapt.slices.size_prior.expected_size` estimated from the painted slices.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from monai.optimizers import WarmupCosineSchedule
from torch import nn

from medadapt.config import HeadConfig, SynthesisConfig
from medadapt.io.exemplars import Exemplars
from medadapt.methods.heads import HeadSet, SegmentationHead
from medadapt.methods.registry import method_for
from medadapt.methods.result import AdaptResult, AdaptRun
from medadapt.methods.synthesis import synthesize
from medadapt.progress import CancelFlag, Progress, ProgressCallback, check_cancel, report
from medadapt.slices.features import SliceFeatures
from medadapt.slices.labels import assign_labels
from medadapt.slices.model import SliceModel
from medadapt.slices.seeds import largest_component, segment_in_box
from medadapt.slices.size_prior import expected_size, size_penalty
from medadapt.slices.stack import spacing_rcs


def _frame_logits(head: SegmentationHead, features: torch.Tensor, size: int) -> torch.Tensor:
    logits = head(features)
    return F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)


def _predicted_size(head: SegmentationHead, query: SliceFeatures, count: int,
                    rng: np.random.Generator) -> torch.Tensor:
    picked = rng.choice(len(query), size=min(count, len(query)), replace=False)
    total = sum(torch.sigmoid(query.model.frame.logits_to_slice(head(query(int(i))))).sum() for i in picked)
    return total * len(query) / len(picked)


class SmoothedStop:
    """Early stop on an exponentially smoothed loss: ``update`` returns True once it has not improved by
    ``min_delta`` for ``patience`` steps; ``reset`` starts over (when the loss itself changes)."""

    def __init__(self, smoothing: float, patience: int, min_delta: float):
        self.smoothing, self.patience, self.min_delta = smoothing, patience, min_delta
        self.reset()

    def reset(self) -> None:
        """Forget the history."""
        self.value, self.best, self.stale = None, float("inf"), 0

    def update(self, loss: float) -> bool:
        """Add one loss; True when training should stop."""
        self.value = loss if self.value is None else self.smoothing * self.value + (1 - self.smoothing) * loss
        if self.value < self.best - self.min_delta:
            self.best, self.stale = self.value, 0
        else:
            self.stale += 1
        return self.stale >= self.patience


def optimise(head: nn.Module, batch_loss: Callable[[], torch.Tensor], config: HeadConfig,
             predicted_size: Callable[[], torch.Tensor] | None = None, prior: float | None = None,
             progress: ProgressCallback | None = None, cancel: CancelFlag | None = None) -> list[float]:
    """FSEFT's training loop for ``head``: ``batch_loss()`` is the Dice loss of a new random batch; with
    ``predicted_size()`` (the structure volume on the query volume) and ``prior`` the size constraint joins
    after ``config.size_start``. Returns the loss per iteration."""
    optimiser = torch.optim.AdamW(head.parameters(), lr=config.learning_rate, weight_decay=0.0)
    schedule = WarmupCosineSchedule(optimiser, warmup_steps=config.warmup, t_total=config.iterations)
    stop = SmoothedStop(config.smoothing, config.patience, config.min_delta)
    constrain_from = int(config.size_start * config.iterations) if predicted_size is not None and prior else None
    losses = []
    head.train()
    for iteration in range(config.iterations):
        check_cancel(cancel)
        loss = batch_loss()
        constrained = constrain_from is not None and iteration >= constrain_from
        if constrained:
            loss = loss + config.size_weight * size_penalty(predicted_size(), prior, config.size_tolerance)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(loss.item())
        report(progress, Progress("train head", iteration + 1, config.iterations, losses[-1]))
        if constrained and iteration == constrain_from:
            stop.reset()
        if stop.update(losses[-1]) and (constrain_from is None or constrained):
            break
    head.eval()
    return losses


def train_head(head: SegmentationHead, features: torch.Tensor, masks: torch.Tensor, config: HeadConfig,
               rng: np.random.Generator, query: SliceFeatures | None = None, prior: float | None = None,
               progress: ProgressCallback | None = None, cancel: CancelFlag | None = None) -> list[float]:
    """Train ``head`` on (n, C, h, w) frozen ``features`` and (n, 1, S, S) frame ``masks``; returns the loss
    per iteration. With ``query`` and ``prior`` the size constraint joins after ``config.size_start``."""
    dice = DiceLoss(sigmoid=True, batch=True)

    def batch_loss() -> torch.Tensor:
        batch = torch.as_tensor(rng.choice(len(masks), size=min(config.batch_size, len(masks)), replace=False))
        return dice(_frame_logits(head, features[batch], masks.shape[-1]), masks[batch])

    size = (lambda: _predicted_size(head, query, config.query_slices, rng)) if query is not None else None
    return optimise(head, batch_loss, config, size, prior, progress, cancel)


def label_prior(exemplars: Exemplars, label: int, spacing_rcs: tuple[float, float, float],
                config: HeadConfig) -> float:
    """Size prior S (voxels) of ``label`` from its painted slices (see :func:`expected_size`)."""
    slices = exemplars.label_slices[label]
    areas = [float(np.count_nonzero(exemplars.slice_mask(label, s))) for s in slices]
    n_slices = exemplars.labelmap.array.shape[exemplars.axis]
    return expected_size(slices, areas, exemplars.negative_slices(label), n_slices, spacing_rcs,
                         config.outlier_min_count)


def label_examples(features: SliceFeatures, exemplars: Exemplars, label: int, synthesis: SynthesisConfig,
                   rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and frame masks of every painted slice (empty masks where ``label`` is absent) plus
    ``synthesis.per_exemplar`` synthetic pairs of each slice holding it."""
    model = features.model
    painted = np.moveaxis(exemplars.labelmap.array, exemplars.axis, 0)
    feats = [features(s) for s in exemplars.slices]
    masks = [painted[s] == label for s in exemplars.slices]
    if synthesis.per_exemplar > 0:
        images, synthetic = [], []
        for s in exemplars.label_slices[label]:
            for image, mask in synthesize(model.stack[s], painted[s] == label, synthesis, rng):
                images.append(image); synthetic.append(mask)
        if images:
            feats.append(features.of_frames(model.frame.image_to_frame(np.asarray(images))))
            masks.extend(synthetic)
    return torch.cat(feats), model.frame.mask_to_frame(np.asarray(masks))


def fit_heads(features: SliceFeatures, exemplars: Exemplars, kind: str, config: HeadConfig,
              synthesis: SynthesisConfig, rng: np.random.Generator, transductive: bool = False,
              spacing_rcs: tuple[float, float, float] = (1.0, 1.0, 1.0),
              progress: ProgressCallback | None = None, cancel: CancelFlag | None = None
              ) -> tuple[HeadSet, dict[int, list[float]], dict[int, float]]:
    """Heads of ``kind`` for every painted label; returns (heads, losses by label, size priors by label —
    only for ``transductive``, whose constraint uses all slices of ``features`` as the query volume)."""
    heads, losses, priors = None, {}, {}
    for label in exemplars.labels:
        x, masks = label_examples(features, exemplars, label, synthesis, rng)
        if heads is None:
            heads = HeadSet(kind, features.source, x.shape[1], exemplars.labels, config.adapter_width)
        if transductive:
            priors[label] = label_prior(exemplars, label, spacing_rcs, config)
        losses[label] = train_head(heads.heads[str(label)], x, masks, config, rng,
                                   features if transductive else None, priors.get(label), progress, cancel)
    return heads, losses, priors


def adapt_heads(run: AdaptRun) -> AdaptResult:
    """FSEFT methods on a 2D slice model: heads trained on frozen features of the painted slices segment every
    slice."""
    method = method_for(run.config.method)
    features = SliceFeatures(run.model, run.config.head.features)
    heads, losses, priors = fit_heads(features, run.exemplars, method.head_kind, run.config.head,
                                      run.config.synthesis, run.rng, method.transductive,
                                      spacing_rcs(run.image, run.exemplars.axis), run.progress, run.cancel)
    labels = assign_labels(heads.probabilities(features, run.cancel, run.progress), run.exemplars, run.config)
    return run.result(labels, losses=[v for label in losses for v in losses[label]], heads=heads,
                      size_priors=priors)


def seeds_from_heads(model: SliceModel, heads: HeadSet, margin: float, cancel: CancelFlag | None = None,
                     progress: ProgressCallback | None = None) -> dict[int, dict[int, np.ndarray]]:
    """Seed masks without any prompt: per label, the slice where the largest connected component of the
    heads' prediction is widest, segmented by ``model`` from that component's box (grown by ``margin`` frame
    pixels) there."""
    seeds = {}
    for label, probability in heads.probabilities(SliceFeatures(model, heads.source), cancel, progress).items():
        found = largest_component(probability > 0.5)
        if not found.any():
            continue
        index = int(np.argmax(found.sum(axis=(1, 2))))
        seed = segment_in_box(model, index, found[index], margin)
        if seed.any():
            seeds[label] = {index: seed}
    return seeds
