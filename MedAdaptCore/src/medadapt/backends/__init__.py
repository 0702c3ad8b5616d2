"""Base models (backends) behind one small interface, loaded by name as the registry declares them
(:mod:`medadapt.backends.registry`). Importing this package loads no heavy package; a backend's module loads
with it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from medadapt.backends.allocator import keep_freed_memory
from medadapt.backends.registry import REGISTRY
from medadapt.errors import InputError

if TYPE_CHECKING:
    from medadapt.backends.base import PromptableBackend

BACKENDS = {name: backend.load for name, backend in REGISTRY.items()}
"""Backend name -> loader ``(device, checkpoint=None, input_size=None)``: a ``PromptableBackend``, or for a
volume model the frozen 3D backbone of the FSEFT heads (:mod:`medadapt.methods.fseft3d`)."""


def load_backend(name: str, device: str = "cpu", checkpoint: str | Path | None = None,
                 input_size: int | None = None) -> PromptableBackend:
    """Build the named backend with its pretrained weights on ``device``; ``checkpoint`` is a local weights
    file used instead of the default one, ``input_size`` a reduced input size (SAM-family models only).
    Freed tensor memory is kept in the process from then on (:func:`keep_freed_memory`)."""
    if name not in BACKENDS:
        raise InputError(f"backend: unknown model {name!r}; known: {', '.join(sorted(BACKENDS))}")
    keep_freed_memory()
    return BACKENDS[name](device, checkpoint, input_size)


__all__ = ["BACKENDS", "load_backend"]
