"""A backend bound to one volume's slices along an axis, with cached image embeddings."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from medadapt.backends.base import PromptableBackend
from medadapt.progress import CancelFlag, Progress, ProgressCallback, check_cancel, report
from medadapt.slices.frame import SliceFrame


class SliceModel:
    """Segments single slices of a [0, 1] (slices, rows, cols) stack with box / point prompts.

    Image embeddings are computed once per slice and cached, so re-prompting a slice only runs the decoder.
    Each new encoding first checks ``cancel`` and then reports progress.
    """

    CLICK_BOX_MARGIN = 24.0
    """Half-size (frame pixels) of the box put around a single click for a box-only backend."""

    def __init__(self, backend: PromptableBackend, stack: np.ndarray, spacing_rc: tuple[float, float],
                 progress: ProgressCallback | None = None, cancel: CancelFlag | None = None,
                 embeddings: dict[int, torch.Tensor] | None = None):
        self.backend = backend
        self.stack = stack
        self.progress, self.cancel = progress, cancel
        self.frame = SliceFrame(stack.shape[1:], spacing_rc, backend.image_size)
        self._embeddings = {} if embeddings is None else embeddings

    def __len__(self) -> int:
        return self.stack.shape[0]

    @torch.no_grad()
    def embedding(self, index: int) -> torch.Tensor:
        """Cached (1, C, h, w) image embedding of slice ``index``."""
        if index not in self._embeddings:
            check_cancel(self.cancel)
            frame = self.frame.image_to_frame(self.stack[index:index + 1])
            self._embeddings[index] = self.backend.encode(frame)
            report(self.progress, Progress("encode slices", len(self._embeddings), len(self)))
        return self._embeddings[index]

    def forget_embeddings(self) -> None:
        """Drop cached embeddings (after the encoder's weights change)."""
        self._embeddings.clear()

    @torch.no_grad()
    def predict(self, index: int, box: np.ndarray | None, points_rc: np.ndarray | None = None,
                point_labels: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """Foreground probability on slice ``index``'s grid and the model's IoU estimate.

        ``box`` is in frame coordinates (see :meth:`SliceFrame.box_from_mask`); ``points_rc`` are (row, col)
        slice pixels with labels 1 (positive) / 0 (negative). For a box-only backend the positive points widen
        the box and a negative point removes the connected region it lies in.
        """
        if not self.backend.accepts_points and points_rc is not None and len(points_rc):
            return self._predict_with_clicks_as_box(index, box, np.asarray(points_rc), np.asarray(point_labels))
        boxes = None if box is None else torch.as_tensor(box, dtype=torch.float32)[None]
        points = labels = None
        if points_rc is not None and len(points_rc):
            points = torch.as_tensor(self.frame.points_to_frame(points_rc), dtype=torch.float32)[None]
            labels = torch.as_tensor(point_labels, dtype=torch.int64)[None]
        if boxes is None and points is None:
            raise ValueError("a slice prediction needs a box or at least one point")
        logits, iou = self.backend.decode(self.embedding(index), boxes, points, labels)
        probability = torch.sigmoid(self.frame.logits_to_slice(logits.float().cpu()))[0].numpy()
        return probability, float(iou[0])

    def _predict_with_clicks_as_box(self, index: int, box: np.ndarray | None, points_rc: np.ndarray,
                                    point_labels: np.ndarray) -> tuple[np.ndarray, float]:
        pixels = np.clip(np.round(points_rc).astype(int), 0, np.asarray(self.frame.shape) - 1)
        positive = pixels[point_labels == 1]
        if len(positive):
            clicked = np.zeros(self.frame.shape, bool)
            clicked[positive[:, 0], positive[:, 1]] = True
            margin = self.CLICK_BOX_MARGIN if len(positive) == 1 else 4.0
            around = self.frame.box_from_mask(clicked, margin)
            box = around if box is None else np.concatenate([np.minimum(box[:2], around[:2]),
                                                             np.maximum(box[2:], around[2:])])
        if box is None:
            raise ValueError("a slice prediction needs a box or at least one positive point")
        probability, iou = self.predict(index, box)
        for row, col in pixels[point_labels == 0]:
            regions, _ = ndimage.label(probability > 0.5)
            if regions[row, col]:
                probability[regions == regions[row, col]] = 0.0
        return probability, iou
