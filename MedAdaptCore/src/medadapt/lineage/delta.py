"""A lineage's model as a delta on its base weights: the weight change a trained stage makes (its LoRA
updates merged, its fully trained decoder tensors' differences) and applying a delta to a loaded base model."""

from __future__ import annotations

import hashlib

import torch
from peft.tuners.lora.layer import Linear as LoraLinear

from medadapt.backends.base import PromptableBackend
from medadapt.errors import InputError
from medadapt.methods.lora import ADAPTER_NAME


def trained_values(backend: PromptableBackend) -> dict[str, torch.Tensor]:
    """Copies of the tensors a stage trains in full (not LoRA factors), to measure their change after training."""
    return {name: p.detach().cpu().clone() for name, p in backend.named_parameters()
            if p.requires_grad and "lora_" not in name}


def stage_change(backend: PromptableBackend, start: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weight change of a trained stage, keyed by the base model's parameter names: each LoRA layer's merged
    update (peft's ``get_delta_weight``) and each fully trained tensor's difference from ``start``."""
    change = {}
    for name, module in backend.named_modules():
        if isinstance(module, LoraLinear) and ADAPTER_NAME in module.lora_A:
            change[f"{name}.weight"] = module.get_delta_weight(ADAPTER_NAME).detach().cpu().contiguous()
    parameters = dict(backend.named_parameters())
    for name, value in start.items():
        change[name] = (parameters[name].detach().cpu() - value).contiguous()
    return change


def combined(delta: dict[str, torch.Tensor], change: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``delta`` followed by ``change`` (tensor-wise sum; keys of either)."""
    out = {name: value.clone() for name, value in delta.items()}
    for name, value in change.items():
        out[name] = out[name] + value if name in out else value.clone()
    return out


def apply_delta(backend: PromptableBackend, delta: dict[str, torch.Tensor], source: str) -> PromptableBackend:
    """Add ``delta`` to ``backend``'s weights in place; :class:`InputError` naming ``source`` when a tensor has
    no parameter of that name and shape in the model (a delta of another architecture, or tampered)."""
    parameters = dict(backend.named_parameters())
    wrong = sorted(name for name, value in delta.items()
                   if name not in parameters or parameters[name].shape != value.shape)
    if wrong:
        raise InputError(f"{source}: {len(wrong)} delta tensor(s) do not match the {backend.name} architecture "
                         f"(e.g. {wrong[0]})")
    with torch.no_grad():
        for name, value in delta.items():
            parameters[name].add_(value.to(parameters[name].device, parameters[name].dtype))
    return backend


def model_identity(base_sha256: str, delta_sha256: str | None) -> str:
    """SHA-256 naming base weights plus a delta (the base's own when there is no delta): what manifests and
    embedding caches record as the model's checksum."""
    if not delta_sha256:
        return base_sha256
    return hashlib.sha256(f"{base_sha256}+{delta_sha256}".encode()).hexdigest()
