"""Training the universal network: mixed batches of (example, task) pairs — slices of encoded volumes for the
slice network, augmented patches for the volume network —, BCE + Dice, a small modality-classification term,
AdamW with warm-up and cosine decay; unchanged under ``torchrun`` (each process draws its own batches, gradients
are averaged).

Partial labels: a volume contributes pairs only for the tasks it is labelled for, so a volume labelled for the
liver alone teaches nothing about the spleen — the loss of every task it is not labelled for is masked out by
never being drawn. Each step draws a volume by its weight (each entry's ``weight``; by default every labelled
volume equally often) and one of its tasks uniformly; the volume draws the example (:meth:`example`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss

from medadapt.backends.distributed import rank
from medadapt.methods.training import adamw_warmup_cosine, run_steps
from medadapt.progress import CancelFlag, ProgressCallback
from medadapt.universal.priors import PriorConditioned
from medadapt.universal.slices import EncodedVolume
from medadapt.universal.volumes import PatchVolume

TrainingVolume = EncodedVolume | PatchVolume


@dataclass(frozen=True)
class TrainSettings:
    """Steps, examples per step, learning rate, weight decay, warm-up steps, the modality term's weight, slices
    kept per volume and the seed."""

    iterations: int = 600
    batch_size: int = 8
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 30
    modality_weight: float = 0.1
    max_slices: int = 64
    seed: int = 0


def labelled_pairs(volumes: list[TrainingVolume]) -> list[tuple[int, str]]:
    """Every (volume index, task) the loss may see: only the tasks each volume is labelled for."""
    return [(v, task) for v, volume in enumerate(volumes) for task in volume.masks]


def draw_batch(volumes: list[TrainingVolume], size: int, rng: np.random.Generator) -> list[tuple[int, str]]:
    """``size`` (volume, task) pairs: volume by weight, a labelled task uniformly."""
    weights = np.asarray([volume.weight for volume in volumes], float)
    picked = rng.choice(len(volumes), size=size, p=weights / weights.sum())
    batch = []
    for v in picked:
        tasks = list(volumes[v].masks)
        batch.append((int(v), tasks[int(rng.integers(len(tasks)))]))
    return batch


class PairLoss:
    """BCE on every pair plus Dice on the pairs whose mask is not empty (a slice without the structure has no
    Dice to learn from; its BCE teaches "nothing here"), on logits upsampled to the masks' size."""

    def __init__(self):
        self.dice = DiceLoss(sigmoid=True, reduction="none")

    def __call__(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        if logits.shape != masks.shape:
            logits = F.interpolate(logits, size=masks.shape[2:], mode="bilinear", align_corners=False)
        loss = F.binary_cross_entropy_with_logits(logits, masks)
        present = masks.flatten(1).any(1)
        if present.any():
            loss = loss + self.dice(logits[present], masks[present]).mean()
        return loss


def train_network(network: PriorConditioned, volumes: list[TrainingVolume], settings: TrainSettings,
                  parameters: list[torch.nn.Parameter] | None = None, device: str = "cpu",
                  progress: ProgressCallback | None = None, cancel: CancelFlag | None = None) -> list[float]:
    """Train ``parameters`` (default: all of ``network``'s) on ``volumes``; returns the loss per step. Checks
    ``cancel`` every step; under ``torchrun`` rank r seeds its batches with ``seed + r``."""
    rng = np.random.default_rng(settings.seed + rank())
    parameters = list(network.parameters()) if parameters is None else parameters
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    for parameter in parameters:
        parameter.requires_grad_(True)
    optimiser, schedule = adamw_warmup_cosine(parameters, settings.learning_rate, settings.weight_decay,
                                              min(settings.warmup, settings.iterations // 2), settings.iterations)
    pair_loss, modalities = PairLoss(), network.modalities

    def step_loss() -> torch.Tensor:
        batch = draw_batch(volumes, settings.batch_size, rng)
        inputs, masks = zip(*(volumes[v].example(t, rng) for v, t in batch))
        kinds = [volumes[v].modality for v, _ in batch]
        logits, modality_logits = network(torch.cat(inputs).to(device), [t for _, t in batch], kinds)
        loss = pair_loss(logits, torch.cat(masks).to(device))
        if network.shape.modality_priors and len(modalities) > 1 and settings.modality_weight > 0:
            target = torch.as_tensor([modalities.index(k) for k in kinds], device=device)
            loss = loss + settings.modality_weight * F.cross_entropy(modality_logits, target)
        return loss

    network.to(device).train()
    try:
        return run_steps(optimiser, schedule, parameters, settings.iterations, step_loss, "train universal model",
                         progress, cancel)
    finally:
        network.eval()
        for parameter in network.parameters():
            parameter.requires_grad_(False)
