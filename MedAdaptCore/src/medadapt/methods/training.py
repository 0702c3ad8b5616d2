"""Adaptation: train a backend's adapter on exemplar (and synthetic) slices with jittered box prompts."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
import torch.distributed as dist
from monai.losses import DiceCELoss
from monai.optimizers import WarmupCosineSchedule

from medadapt.backends.base import PromptableBackend
from medadapt.backends.distributed import distributed, world_size
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


def synchronise_start(parameters: list[torch.nn.Parameter]) -> None:
    """Give every process rank 0's values of ``parameters`` (when distributed)."""
    if distributed():
        for parameter in parameters:
            dist.broadcast(parameter.data, 0)


def average_gradients(parameters: list[torch.nn.Parameter]) -> None:
    """Replace each gradient by its mean over the processes (when distributed): what DDP does, for a model
    whose training step is not its ``forward``."""
    if distributed():
        world = world_size()
        for parameter in parameters:
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
            dist.all_reduce(parameter.grad)
            parameter.grad /= world


def optimisation_step(optimiser: torch.optim.Optimizer, schedule, parameters: list[torch.nn.Parameter],
                      loss: torch.Tensor) -> float:
    """One step on ``loss``: gradients (averaged over the processes when distributed), the optimiser and the
    learning-rate schedule; returns the loss value."""
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    average_gradients(parameters)
    optimiser.step()
    schedule.step()
    return loss.item()


def adamw_warmup_cosine(parameters: list[torch.nn.Parameter], learning_rate: float, weight_decay: float,
                        warmup: int, iterations: int) -> tuple[torch.optim.Optimizer, WarmupCosineSchedule]:
    """The optimiser of every end-to-end training loop: ``parameters`` set to rank 0's values (when
    distributed), AdamW, and a linear warm-up over ``warmup`` steps then cosine decay to ``iterations``."""
    synchronise_start(parameters)
    optimiser = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=weight_decay)
    return optimiser, WarmupCosineSchedule(optimiser, warmup_steps=warmup, t_total=iterations)


def run_steps(optimiser: torch.optim.Optimizer, schedule, parameters: list[torch.nn.Parameter], iterations: int,
              step_loss: Callable[[], torch.Tensor], stage: str, progress: ProgressCallback | None = None,
              cancel: CancelFlag | None = None) -> list[float]:
    """``iterations`` :func:`optimisation_step` s, each on the loss ``step_loss()`` computes on a new batch:
    checks ``cancel`` before and reports ``stage`` (step, loss, seconds left) after every step; returns the loss
    per step."""
    losses, started = [], time.monotonic()
    for step in range(iterations):
        check_cancel(cancel)
        losses.append(optimisation_step(optimiser, schedule, parameters, step_loss()))
        elapsed = time.monotonic() - started
        report(progress, Progress(stage, step + 1, iterations, losses[-1],
                                  elapsed / (step + 1) * (iterations - step - 1)))
    return losses


def train(backend: PromptableBackend, frames: torch.Tensor, masks: torch.Tensor, config: TrainConfig,
          rng: np.random.Generator, embeddings: torch.Tensor | None = None,
          progress: ProgressCallback | None = None, cancel: CancelFlag | None = None,
          extra_loss: Callable[[], torch.Tensor] | None = None) -> list[float]:
    """Train ``backend``'s trainable parameters on (n, 3, S, S) ``frames`` and (n, 1, S, S) ``masks``.

    With ``embeddings`` (n, C, h, w) precomputed by a frozen encoder, the encoder is skipped; ``extra_loss``
    adds a term to every step's loss (a lineage's distillation and regulariser). Under ``torchrun`` each process
    draws its own batches (seed ``rng`` per rank) and the gradients are averaged, so the processes stay
    identical. Returns the loss per iteration. Checks ``cancel`` every iteration.
    """
    parameters = [p for p in backend.parameters() if p.requires_grad]
    optimiser, schedule = adamw_warmup_cosine(parameters, config.learning_rate, config.weight_decay, config.warmup,
                                              config.iterations)
    loss_fn = DiceCELoss(sigmoid=True, lambda_dice=config.dice_weight, lambda_ce=1.0)

    def step_loss() -> torch.Tensor:
        batch = torch.as_tensor(rng.choice(len(masks), size=min(config.batch_size, len(masks)), replace=False))
        target = masks[batch]
        boxes = jittered_boxes(target, config.box_jitter, config.box_margin, rng)
        features = embeddings[batch] if embeddings is not None else backend.encode(frames[batch])
        logits, _ = backend.decode(features.to(backend.device), boxes)
        loss = loss_fn(logits, target.to(backend.device))
        return loss + extra_loss() if extra_loss is not None else loss

    backend.train()
    backend.image_encoder.eval()  # keep frozen batch-norm statistics
    try:
        return run_steps(optimiser, schedule, parameters, config.iterations, step_loss, "adapt", progress, cancel)
    finally:
        backend.eval()
