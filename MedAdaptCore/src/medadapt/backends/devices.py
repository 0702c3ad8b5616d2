"""Choosing the compute device, with a clear error when the one asked for is absent."""

from __future__ import annotations

import torch

from medadapt.errors import InputError

DEVICES = "auto, cpu, cuda (or cuda:N) or mps"


def mps_available() -> bool:
    """True on Apple Silicon with PyTorch's Metal backend."""
    backend = getattr(torch.backends, "mps", None)
    return backend is not None and backend.is_available()


def resolve_device(requested: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``mps`` (Apple Silicon), else ``cpu``; asking for an absent
    ``cuda`` or ``mps`` is an :class:`InputError`. On ``mps`` an operator Metal lacks runs on the CPU
    (PyTorch's ``PYTORCH_ENABLE_MPS_FALLBACK``, which the command line sets before torch is imported)."""
    requested = requested.lower()
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError("--device cuda: no CUDA GPU is available to PyTorch on this machine; use --device cpu")
        return requested
    if requested == "mps":
        if not mps_available():
            raise InputError("--device mps: PyTorch's Apple Metal backend is not available on this machine; "
                             "use --device cpu")
        return "mps"
    if requested == "cpu":
        return "cpu"
    raise InputError(f"--device: expected {DEVICES}, got {requested!r}")


def require_concrete(device: str) -> None:
    """:class:`InputError` unless ``device`` names one device (``cpu``, ``cuda``, ``cuda:N``, ``mps``): an
    :class:`AdaptConfig` holds the device the config builder resolved, never ``auto``."""
    if device == "cpu" or device == "mps" or device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        return
    raise InputError(f"AdaptConfig.device: expected cpu, cuda, cuda:N or mps, got {device!r} ('auto' is resolved by "
                     f"medadapt.options.build_config from the user's --device)")


def default_adapter_parts(device: str) -> tuple[str, ...]:
    """LoRA placement per device: decoder-side on the CPU and on Apple's MPS (frozen image embeddings are
    cached once; MPS speed is unmeasured), encoder and decoder on a CUDA GPU where a training step through the
    encoder is cheap."""
    return ("encoder", "decoder") if device.startswith("cuda") else ("decoder",)
