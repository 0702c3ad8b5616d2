"""K&G RFT (knowledge and generalisation retention fine-tuning): the terms a MedSeqFT stage adds to the task's
segmentation loss while its LoRA trains.

- Knowledge: on the slices earlier tasks retained, the student's mask logits are distilled towards those of
  the previous model M_{t-1} (what the lineage knew before this task).
- Generalisation: on this task's MDS-selected slices, towards those of the base model M_0 (the pre-trained
  behaviour where it was already right).
- Regulariser: the squared size of the stage's weight update (each LoRA layer's merged update and each fully
  trained tensor's change), an L2-SP penalty that keeps M_t near M_{t-1}.

Distillation compares decoder logits (the model's output, where the teacher's knowledge is expressed) by
binary cross-entropy against the teacher's probabilities, on fixed boxes around the retained masks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from peft.tuners.lora.layer import Linear as LoraLinear

from medadapt.backends.base import PromptableBackend
from medadapt.methods.lora import ADAPTER_NAME


@dataclass
class Memory:
    """Slices to distil on: their encoder input (``embeddings``, or ``frames`` when the encoder trains),
    fixed prompt ``boxes`` (m, 4) and the teacher's mask ``logits`` (m, 1, s, s)."""

    boxes: torch.Tensor
    logits: torch.Tensor
    embeddings: torch.Tensor | None = None
    frames: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.boxes.shape[0]

    @staticmethod
    def joined(parts: list["Memory"]) -> "Memory | None":
        """One memory of all ``parts`` (``None`` when empty)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return None
        cat = (lambda name: None if getattr(parts[0], name) is None
               else torch.cat([getattr(p, name) for p in parts]))
        return Memory(cat("boxes"), cat("logits"), cat("embeddings"), cat("frames"))


def update_size(student: PromptableBackend, start: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum of squares of the stage's weight update: LoRA layers' merged updates and fully trained tensors'
    change from ``start``."""
    total = torch.zeros((), device=student.device)
    for module in student.modules():
        if isinstance(module, LoraLinear) and ADAPTER_NAME in module.lora_A:
            total = total + module.get_delta_weight(ADAPTER_NAME).pow(2).sum()
    parameters = dict(student.named_parameters())
    for name, value in start.items():
        total = total + (parameters[name] - value.to(student.device)).pow(2).sum()
    return total


def retention_loss(student: PromptableBackend, memory: Memory | None, start: dict[str, torch.Tensor],
                   distil_weight: float, update_weight: float, batch_size: int, rng: np.random.Generator
                   ) -> Callable[[], torch.Tensor]:
    """The per-step term ``distil_weight`` x distillation on a random batch of ``memory`` + ``update_weight``
    x :func:`update_size`, for :func:`medadapt.methods.training.train`'s ``extra_loss``."""
    def term() -> torch.Tensor:
        loss = update_weight * update_size(student, start)
        if memory is not None and distil_weight:
            batch = torch.as_tensor(rng.choice(len(memory), size=min(batch_size, len(memory)), replace=False))
            features = (memory.embeddings[batch] if memory.embeddings is not None
                        else student.encode(memory.frames[batch]))
            logits, _ = student.decode(features.to(student.device), memory.boxes[batch])
            target = torch.sigmoid(memory.logits[batch].to(student.device))
            loss = loss + distil_weight * F.binary_cross_entropy_with_logits(logits, target)
        return loss
    return term
