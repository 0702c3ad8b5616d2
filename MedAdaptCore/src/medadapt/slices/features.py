"""Frozen, prompt-free dense features of every slice, the input of the FSEFT heads (:mod:`medadapt.methods.heads`).

Two sources from a SAM-style backend, neither needing a prompt from the user:

* ``embedding``: the image encoder's output (LiteMedSAM: 256 x 64 x 64), the same tensor the slice model
  caches, so it is computed once per volume and shared with propagation and :class:`EmbeddingCache`.
* ``decoder``: the mask decoder's upscaled features (LiteMedSAM: 32 x 256 x 256) after its two-way
  transformer has attended to a box covering the whole slice.
"""

from __future__ import annotations

import numpy as np
import torch

from medadapt.errors import InputError
from medadapt.slices.frame import SliceFrame
from medadapt.slices.model import SliceModel

FEATURE_SOURCES = ("embedding", "decoder")


def whole_slice_box(frame: SliceFrame) -> np.ndarray:
    """Box (x0, y0, x1, y1) in frame coordinates covering the whole resized slice."""
    rows, cols = frame.resized
    return np.array([0.0, 0.0, float(cols), float(rows)], dtype=np.float32)


@torch.no_grad()
def decoder_features(model: SliceModel, embeddings: torch.Tensor) -> torch.Tensor:
    """The mask decoder's upscaled features (n, C, s, s) for (n, ...) image ``embeddings`` of ``model``'s
    frame, prompted with a box over the whole slice."""
    captured = []
    hook = model.backend.mask_decoder.output_upscaling.register_forward_hook(
        lambda module, inputs, output: captured.append(output.detach()))
    try:
        box = torch.as_tensor(whole_slice_box(model.frame))[None].expand(embeddings.shape[0], 4)
        model.backend.decode(embeddings, box.contiguous())
    finally:
        hook.remove()
    return torch.cat(captured)


class SliceFeatures:
    """Dense features of the slices of ``model``'s stack from ``source`` (see :data:`FEATURE_SOURCES`),
    computed once per slice and kept on the CPU."""

    def __init__(self, model: SliceModel, source: str = "embedding"):
        if source not in FEATURE_SOURCES:
            raise InputError(f"head features: expected one of {', '.join(FEATURE_SOURCES)}, got {source!r}")
        self.model, self.source = model, source
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.model)

    def from_embeddings(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Features (n, C, h, w) from (n, ...) image embeddings of this frame."""
        if self.source == "embedding":
            return embeddings.detach().float().cpu()
        return decoder_features(self.model, embeddings.to(self.model.backend.device)).float().cpu()

    def __call__(self, index: int) -> torch.Tensor:
        """Cached (1, C, h, w) features of slice ``index``."""
        if index not in self._cache:
            self._cache[index] = self.from_embeddings(self.model.embedding(index))
        return self._cache[index]

    @torch.no_grad()
    def of_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Features of (n, 3, S, S) frames that are not slices of the stack (synthetic pairs)."""
        return torch.cat([self.from_embeddings(self.model.backend.encode(f[None])) for f in frames])
