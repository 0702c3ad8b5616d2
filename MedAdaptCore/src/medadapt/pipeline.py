"""The adaptation pipeline: exemplars -> (synthesis -> adapter training) -> propagated volume segmentation."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from medadapt.backends import load_backend
from medadapt.backends.base import PromptableBackend
from medadapt.backends.catalog import prefetch
from medadapt.backends.devices import require_concrete
from medadapt.backends.registry import VOLUME_MODEL, kind_of, trains_only_heads
from medadapt.config import AdaptConfig
from medadapt.errors import InputError
from medadapt.io.exemplars import Exemplars
from medadapt.io.intensity import intensity_window, is_ct, require_contrast
from medadapt.io.points import PointPrompt
from medadapt.io.volume import Volume
from medadapt.methods.atlas import Atlas, warp_atlas
from medadapt.methods.fseft import seeds_from_heads
from medadapt.methods.fseft3d import predict_3d, require_head_method
from medadapt.methods.heads import HeadSet
from medadapt.methods.registry import Method, method_for
from medadapt.methods.result import AdaptResult, AdaptRun
from medadapt.progress import CancelFlag, ProgressCallback
from medadapt.slices.between import gap_fillers
from medadapt.slices.features import SliceFeatures
from medadapt.slices.frame import in_plane_spacing
from medadapt.slices.labels import assign_labels, segment
from medadapt.slices.model import SliceModel
from medadapt.slices.seeds import exemplar_seeds, prompts_by_label, seeds_from_atlas, seeds_from_points
from medadapt.slices.stack import slice_stack


class EmbeddingCache:
    """Frozen-encoder image embeddings of one image, kept across runs (new prompts, another method)."""

    def __init__(self):
        self._by_setting: dict[tuple, dict[int, torch.Tensor]] = {}

    def slices(self, backend: PromptableBackend, axis: int, window: tuple[float, float]) -> dict[int, torch.Tensor]:
        """The cache of slice embeddings for this base model, slice axis and intensity window."""
        return self._by_setting.setdefault((backend.name, backend.embedding_key, backend.image_size, axis,
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
    require_concrete(config.device)
    method = trainable_method(config)
    torch.manual_seed(config.seed)
    run = AdaptRun(image, exemplars, config, points or [], intensity_window(image.array, exemplars.labelmap.array != 0),
                   np.random.default_rng(config.seed), time.monotonic(), progress, cancel, backend)
    if not method.uses_model or kind_of(config.backend) == VOLUME_MODEL:  # a volume model reads the volume itself
        return method.adapt(run)
    require_contrast(image)
    if run.backend is None:
        prefetch(config.backend, config.checkpoint, progress, cancel)
        run.backend = load_base_model(config)
    run.encoder_frozen = encoder_frozen(config)
    run.model = slice_model(image, run.backend, exemplars.axis, run.window, cache, run.encoder_frozen, progress,
                            cancel)
    return method.adapt(run)


def trainable_method(config: AdaptConfig) -> Method:
    """``config.method`` as the method registry declares it, if ``config.backend`` trains it (a backend that trains
    the FSEFT heads only refuses the others: :class:`InputError` naming ``--method``)."""
    if trains_only_heads(config.backend):
        return require_head_method(config.method, config.backend)
    return method_for(config.method)


def load_base_model(config: AdaptConfig) -> PromptableBackend:
    """The model ``config`` adapts: ``config.backend``'s weights, or a lineage's current model."""
    if config.lineage is not None:
        from medadapt.lineage.folder import read_lineage
        from medadapt.lineage.model import load_lineage_model
        return load_lineage_model(read_lineage(config.lineage), config.device)
    return load_backend(config.backend, config.device, config.checkpoint, config.input_size)


def encoder_frozen(config: AdaptConfig) -> bool:
    """True unless the method adapts the foundation model with LoRA on its image encoder (then slice
    embeddings change with training and are not cached)."""
    return not (method_for(config.method).trains_backend and "encoder" in config.adapter.parts)


def slice_model(image: Volume, backend: PromptableBackend, axis: int, window: tuple[float, float],
                cache: EmbeddingCache | None, frozen: bool, progress: ProgressCallback | None,
                cancel: CancelFlag | None) -> SliceModel:
    """``backend`` over the slices of ``image`` along ``axis`` in intensity ``window``, sharing the embeddings of
    ``cache`` while the encoder stays ``frozen``."""
    embeddings = cache.slices(backend, axis, window) if cache is not None and frozen else None
    return SliceModel(backend, slice_stack(image, axis, window), in_plane_spacing(image.geometry.spacing, axis),
                      progress, cancel, embeddings)


def window_for(image: Volume, manifest_window: tuple[float, float] | None) -> tuple[float, float]:
    """Intensity window for a new volume: the adapted CT window, or the new volume's own percentiles."""
    if manifest_window is not None and is_ct(image.array):
        return tuple(manifest_window)
    return intensity_window(image.array)


@dataclass
class PredictRun:
    """One ``predict`` call: the new image, the loaded (adapted) backend and its config, the intensity window, the
    slice axis (the painted slices' when there are any), and what starts or steers the segmentation."""

    image: Volume
    backend: PromptableBackend
    config: AdaptConfig
    window: tuple[float, float]
    axis: int
    exemplars: Exemplars | None
    points: list[PointPrompt]
    progress: ProgressCallback | None
    cancel: CancelFlag | None
    heads: HeadSet | None
    cache: EmbeddingCache | None
    atlas: Atlas | None

    def slice_model(self) -> SliceModel:
        """The backend over the image's slices (:func:`slice_model`)."""
        return slice_model(self.image, self.backend, self.axis, self.window, self.cache, encoder_frozen(self.config),
                           self.progress, self.cancel)

    def on_image(self, labels: np.ndarray) -> Volume:
        """A label stack (slice axis first) as a label map on the image grid."""
        return self.image.with_array(np.ascontiguousarray(np.moveaxis(labels, 0, self.axis)))


def predict(image: Volume, backend: PromptableBackend, config: AdaptConfig, window: tuple[float, float],
            axis: int, exemplars: Exemplars | None = None, points: list[PointPrompt] | None = None,
            progress: ProgressCallback | None = None, cancel: CancelFlag | None = None,
            heads: HeadSet | None = None, cache: EmbeddingCache | None = None, atlas: Atlas | None = None
            ) -> Volume:
    """Segment ``image`` with an (adapted) ``backend`` from painted slices and/or positive clicks, as
    :func:`predictor` chooses.

    FSEFT methods segment every slice with their ``heads`` (no prompt needed; painted slices are kept). For
    the other methods without any prompt, the ``atlas`` registered onto ``image`` (:func:`seeds_from_atlas`)
    or else a seed ``heads`` set (:func:`seeds_from_heads`) chooses where propagation starts. ``cache``
    shares frozen-encoder embeddings of ``image`` between calls.
    """
    require_contrast(image)
    run = PredictRun(image, backend, config, window, exemplars.axis if exemplars is not None else axis, exemplars,
                     points or [], progress, cancel, heads, cache, atlas)
    return predictor(config)(run)


def predictor(config: AdaptConfig) -> Callable[[PredictRun], Volume]:
    """How ``config``'s model segments a new volume, as the registries declare it: a volume model (the backend's
    kind) with its 3D heads; a slice model with the method's heads (a method with a head kind) or else by
    propagation from prompts."""
    if kind_of(config.backend) == VOLUME_MODEL:
        return predict_volume
    return predict_with_heads if method_for(config.method).head_kind is not None else predict_from_prompts


def predict_volume(run: PredictRun) -> Volume:
    """The volume model's saved 3D heads segment the whole image (:func:`predict_3d`)."""
    return predict_3d(run.image, run.backend, run.heads, run.config, run.axis, run.exemplars, run.cancel)


def predict_with_heads(run: PredictRun) -> Volume:
    """The method's saved heads segment every slice of the slice model."""
    if run.heads is None:
        raise InputError(f"predict: method {run.config.method!r} needs its trained heads (heads.safetensors)")
    model = run.slice_model()
    probabilities = run.heads.probabilities(SliceFeatures(model, run.heads.source), run.cancel, run.progress)
    return run.on_image(assign_labels(probabilities, run.exemplars, run.config))


def predict_from_prompts(run: PredictRun) -> Volume:
    """Propagation from the painted slices and clicks, else from the atlas or a seed head."""
    model, axis, config = run.slice_model(), run.axis, run.config
    prompts = prompts_by_label(run.points, axis)
    seeds = exemplar_seeds(run.exemplars) if run.exemplars is not None else {}
    for label, extra in seeds_from_points(model, prompts).items():
        seeds.setdefault(label, {}).update({s: m for s, m in extra.items() if s not in seeds.get(label, {})})
    if not seeds and run.atlas is not None:
        warped = np.moveaxis(warp_atlas(run.atlas, run.image, progress=run.progress, cancel=run.cancel).array, axis, 0)
        seeds = seeds_from_atlas(model, warped, config.stop.box_margin)
        if not seeds:
            raise InputError("predict: the saved atlas, registered onto this volume, does not overlap it (a "
                             "different body part or field of view?); paint a slice (--exemplars) or place a "
                             "positive point (--points) on the structure")
    if not seeds and run.heads is not None:
        seeds = seeds_from_heads(model, run.heads, config.stop.box_margin, run.cancel, run.progress)
    if not seeds:
        raise InputError("predict: no prompt to start from; paint a slice (--exemplars) or place a positive point "
                         "(--points) on the structure, or use a model saved with an atlas or a seed head")
    fillers = gap_fillers(model, run.exemplars, config) if run.exemplars is not None else {}
    return run.on_image(segment(model, run.exemplars, seeds, config, prompts, run.progress, run.cancel, fillers))
