"""Promptable segmentation backends behind one small interface."""

from .base import PromptableBackend
from .litemedsam import load_litemedsam

BACKENDS = {"litemedsam": load_litemedsam}
"""Backend name -> loader ``(device) -> PromptableBackend``."""


def load_backend(name: str, device: str = "cpu") -> PromptableBackend:
    """Build the named backend with its pretrained weights on ``device``."""
    from ..errors import InputError
    if name not in BACKENDS:
        raise InputError(f"backend: unknown model {name!r}; known: {', '.join(sorted(BACKENDS))}")
    return BACKENDS[name](device)


__all__ = ["BACKENDS", "PromptableBackend", "load_backend"]
