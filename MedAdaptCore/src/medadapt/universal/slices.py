"""The universal model's training slices: each entry's volume encoded once by the frozen foundation model (its
image embeddings, the features the network reads) with every labelled task's mask in the model frame.

Slices lie along the array's first axis (axial for the usual scan orders), intensities are normalised with the
window MedAdapt uses for a volume with no painting (the same at prediction). Every slice is kept up to
``max_slices`` per volume, evenly spread, so empty slices teach "nothing here" at the rate they occur.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from medadapt.backends.base import PromptableBackend
from medadapt.errors import InputError
from medadapt.io.intensity import intensity_window
from medadapt.io.volume import Volume, read_volume, require_same_grid
from medadapt.progress import CancelFlag, Progress, ProgressCallback, check_cancel, report
from medadapt.slices.frame import in_plane_spacing
from medadapt.slices.model import SliceModel
from medadapt.slices.stack import slice_stack
from medadapt.universal.collection import Entry

AXIS = 0
"""Slice axis: the array's first, (z, y, x) order."""

PIECE_SHARE = 0.01
"""Pieces smaller than this share of a task's voxels do not count when deciding whether it forms one piece."""


@dataclass
class EncodedVolume:
    """One entry's kept slices: ``embeddings`` (n, C, h, w) float16, ``masks`` by task (n, 1, S, S) bool in the
    model frame, the modality, the sampling weight, and per task whether it forms one connected piece."""

    embeddings: torch.Tensor
    masks: dict[str, torch.Tensor]
    modality: str
    weight: float
    one_piece: dict[str, bool]

    def __len__(self) -> int:
        return self.embeddings.shape[0]

    def example(self, task: str, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A uniformly drawn slice's (1, C, h, w) embedding and its (1, 1, S, S) ``task`` mask."""
        index = int(rng.integers(len(self)))
        return self.embeddings[index:index + 1].float(), self.masks[task][index:index + 1].float()


def read_entry(entry: Entry) -> tuple[Volume, Volume]:
    """The entry's image and label map, on one grid, every task's value present; :class:`InputError` naming the
    file otherwise."""
    image, labels = read_volume(entry.image), read_volume(entry.labels, label=True)
    require_same_grid(image, labels, str(entry.labels))
    present = set(np.unique(labels.array).tolist())
    for name, value in entry.tasks.items():
        if value not in present:
            raise InputError(f"{entry.source}: task {name}={value}: no voxel of value {value} in {entry.labels}")
    return image, labels


def forms_one_piece(mask: np.ndarray) -> bool:
    """True when ``mask`` has one connected piece (26-connectivity) holding at least :data:`PIECE_SHARE` of
    its voxels."""
    pieces, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(pieces.ravel())[1:]
    return int((sizes >= PIECE_SHARE * mask.sum()).sum()) == 1


def kept_slices(count: int, max_slices: int) -> np.ndarray:
    """Indices of ``count`` slices thinned evenly to at most ``max_slices``."""
    if count <= max_slices:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, max_slices).round().astype(int))


@torch.no_grad()
def encode_entry(backend: PromptableBackend, entry: Entry, max_slices: int, progress: ProgressCallback | None = None,
                 cancel: CancelFlag | None = None, encoded: dict[Path, torch.Tensor] | None = None) -> EncodedVolume:
    """Embeddings and task masks of ``entry``'s kept slices; ``encoded`` shares the embeddings of one image file
    between entries (one volume labelled for different tasks in different label maps)."""
    image, labels = read_entry(entry)
    model = SliceModel(backend, slice_stack(image, AXIS, intensity_window(image.array)),
                       in_plane_spacing(image.geometry.spacing, AXIS), cancel=cancel)
    chosen = kept_slices(len(model), max_slices)
    encoded = {} if encoded is None else encoded
    key = entry.image.resolve()
    if key not in encoded:
        embeddings = []
        for number, index in enumerate(chosen, start=1):
            check_cancel(cancel)
            embeddings.append(model.embedding(int(index)).to(torch.float16).cpu())
            model.forget_embeddings()
            report(progress, Progress(f"encode {entry.image.name}", number, len(chosen)))
        encoded[key] = torch.cat(embeddings)
    label_array = np.moveaxis(labels.array, AXIS, 0)
    masks = {name: model.frame.mask_to_frame(label_array[chosen] == value).bool()
             for name, value in entry.tasks.items()}
    one_piece = {name: forms_one_piece(label_array == value) for name, value in entry.tasks.items()}
    return EncodedVolume(encoded[key], masks, entry.modality, entry.weight, one_piece)
