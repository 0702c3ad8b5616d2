"""Maximum data similarity (MDS) selection: a task's slices most like what the base model was pre-trained on.

MedSeqFT ranks a task's samples by the pre-trained model's own pre-training loss on them (its self-supervised
head's loss there) and keeps those with the lowest. A promptable model's pre-training objective is the mask it
predicts from a box, so here a slice's score is the base model's segmentation loss (Dice + cross-entropy, the
training loss) on that slice from the box around its mask: no reference data is needed (LiteMedSAM's training
set is not available) and the measure lives in the pre-trained model's own output space. Box prompts are
deterministic, so one pass replaces the paper's average over random maskings."""

from __future__ import annotations

import numpy as np
import torch
from monai.losses import DiceCELoss

from medadapt.backends.base import PromptableBackend
from medadapt.config import TrainConfig
from medadapt.methods.training import jittered_boxes
from medadapt.progress import CancelFlag, Progress, ProgressCallback, check_cancel, report


@torch.no_grad()
def encode_all(backend: PromptableBackend, frames: torch.Tensor, progress: ProgressCallback | None = None,
               cancel: CancelFlag | None = None, what: str = "encode slices") -> torch.Tensor:
    """Image embeddings of (n, 3, S, S) ``frames``, one slice at a time (progress under ``what``)."""
    out = []
    for n in range(frames.shape[0]):
        check_cancel(cancel)
        out.append(backend.encode(frames[n:n + 1]).cpu())
        report(progress, Progress(what, n + 1, frames.shape[0]))
    return torch.cat(out)


def mask_boxes(masks: torch.Tensor, margin: float) -> torch.Tensor:
    """Boxes (n, 4) around (n, 1, S, S) masks with ``margin`` pixels, no jitter: the prompts of scoring."""
    return jittered_boxes(masks, 0.0, margin, np.random.default_rng(0))


@torch.no_grad()
def box_logits(backend: PromptableBackend, embeddings: torch.Tensor, masks: torch.Tensor, margin: float,
               chunk: int = 8) -> torch.Tensor:
    """Mask logits (n, 1, s, s) of ``backend`` on ``embeddings`` prompted with the box around each mask."""
    boxes = mask_boxes(masks, margin)
    parts = [backend.decode(embeddings[i:i + chunk].to(backend.device), boxes[i:i + chunk])[0].cpu()
             for i in range(0, embeddings.shape[0], chunk)]
    return torch.cat(parts)


def pretraining_losses(base: PromptableBackend, embeddings: torch.Tensor, masks: torch.Tensor,
                       train: TrainConfig) -> np.ndarray:
    """Per slice, the base model's box-prompted segmentation loss (``train``'s Dice / cross-entropy mix)."""
    loss_fn = DiceCELoss(sigmoid=True, lambda_dice=train.dice_weight, lambda_ce=1.0)
    logits = box_logits(base, embeddings, masks, train.box_margin)
    return np.array([float(loss_fn(logits[i:i + 1], masks[i:i + 1])) for i in range(masks.shape[0])])


def most_similar(losses: np.ndarray, count: int) -> list[int]:
    """Indices of the ``count`` lowest ``losses`` (ties by index), in index order."""
    return sorted(np.argsort(losses, kind="stable")[:count].tolist())


def slice_dice(logits: torch.Tensor, masks: torch.Tensor) -> np.ndarray:
    """Dice of thresholded ``logits`` against ``masks``, per slice."""
    predicted, truth = logits > 0, masks > 0.5
    overlap = (predicted & truth).flatten(1).sum(1).float()
    sizes = predicted.flatten(1).sum(1).float() + truth.flatten(1).sum(1).float()
    return torch.where(sizes > 0, 2 * overlap / sizes.clamp(min=1), torch.ones_like(sizes)).numpy()
