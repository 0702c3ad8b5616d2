"""Interactive prompt mode: re-segment one slice from clicks / a box, with image embeddings cached per slice
(used by the Slicer module and by ``medadapt serve``)."""

from __future__ import annotations

import numpy as np

from medadapt.backends.base import PromptableBackend
from medadapt.io.points import PointPrompt
from medadapt.io.volume import Volume
from medadapt.slices.frame import in_plane_spacing
from medadapt.slices.model import SliceModel
from medadapt.slices.stack import slice_stack


class SliceSession:
    """One volume bound to a backend along ``axis``; :meth:`segment_slice` only re-runs the decoder once a
    slice's embedding is cached."""

    def __init__(self, backend: PromptableBackend, image: Volume, axis: int, window: tuple[float, float],
                 embeddings: dict | None = None):
        """``embeddings``: a slice-embedding cache to share (:class:`medadapt.pipeline.EmbeddingCache`)."""
        self.image, self.axis, self.window = image, axis, window
        self.model = SliceModel(backend, slice_stack(image, axis, window),
                                in_plane_spacing(image.geometry.spacing, axis), embeddings=embeddings)

    def matches(self, backend: PromptableBackend, image: Volume, axis: int) -> bool:
        """True when this session can serve ``image`` along ``axis`` with ``backend`` (the cache is valid)."""
        return (backend is self.model.backend and axis == self.axis and image.geometry.matches(self.image.geometry)
                and np.array_equal(image.array, self.image.array))

    def segment_slice(self, index: int, points: list[PointPrompt], box_zyx=None) -> np.ndarray:
        """Binary mask of slice ``index`` from the points on it and an optional (low, high) voxel box."""
        on_slice = [p for p in points if p.index_zyx[self.axis] == index]
        points_rc = np.array([[v for a, v in enumerate(p.index_zyx) if a != self.axis] for p in on_slice], float)
        labels = np.array([1 if p.positive else 0 for p in on_slice], int)
        box = None
        if box_zyx is not None:
            region = np.zeros(self.model.stack.shape[1:], bool)
            low, high = ([v for a, v in enumerate(b) if a != self.axis] for b in box_zyx)
            region[low[0]:high[0] + 1, low[1]:high[1] + 1] = True
            box = self.model.frame.box_from_mask(region)
        if box is None and not len(points_rc):
            raise ValueError(f"slice {index}: place a positive point or an ROI on this slice first")
        probability, _ = self.model.predict(index, box, points_rc if len(points_rc) else None,
                                            labels if len(labels) else None)
        return probability > 0.5

    def put_slice(self, volume_mask: np.ndarray, index: int, slice_mask: np.ndarray) -> np.ndarray:
        """Copy of a (z, y, x) mask with slice ``index`` along the session's axis replaced by ``slice_mask``."""
        out = np.array(volume_mask, dtype=np.uint8)
        np.moveaxis(out, self.axis, 0)[index] = slice_mask
        return out
