"""LoRA adapters (``peft``) on a backend's attention projections, and selecting what trains."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from peft import LoraConfig, inject_adapter_in_model

from .backends.base import PromptableBackend

ADAPTER_NAME = "medadapt"


@dataclass
class AdapterConfig:
    """Which parts get LoRA (``encoder``, ``decoder``), its rank, and whether the decoder heads train fully."""

    parts: tuple[str, ...] = ("decoder",)
    rank: int = 4
    alpha: float = 8.0
    train_decoder_heads: bool = True


def add_lora(backend: PromptableBackend, config: AdapterConfig) -> PromptableBackend:
    """Inject LoRA layers in place and leave only the adapter (and decoder heads) trainable."""
    unknown = [p for p in config.parts if p not in backend.lora_targets]
    if unknown:
        raise ValueError(f"adapter parts {unknown} unknown; choose from {sorted(backend.lora_targets)}")
    pattern = "|".join(f"({backend.lora_targets[p]})" for p in config.parts)
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=0.0, target_modules=pattern,
                      bias="none")
    inject_adapter_in_model(lora, backend, adapter_name=ADAPTER_NAME)
    for name, parameter in backend.named_parameters():
        parameter.requires_grad_("lora_" in name or (config.train_decoder_heads and
                                                     name.startswith(backend.trainable_heads)))
    return backend


def adapter_state(backend: PromptableBackend) -> dict[str, torch.Tensor]:
    """The trainable tensors (LoRA matrices and decoder heads), detached on the CPU."""
    return {name: p.detach().cpu().contiguous() for name, p in backend.named_parameters() if p.requires_grad}


def trainable_count(backend: PromptableBackend) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in backend.parameters() if p.requires_grad)
