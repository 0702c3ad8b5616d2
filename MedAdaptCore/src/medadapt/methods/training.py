"""Adaptation: train a backend's adapter on exemplar (and synthetic) slices with jittered box prompts."""

from __future__ import annotations

import time

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.optimizers import WarmupCosineSchedule

from medadapt.backends.base import PromptableBackend
from medadapt.config import TrainConfig
from medadapt.progress import CancelFlag, Progress, ProgressCallback, check_cancel, report


def jittered_boxes(masks: torch.Tensor, jitter: float, margin: float, rng: np.random.Generator) -> torch.Tensor:
    """Boxes (n, 4) around (n, 1, S, S) masks, each side moved by up to ``jitter`` x the box size plus
    ``margin`` pixels, as boxes propagated from a neighbouring slice would be."""
    boxes = []
    size = masks.shape[-1]
    for mask in masks[:, 0].numpy():
        rows, cols = np.nonzero(mask)
        x0, x1, y0, y1 = cols.min(), cols.max() + 1, rows.min(), rows.max() + 1
        w, h = x1 - x0, y1 - y0
        shift = rng.uniform(-jitter, jitter, 4) * np.array([w, h, w, h])
        box = np.array([x0, y0, x1, y1], float) + shift + np.array([-margin, -margin, margin, margin])
        boxes.append(np.clip(box, 0, size))
    return torch.as_tensor(np.asarray(boxes), dtype=torch.float32)


def train(backend: PromptableBackend, frames: torch.Tensor, masks: torch.Tensor, config: TrainConfig,
          rng: np.random.Generator, embeddings: torch.Tensor | None = None,
          progress: ProgressCallback | None = None, cancel: CancelFlag | None = None) -> list[float]:
    """Train ``backend``'s trainable parameters on (n, 3, S, S) ``frames`` and (n, 1, S, S) ``masks``.

    With ``embeddings`` (n, C, h, w) precomputed by a frozen encoder, the encoder is skipped. Returns the loss
    per iteration. Checks ``cancel`` every iteration.
    """
    parameters = [p for p in backend.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = WarmupCosineSchedule(optimiser, warmup_steps=config.warmup, t_total=config.iterations)
    loss_fn = DiceCELoss(sigmoid=True, lambda_dice=config.dice_weight, lambda_ce=1.0)
    backend.train()
    backend.image_encoder.eval()  # keep frozen batch-norm statistics
    losses, started = [], time.monotonic()
    try:
        for iteration in range(config.iterations):
            check_cancel(cancel)
            batch = torch.as_tensor(rng.choice(len(masks), size=min(config.batch_size, len(masks)), replace=False))
            target = masks[batch]
            boxes = jittered_boxes(target, config.box_jitter, config.box_margin, rng)
            features = embeddings[batch] if embeddings is not None else backend.encode(frames[batch])
            logits, _ = backend.decode(features.to(backend.device), boxes)
            loss = loss_fn(logits, target.to(backend.device))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(loss.item())
            elapsed = time.monotonic() - started
            report(progress, Progress("adapt", iteration + 1, config.iterations, losses[-1],
                                      elapsed / (iteration + 1) * (config.iterations - iteration - 1)))
    finally:
        backend.eval()
    return losses
