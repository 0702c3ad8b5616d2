"""FSEFT black-box adaptation on the frozen 3D backbone (:mod:`medadapt.backends.swinunetr`): 3D heads
(:mod:`medadapt.methods.heads`) trained on the volume's dense features, computed once, from the painted slices; they
segment the whole volume, which is resampled back onto the image grid.

Supervision: every voxel of a painted slice is a training point (the structure 1, the rest of that slice 0)
at its exact physical position on the model grid, where the head's logits are interpolated (trilinear), so
unpainted slices never enter the Dice loss whatever the slice spacing. A step trains on the thin crops of the
feature volume around ``batch_size`` random painted slices (with the adapter's context). Optimisation, early
stop and the size constraint are those of :mod:`medadapt.methods.fseft`; the volume Ŝ of constrained transductive
inference is estimated from ``query_slices`` random planes of the model grid, in image voxels. The spatial
adapter keeps FSEFT's full width (``HeadConfig.adapter_width`` is for the 2D embeddings).

Two starting choices keep training off the soft-Dice plateau where every voxel is foreground (the decoder's
features are large and all positive): a new probe's bias starts at a foreground prior of 1 % (as in focal-loss
detectors), and the spatial adapter trains at a learning rate of at most :data:`ADAPTER_LEARNING_RATE`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss

from medadapt.backends import load_backend
from medadapt.backends.swinunetr import SwinBackbone
from medadapt.config import AdaptConfig, HeadConfig
from medadapt.errors import InputError
from medadapt.io.exemplars import Exemplars
from medadapt.io.grid3d import map_indices, resample
from medadapt.io.volume import Geometry, Volume
from medadapt.methods.fseft import label_prior, optimise
from medadapt.methods.heads import HeadSet, SegmentationHead
from medadapt.methods.registry import Method, head_methods, method_for
from medadapt.methods.result import AdaptResult
from medadapt.progress import CancelFlag, ProgressCallback, check_cancel
from medadapt.slices.labels import assign_labels
from medadapt.slices.stack import spacing_rcs

CONTEXT = 2
"""Voxels of context around a crop: the spatial adapter's two 3 x 3 x 3 convolutions."""
PRIOR_LOGIT = float(np.log(0.01 / 0.99))
"""Starting bias of a new probe: 1 % foreground everywhere."""
ADAPTER_LEARNING_RATE = 1e-3
"""Largest learning rate of the 3D spatial adapter (1e-2 made it diverge to an empty prediction)."""


@dataclass
class PaintedSlice:
    """Training points of one painted slice: the model-grid ``crop`` around them, their ``grid_sample``
    positions in that crop (1, 1, 1, n, 3) and their targets (1, 1, n)."""

    crop: tuple[slice, slice, slice]
    positions: torch.Tensor
    targets: torch.Tensor


def painted_slices(exemplars: Exemplars, label: int, image: Geometry, grid: Geometry) -> list[PaintedSlice]:
    """The training points of ``label`` on every painted slice (empty targets where it is absent)."""
    shape = np.array(tuple(reversed(grid.size)))
    out = []
    for s in exemplars.slices:
        mask = exemplars.slice_mask(label, s)
        in_plane = np.indices(mask.shape).reshape(2, -1).T
        zyx = map_indices(np.insert(in_plane, exemplars.axis, s, axis=1).astype(float), image, grid)
        low = np.clip(np.floor(zyx.min(axis=0)).astype(int) - CONTEXT, 0, shape - 1)
        high = np.clip(np.ceil(zyx.max(axis=0)).astype(int) + CONTEXT + 1, 1, shape)
        extent = np.maximum(high - low - 1, 1)
        positions = torch.as_tensor(2 * (zyx - low) / extent - 1, dtype=torch.float32)[:, [2, 1, 0]]
        out.append(PaintedSlice(tuple(slice(a, b) for a, b in zip(low, high)), positions[None, None, None],
                                torch.as_tensor(mask.reshape(1, 1, -1), dtype=torch.float32)))
    return out


def point_logits(head: SegmentationHead, features: torch.Tensor, painted: PaintedSlice) -> torch.Tensor:
    """Logits (1, 1, n) of ``head`` at a painted slice's points (``features`` (C, z, y, x))."""
    logits = head(features[(slice(None), *painted.crop)][None])
    return F.grid_sample(logits, painted.positions.to(logits.device), align_corners=True,
                         padding_mode="border").reshape(1, 1, -1)


def predicted_size(head: SegmentationHead, features: torch.Tensor, count: int, rng: np.random.Generator,
                   scale: float) -> torch.Tensor:
    """Structure volume ``head`` predicts on the whole model grid, estimated from ``count`` random planes and
    multiplied by ``scale`` (model voxel volume / image voxel volume: the result is in image voxels)."""
    depth = features.shape[1]
    picked = rng.choice(depth, size=min(count, depth), replace=False)
    total = 0
    for plane in picked:
        low = max(int(plane) - CONTEXT, 0)
        total = total + torch.sigmoid(head(features[None, :, low:int(plane) + CONTEXT + 1]))[0, 0, plane - low].sum()
    return total * depth / len(picked) * scale


def train_head3d(head: SegmentationHead, features: torch.Tensor, painted: list[PaintedSlice], config: HeadConfig,
                 rng: np.random.Generator, prior: float | None = None, scale: float = 1.0,
                 progress: ProgressCallback | None = None, cancel: CancelFlag | None = None) -> list[float]:
    """Train ``head`` on (C, z, y, x) frozen ``features`` from the ``painted`` slices (Dice loss on their
    points only); with ``prior`` the size constraint joins after ``config.size_start``."""
    dice = DiceLoss(sigmoid=True, batch=True)
    device = features.device

    def batch_loss() -> torch.Tensor:
        picked = rng.choice(len(painted), size=min(config.batch_size, len(painted)), replace=False)
        logits = torch.cat([point_logits(head, features, painted[i]) for i in picked], dim=-1)
        return dice(logits, torch.cat([painted[i].targets for i in picked], dim=-1).to(device))

    size = (lambda: predicted_size(head, features, config.query_slices, rng, scale)) if prior else None
    return optimise(head, batch_loss, config, size, prior, progress, cancel)


def start_from_class(head: SegmentationHead, output_layer: torch.nn.Conv3d, index: int) -> None:
    """Copy channel ``index`` of the pretrained output convolution into ``head``'s probe."""
    if not 0 <= index < output_layer.out_channels:
        raise InputError(f"--pretrained-class: expected 0..{output_layer.out_channels - 1} (a channel of the "
                         f"backbone's output layer), got {index}")
    with torch.no_grad():
        head.probe.weight.copy_(output_layer.weight[index:index + 1])
        head.probe.bias.copy_(output_layer.bias[index:index + 1])


def fit_heads3d(backbone: SwinBackbone, features: torch.Tensor, grid: Geometry, image: Volume,
                exemplars: Exemplars, kind: str, config: HeadConfig, rng: np.random.Generator,
                transductive: bool = False, progress: ProgressCallback | None = None,
                cancel: CancelFlag | None = None) -> tuple[HeadSet, dict[int, list[float]], dict[int, float]]:
    """3D heads of ``kind`` for every painted label on the backbone's ``features`` (model ``grid``); returns
    (heads, losses by label, size priors by label for ``transductive``)."""
    heads = HeadSet(kind, backbone.name, features.shape[0], exemplars.labels, 0, dims=3).to(features.device)
    scale = float(np.prod(grid.spacing) / np.prod(image.geometry.spacing))
    if kind == "spatial-adapter":
        config = replace(config, learning_rate=min(config.learning_rate, ADAPTER_LEARNING_RATE))
    losses, priors = {}, {}
    for label in exemplars.labels:
        head = heads.heads[str(label)]
        if config.pretrained_class >= 0:
            start_from_class(head, backbone.output_layer, config.pretrained_class)
        else:
            torch.nn.init.constant_(head.probe.bias, PRIOR_LOGIT)
        if transductive:
            priors[label] = label_prior(exemplars, label, spacing_rcs(image, exemplars.axis), config)
        painted = painted_slices(exemplars, label, image.geometry, grid)
        losses[label] = train_head3d(head, features, painted, config, rng, priors.get(label), scale, progress,
                                     cancel)
    return heads, losses, priors


@torch.no_grad()
def segment3d(heads: HeadSet, features: torch.Tensor, grid: Geometry, image: Volume, axis: int,
              exemplars: Exemplars | None, config: AdaptConfig) -> Volume:
    """Label map on ``image``'s grid from the heads' probabilities on the model grid, resampled back and
    post-processed as the 2D methods are (:func:`medadapt.slices.labels.assign_labels`, slices along ``axis``)."""
    heads.eval()
    probabilities = {}
    for label in heads.labels:
        probability = torch.sigmoid(heads.heads[str(label)](features[None]))[0, 0].float().cpu().numpy()
        probabilities[label] = np.moveaxis(resample(probability, grid, image.geometry), axis, 0)
    labels = assign_labels(probabilities, exemplars, config)
    return image.with_array(np.ascontiguousarray(np.moveaxis(labels, 0, axis)))


def require_head_method(name: str, backend: str) -> Method:
    """The registered head method ``name``, for a ``backend`` that trains FSEFT heads only (:class:`InputError`
    naming ``--method`` otherwise)."""
    method = method_for(name)
    if method.head_kind is None:
        raise InputError(f"--method: the {backend} backend trains FSEFT heads; expected one of "
                         f"{', '.join(head_methods())}, got {name!r}")
    return method


def adapt_3d(image: Volume, exemplars: Exemplars, config: AdaptConfig, progress: ProgressCallback | None = None,
             cancel: CancelFlag | None = None, backbone: SwinBackbone | None = None) -> AdaptResult:
    """``config.method`` (an FSEFT head method) on the frozen 3D backbone: features of ``image`` once, heads
    from the painted ``exemplars``, the segmentation on the image grid. ``backbone`` reuses a loaded one."""
    method = require_head_method(config.method, config.backend)
    started = time.monotonic()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    backbone = backbone or load_backend(config.backend, config.device, config.checkpoint,
                                        config.input_size)
    check_cancel(cancel)
    features, grid = backbone.features(image)
    heads, losses, priors = fit_heads3d(backbone, features, grid, image, exemplars, method.head_kind, config.head,
                                        rng, method.transductive, progress, cancel)
    segmentation = segment3d(heads, features, grid, image, exemplars.axis, exemplars, config)
    return AdaptResult(segmentation, backbone, backbone.settings.window,
                       losses=[v for label in losses for v in losses[label]], seconds=time.monotonic() - started,
                       heads=heads, size_priors=priors)


def predict_3d(image: Volume, backbone: SwinBackbone, heads: HeadSet, config: AdaptConfig, axis: int,
               exemplars: Exemplars | None = None, cancel: CancelFlag | None = None) -> Volume:
    """Segment a new ``image`` with saved 3D ``heads``, without prompts (painted ``exemplars``, if given, are
    kept on their slices)."""
    if heads is None or heads.dims != 3:
        raise InputError(f"predict: the {config.backend} backend needs its trained 3D heads (heads.safetensors)")
    check_cancel(cancel)
    features, grid = backbone.features(image)
    return segment3d(heads.to(features.device), features, grid, image,
                     exemplars.axis if exemplars is not None else axis, exemplars, config)
