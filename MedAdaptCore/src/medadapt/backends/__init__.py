"""Promptable segmentation backends behind one small interface."""

from functools import partial

from medadapt.backends.allocator import keep_freed_memory
from medadapt.backends.base import PromptableBackend
from medadapt.backends.litemedsam import load_litemedsam
from medadapt.backends.sam import load_sam
from medadapt.backends.swinunetr import load_swinunetr


def _litemedsam(device: str, checkpoint=None, input_size=None) -> PromptableBackend:
    from medadapt.errors import InputError
    if input_size not in (None, 256):
        raise InputError(f"--input-size: litemedsam has a fixed 256 input, got {input_size}")
    return load_litemedsam(device) if checkpoint is None else load_litemedsam(device, checkpoint)


BACKENDS = {"litemedsam": _litemedsam, "swinunetr": load_swinunetr,
            **{name: partial(load_sam, name) for name in ("sam_vit_b", "sam_vit_l", "sam_vit_h", "medsam")}}
"""Backend name -> loader ``(device, checkpoint=None, input_size=None)``: a ``PromptableBackend``, or for
``swinunetr`` the frozen 3D backbone of the FSEFT heads (:mod:`medadapt.methods.fseft3d`)."""


def load_backend(name: str, device: str = "cpu", checkpoint=None, input_size: int | None = None
                 ) -> PromptableBackend:
    """Build the named backend with its pretrained weights on ``device``; ``checkpoint`` is a local weights
    file used instead of the default one, ``input_size`` a reduced input size (SAM-family models only).
    Freed tensor memory is kept in the process from then on (:func:`keep_freed_memory`)."""
    from medadapt.errors import InputError
    if name not in BACKENDS:
        raise InputError(f"backend: unknown model {name!r}; known: {', '.join(sorted(BACKENDS))}")
    keep_freed_memory()
    return BACKENDS[name](device, checkpoint, input_size)


__all__ = ["BACKENDS", "PromptableBackend", "load_backend"]
