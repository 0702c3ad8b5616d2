"""Choosing the compute device, with a clear error when CUDA is asked for but absent."""

from __future__ import annotations

import torch

from .errors import InputError


def resolve_device(requested: str) -> str:
    """``auto`` -> ``cuda`` when available else ``cpu``; ``cuda`` without a GPU is an :class:`InputError`."""
    requested = requested.lower()
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError("--device cuda: no CUDA GPU is available to PyTorch on this machine; use --device cpu")
        return requested
    if requested == "cpu":
        return "cpu"
    raise InputError(f"--device: expected auto, cpu or cuda, got {requested!r}")


def default_adapter_parts(device: str) -> tuple[str, ...]:
    """LoRA placement per device: decoder-side on the CPU (frozen image embeddings are cached once), encoder
    and decoder on a GPU where a training step through the encoder is cheap."""
    return ("encoder", "decoder") if device.startswith("cuda") else ("decoder",)
