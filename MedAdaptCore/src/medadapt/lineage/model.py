"""Loading a lineage's current model: the base model with the lineage's delta added (checksums verified)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from medadapt.backends import load_backend
from medadapt.backends.base import PromptableBackend
from medadapt.errors import InputError
from medadapt.lineage.delta import apply_delta, model_identity
from medadapt.lineage.folder import DELTA, Lineage


@dataclass(frozen=True)
class BaseDelta:
    """The delta a backend's weights carry on its base checkpoint, and where it came from (saved with adapters
    trained on the model, so that they load without the lineage)."""

    tensors: dict[str, torch.Tensor]
    sha256: str
    lineage: str
    stage: int


def load_base(lineage: Lineage, device: str) -> PromptableBackend:
    """The lineage's base model (its checkpoint's checksum verified against the lineage's record)."""
    base = lineage.record.base_model
    backend = load_backend(base.name, device, base.checkpoint)
    if backend.checkpoint_sha256 != base.sha256:
        raise InputError(f"{lineage.path}: lineage was built on {base.name} weights {base.sha256[:12]}..., but "
                         f"the model loaded has {backend.checkpoint_sha256[:12]}...")
    return backend


def load_lineage_model(lineage: Lineage, device: str) -> PromptableBackend:
    """The lineage's current model M_t on ``device``: its base with the delta added, frozen, in eval mode; its
    ``checkpoint_sha256`` names base and delta together and ``base_delta`` holds the delta."""
    backend = load_base(lineage, device)
    if lineage.stage == 0:
        return backend
    return with_delta(backend, BaseDelta(lineage.delta(), lineage.record.delta_sha256, lineage.path.name,
                                         lineage.stage), str(lineage.path / DELTA))


def with_delta(backend: PromptableBackend, delta: BaseDelta, source: str) -> PromptableBackend:
    """``backend`` (base weights) with ``delta`` added; ``source`` names the delta's file in errors."""
    apply_delta(backend, delta.tensors, source)
    if not any(name.startswith("image_encoder.") for name in delta.tensors):
        backend.encoder_sha256 = backend.embedding_key  # the same image embeddings as the base model
    backend.checkpoint_sha256 = model_identity(backend.checkpoint_sha256, delta.sha256)
    backend.base_delta = delta
    return backend
