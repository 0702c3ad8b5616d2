"""The adaptation pipeline: exemplars -> (synthesis -> adapter training) -> propagated volume segmentation."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage

from .adapters import add_lora
from .atlas import Atlas, warp_atlas
from .backends import load_backend
from .backends.base import PromptableBackend
from .baselines import fill_between_slices
from .between import check_exemplars, fill_gaps, fill_max_gap, labels_to_fill
from .config import AdaptConfig
from .devices import resolve_device
from .errors import InputError
from .exemplars import Exemplars
from .features import SliceFeatures
from .fseft import HeadSet, fit_heads
from .intensity import intensity_window, is_ct, normalise
from .method_names import HEAD_METHODS, require_known_method
from .points import PointPrompt
from .progress import CancelFlag, Progress, ProgressCallback, check_cancel, report
from .propagation import SlicePrompts, StopRule, propagate
from .registry import prefetch
from .seeds import (exemplar_seeds, largest_component, prompts_by_label, seeds_from_atlas, seeds_from_heads,
                    seeds_from_points)
from .size_prior import mean_spacing
from .slice_frame import in_plane_spacing
from .slice_model import SliceModel
from .synthesis import SynthesisConfig, synthesize
from .training import train
from .volume import Volume


@dataclass
class AdaptResult:
    """Segmentation on the image grid, the adapted backend (``None`` for ``fill``), the FSEFT heads (the
    method's own, or the seed head beside ``lora``), and run facts (size priors of transductive methods)."""

    segmentation: Volume
    backend: PromptableBackend | None
    window: tuple[float, float]
    validation_dice: dict[int, float] = field(default_factory=dict)
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    heads: HeadSet | None = None
    size_priors: dict[int, float] = field(default_factory=dict)


def spacing_rcs(image: Volume, axis: int) -> tuple[float, float, float]:
    """Spacing (row, col, slice) in mm of slices taken along array ``axis``."""
    return (*in_plane_spacing(image.geometry.spacing, axis), float(tuple(reversed(image.geometry.spacing))[axis]))


def slice_stack(image: Volume, axis: int, window: tuple[float, float]) -> np.ndarray:
    """The image normalised to [0, 1] with the slice axis first."""
    return normalise(np.moveaxis(image.array, axis, 0), window)


def _background_slices(stack: np.ndarray, exemplars: Exemplars, count: int = 6) -> list[np.ndarray]:
    """Slices farthest from every painted slice (least likely to hold the structure) for pasting."""
    distance = np.array([min(abs(s - e) for e in exemplars.slices) for s in range(len(stack))])
    far = np.argsort(-distance, kind="stable")[:count]
    return [stack[s] for s in far if distance[s] > 0]


def training_set(model: SliceModel, exemplars: Exemplars, config: AdaptConfig, rng: np.random.Generator,
                 progress: ProgressCallback | None, cancel: CancelFlag | None, encode: bool):
    """Frames, masks and (when ``encode``) frozen embeddings of every exemplar slice and its synthetic pairs."""
    backgrounds = _background_slices(model.stack, exemplars)
    images, masks, real = [], [], []
    for label in exemplars.labels:
        for s in exemplars.label_slices[label]:
            mask = np.moveaxis(exemplars.labelmap.array, exemplars.axis, 0)[s] == label
            images.append(model.stack[s]); masks.append(mask); real.append(s)
            for image, synthetic in synthesize(model.stack[s], mask, config.synthesis, rng, backgrounds):
                images.append(image); masks.append(synthetic); real.append(None)
    frame_masks = model.frame.mask_to_frame(np.asarray(masks))
    keep = [i for i in range(len(masks)) if frame_masks[i].any()]
    frames = model.frame.image_to_frame(np.asarray(images)[keep])
    frame_masks, real = frame_masks[keep], [real[i] for i in keep]
    if not encode:
        return frames, frame_masks, None
    embeddings = []
    with torch.no_grad():
        for n, (frame, s) in enumerate(zip(frames, real)):
            check_cancel(cancel)
            embeddings.append(model.embedding(s) if s is not None else model.backend.encode(frame[None]))
            report(progress, Progress("encode exemplars", n + 1, len(frames)))
    return frames, frame_masks, torch.cat(embeddings)


def segment(model: SliceModel, exemplars: Exemplars | None, seeds_by_label: dict[int, dict[int, np.ndarray]],
            config: AdaptConfig, prompts: dict[int, SlicePrompts], progress: ProgressCallback | None = None,
            cancel: CancelFlag | None = None, fill_labels: set[int] = frozenset()) -> np.ndarray:
    """Label stack (slice axis first) from :func:`label_probabilities` (see :func:`assign_labels`)."""
    probabilities = label_probabilities(model, exemplars, seeds_by_label, config, prompts, progress, cancel,
                                        fill_labels)
    return assign_labels(probabilities, exemplars, config)


def label_probabilities(model: SliceModel, exemplars: Exemplars | None,
                        seeds_by_label: dict[int, dict[int, np.ndarray]], config: AdaptConfig,
                        prompts: dict[int, SlicePrompts], progress: ProgressCallback | None = None,
                        cancel: CancelFlag | None = None, fill_labels: set[int] = frozenset()
                        ) -> dict[int, np.ndarray]:
    """Foreground probability by label (slice axis first) from propagating each label's seed masks; outward
    walks of painted labels go at most :func:`outward_reach` slices; for ``fill_labels`` Fill-between-slices
    replaces the model in the gaps between painted slices that :func:`fill_max_gap` allows."""
    labels = sorted(seeds_by_label)
    probabilities = {}
    for n, label in enumerate(labels):
        check_cancel(cancel)
        painted = exemplars is not None and label in exemplars.label_slices
        negatives = set(exemplars.negative_slices(label)) if painted else set()
        reach = outward_reach(exemplars, label, config.stop) if painted else None
        probability = propagate(model, seeds_by_label[label], config.stop, prompts.get(label), negatives, reach)
        if label in fill_labels and exemplars is not None and len(exemplars.label_slices.get(label, [])) > 1:
            probability = fill_gaps(probability, exemplars, label, fill_max_gap(exemplars, config))
        probabilities[label] = probability
        report(progress, Progress("segment", n + 1, len(labels)))
    return probabilities


def outward_reach(exemplars: Exemplars, label: int, rule: StopRule) -> int | None:
    """How many slices an outward walk of painted ``label`` may go beyond its outermost painted slice:
    ``rule.reach`` times the mean spacing between its painted slices (at least one slice); ``None`` (no
    limit but the stop rule) without ``rule.reach`` or with a single painted slice, which tells nothing of
    the structure's length along the slice axis."""
    slices = exemplars.label_slices[label]
    if rule.reach is None or len(slices) < 2:
        return None
    return max(1, int(np.ceil(rule.reach * mean_spacing(slices))))


def assign_labels(probabilities: dict[int, np.ndarray], exemplars: Exemplars | None, config: AdaptConfig
                  ) -> np.ndarray:
    """Label stack from foreground probabilities by label (slice axis first), post-processed per
    ``config``; overlaps go to the most confident label; painted slices keep their painted labels."""
    shape = next(iter(probabilities.values())).shape
    best = np.zeros(shape, np.float32)
    out = np.zeros(shape, np.int32)
    for label in sorted(probabilities):
        probability = probabilities[label]
        mask = probability > 0.5
        if config.fill_holes:
            mask = np.stack([ndimage.binary_fill_holes(m) for m in mask])
        if config.largest_component:
            mask = largest_component(mask)
        take = mask & (probability > best)
        out[take], best[take] = label, probability[take]
    if exemplars is not None:
        painted = np.moveaxis(exemplars.labelmap.array, exemplars.axis, 0)
        for s in exemplars.slices:
            out[s] = painted[s]
    return out


class EmbeddingCache:
    """Frozen-encoder image embeddings of one image, kept across runs (new prompts, another method)."""

    def __init__(self):
        self._by_setting: dict[tuple, dict[int, torch.Tensor]] = {}

    def slices(self, backend: PromptableBackend, axis: int, window: tuple[float, float]) -> dict[int, torch.Tensor]:
        """The cache of slice embeddings for this base model, slice axis and intensity window."""
        return self._by_setting.setdefault((backend.name, backend.checkpoint_sha256, backend.image_size, axis,
                                           tuple(window)), {})


def adapt(image: Volume, exemplars: Exemplars, config: AdaptConfig | None = None,
          points: list[PointPrompt] | None = None, progress: ProgressCallback | None = None,
          cancel: CancelFlag | None = None, backend: PromptableBackend | None = None,
          cache: EmbeddingCache | None = None) -> AdaptResult:
    """Segment ``image`` from painted ``exemplars`` with ``config.method`` (see :data:`METHODS`).

    ``backend`` reuses an already loaded base model (it is adapted in place for ``lora``); ``cache`` reuses
    image embeddings of earlier runs on the same image when the encoder stays frozen.
    """
    config = config or AdaptConfig()
    if config.backend == "swinunetr":
        from .fseft3d import adapt_3d
        return adapt_3d(image, exemplars, config, progress, cancel, backend)
    require_known_method(config.method)
    started = time.monotonic()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    foreground = exemplars.labelmap.array != 0
    window = intensity_window(image.array, foreground)
    if config.method == "fill":
        labels = fill_between_slices(exemplars)
        return AdaptResult(image.with_array(labels), None, window, seconds=time.monotonic() - started)
    require_contrast(image)
    device = resolve_device(config.device)
    if backend is None:
        prefetch(config.backend, config.checkpoint, progress, cancel)
        backend = load_backend(config.backend, device, config.checkpoint, config.input_size)
    spacing = in_plane_spacing(image.geometry.spacing, exemplars.axis)
    encoder_frozen = config.method != "lora" or "encoder" not in config.adapter.parts
    embeddings = cache.slices(backend, exemplars.axis, window) if cache is not None and encoder_frozen else None
    model = SliceModel(backend, slice_stack(image, exemplars.axis, window), spacing, progress, cancel, embeddings)
    if config.method in HEAD_METHODS:
        return _adapt_heads(image, exemplars, config, model, window, rng, started, progress, cancel)
    losses, heads = [], None
    if config.method == "lora":
        add_lora(backend, config.adapter)
        frames, masks, embeddings = training_set(model, exemplars, config, rng, progress, cancel, encoder_frozen)
        losses = train(backend, frames, masks, config.train, rng, embeddings, progress, cancel)
        if not encoder_frozen:
            model.forget_embeddings()
        if config.head.seed_head:
            heads, _, _ = fit_heads(SliceFeatures(model, config.head.features), exemplars, config.head.seed_head,
                                    config.head, SynthesisConfig(per_exemplar=0), rng, progress=progress,
                                    cancel=cancel)
    prompts = prompts_by_label(points or [], exemplars.axis)
    checks, fill_labels = check_exemplars(model, exemplars, config)
    labels = segment(model, exemplars, exemplar_seeds(exemplars), config, prompts, progress, cancel, fill_labels)
    segmentation = image.with_array(np.ascontiguousarray(np.moveaxis(labels, 0, exemplars.axis)))
    return AdaptResult(segmentation, backend, window, checks.validation_dice(), losses,
                       time.monotonic() - started, heads)


def _adapt_heads(image: Volume, exemplars: Exemplars, config: AdaptConfig, model: SliceModel,
                 window: tuple[float, float], rng: np.random.Generator, started: float,
                 progress: ProgressCallback | None, cancel: CancelFlag | None) -> AdaptResult:
    """FSEFT methods: heads trained on frozen features of the painted slices segment every slice."""
    kind, transductive = HEAD_METHODS[config.method]
    features = SliceFeatures(model, config.head.features)
    heads, losses, priors = fit_heads(features, exemplars, kind, config.head, config.synthesis, rng, transductive,
                                      spacing_rcs(image, exemplars.axis), progress, cancel)
    labels = assign_labels(heads.probabilities(features, cancel, progress), exemplars, config)
    segmentation = image.with_array(np.ascontiguousarray(np.moveaxis(labels, 0, exemplars.axis)))
    return AdaptResult(segmentation, model.backend, window, losses=[v for label in losses for v in losses[label]],
                       seconds=time.monotonic() - started, heads=heads, size_priors=priors)


def require_contrast(image: Volume) -> None:
    """:class:`InputError` for a constant image: a model sees nothing there to segment."""
    if image.array.size and image.array.min() == image.array.max():
        raise InputError(f"image: every voxel is {image.array.flat[0]!r}; a constant image holds nothing to "
                         "segment")


def window_for(image: Volume, manifest_window: tuple[float, float] | None) -> tuple[float, float]:
    """Intensity window for a new volume: the adapted CT window, or the new volume's own percentiles."""
    if manifest_window is not None and is_ct(image.array):
        return tuple(manifest_window)
    return intensity_window(image.array)


def predict(image: Volume, backend: PromptableBackend, config: AdaptConfig, window: tuple[float, float],
            axis: int, exemplars: Exemplars | None = None, points: list[PointPrompt] | None = None,
            progress: ProgressCallback | None = None, cancel: CancelFlag | None = None,
            heads: HeadSet | None = None, cache: EmbeddingCache | None = None, atlas: Atlas | None = None
            ) -> Volume:
    """Segment ``image`` with an (adapted) ``backend`` from painted slices and/or positive clicks.

    FSEFT methods segment every slice with their ``heads`` (no prompt needed; painted slices are kept). For
    the other methods without any prompt, the ``atlas`` registered onto ``image`` (:func:`seeds_from_atlas`)
    or else a seed ``heads`` set (:func:`seeds_from_heads`) chooses where propagation starts. ``cache``
    shares frozen-encoder embeddings of ``image`` between calls.
    """
    require_contrast(image)
    if config.backend == "swinunetr":
        from .fseft3d import predict_3d
        return predict_3d(image, backend, heads, config, axis, exemplars, cancel)
    if exemplars is not None:
        axis = exemplars.axis
    encoder_frozen = config.method != "lora" or "encoder" not in config.adapter.parts
    embeddings = cache.slices(backend, axis, window) if cache is not None and encoder_frozen else None
    model = SliceModel(backend, slice_stack(image, axis, window), in_plane_spacing(image.geometry.spacing, axis),
                       progress, cancel, embeddings)
    if config.method in HEAD_METHODS:
        if heads is None:
            raise InputError(f"predict: method {config.method!r} needs its trained heads (heads.safetensors)")
        labels = assign_labels(heads.probabilities(SliceFeatures(model, heads.source), cancel, progress),
                               exemplars, config)
        return image.with_array(np.ascontiguousarray(np.moveaxis(labels, 0, axis)))
    prompts = prompts_by_label(points or [], axis)
    seeds = exemplar_seeds(exemplars) if exemplars is not None else {}
    for label, extra in seeds_from_points(model, prompts).items():
        seeds.setdefault(label, {}).update({s: m for s, m in extra.items() if s not in seeds.get(label, {})})
    if not seeds and atlas is not None:
        warped = np.moveaxis(warp_atlas(atlas, image, progress=progress, cancel=cancel).array, axis, 0)
        seeds = seeds_from_atlas(model, warped, config.stop.box_margin)
        if not seeds:
            raise InputError("predict: the saved atlas, registered onto this volume, does not overlap it (a "
                             "different body part or field of view?); paint a slice (--exemplars) or place a "
                             "positive point (--points) on the structure")
    if not seeds and heads is not None:
        seeds = seeds_from_heads(model, heads, config.stop.box_margin, cancel, progress)
    if not seeds:
        raise InputError("predict: no prompt to start from; paint a slice (--exemplars) or place a positive point "
                         "(--points) on the structure, or use a model saved with an atlas or a seed head")
    filled = labels_to_fill(model, exemplars, config) if exemplars is not None else set()
    labels = segment(model, exemplars, seeds, config, prompts, progress, cancel, filled)
    return image.with_array(np.ascontiguousarray(np.moveaxis(labels, 0, axis)))
