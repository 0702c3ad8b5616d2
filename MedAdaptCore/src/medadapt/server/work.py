"""What a job does on its device, with the core: ``adapt`` (train, segment, optionally keep the adapter),
``predict`` (a kept adapter on a volume), ``propagate`` (painted or segmented slices extended through the
volume, no training) and ``slice`` (one slice re-segmented from clicks: the interactive re-prompt).

Each device's worker keeps, per uploaded volume, the frozen encoder's slice embeddings (the ``cached_volumes``
most recently used), the base model and the last adapters it loaded, so a re-prompt on a volume already seen
runs the prompt decoder only.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from medadapt.errors import InputError
from medadapt.io.exemplars import find_exemplars
from medadapt.io.intensity import intensity_window
from medadapt.io.points import points_from_json
from medadapt.io.volume import Volume, read_volume, require_same_grid, write_volume
from medadapt.options import AdaptOptions, build_config, check_option_values
from medadapt.progress import CancelFlag, ProgressCallback

MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
"""What a client may write as ``base_model``: one name, never a path (no slash, no leading dot)."""
JOB_KINDS = ("adapt", "predict", "propagate", "slice")
RESULT = "result.nii.gz"


@dataclass
class JobRequest:
    """A checked job submission: the kind, the IDs of its volumes (and adapter) and its options."""

    kind: str
    image: str
    exemplars: str | None = None
    points: dict | None = None
    options: dict = field(default_factory=dict)
    adapter: str | None = None
    save_adapter: bool = False
    index: int | None = None
    axis: int = 0


def adapt_options(values: dict, device: str, save_adapter: bool, models: Path | None = None) -> AdaptOptions:
    """The :class:`AdaptOptions` of a job's ``options`` on the worker's ``device`` (the server, not the client,
    chooses the device), ``base_model`` resolved by :func:`server_base_model`; :class:`InputError` naming a bad
    field."""
    if not isinstance(values, dict):
        raise InputError("options: expected an object of medadapt adapt options")
    known = {f for f in AdaptOptions.__dataclass_fields__ if f not in ("device", "save_model")}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"options: unknown field(s) {', '.join(unknown)}; expected some of {', '.join(sorted(known))}")
    if values.get("checkpoint"):
        raise InputError("options.checkpoint: a client names a model (options.base_model), never a file or folder "
                         "on the server")
    check_option_values(values)
    base_model = server_base_model(values.get("base_model", "litemedsam"), models)
    return AdaptOptions(**{**values, "base_model": base_model}, device=device, save_model=save_adapter)


def server_base_model(name, models: Path | None) -> str:
    """The base model a job names, as :func:`build_config` takes it: a backend registry name as it is, or the
    path of the sub-folder ``name`` of the administrator's ``models`` folder (``medadapt serve --models``); never
    anything in the server's working directory. :class:`InputError` naming ``options.base_model`` and listing
    the models on offer otherwise."""
    from medadapt.backends import BACKENDS
    if isinstance(name, str) and name in BACKENDS:
        return name
    if isinstance(name, str) and MODEL_NAME.fullmatch(name) and models is not None and (models / name).is_dir():
        return str((models / name).resolve())
    offered = sorted(BACKENDS) + (sorted(p.name for p in models.iterdir() if p.is_dir() and MODEL_NAME.fullmatch(
        p.name) and p.name not in BACKENDS) if models is not None else [])
    raise InputError(f"options.base_model: {str(name)[:80]!r} is not a model this server offers; expected one of "
                     f"{', '.join(offered)} (a name, never a file or folder on the server)")


def check_request(request: JobRequest, models: Path | None = None) -> None:
    """:class:`InputError` naming the field when a submission cannot run (before it is queued); ``models`` is
    the server's ``--models`` folder."""
    if request.kind not in JOB_KINDS:
        raise InputError(f"kind: expected one of {', '.join(JOB_KINDS)}, got {request.kind!r}")
    if request.kind == "adapt":
        if not request.exemplars:
            raise InputError("exemplars: adapt needs the painted label map's volume ID")
        build_config(adapt_options(request.options, "cpu", request.save_adapter, models))
        if request.save_adapter:
            from medadapt.artifacts import check_savable
            check_savable(request.options.get("method", "lora"), "save_adapter")
    elif request.options or request.save_adapter:
        raise InputError(f"options / save_adapter: only for adapt (a {request.kind} job runs a kept model)")
    if request.kind == "predict" and not request.adapter:
        raise InputError("adapter: predict needs the ID of an adapter kept by an adapt job")
    if request.kind == "propagate" and not request.exemplars:
        raise InputError("exemplars: propagate needs a label map with the segmented slice(s)")
    if request.kind == "slice":
        if not isinstance(request.index, int) or isinstance(request.index, bool) or request.index < 0:
            raise InputError(f"index: expected the slice number (0 or more), got {request.index!r}")
        if not request.points:
            raise InputError("points: a slice job needs clicks on that slice")
    if request.axis not in (0, 1, 2):
        raise InputError(f"axis: expected 0, 1 or 2 (array z, y, x), got {request.axis!r}")


class DeviceWorkspace:
    """One device's loaded models and embedding caches, used by one worker thread only; ``models`` is the
    server's ``--models`` folder of base models."""

    def __init__(self, device: str, cached_volumes: int, models: Path | None = None):
        from medadapt.pipeline import EmbeddingCache
        self.device, self.cached_volumes, self.models = device, cached_volumes, models
        self._caches: OrderedDict[str, EmbeddingCache] = OrderedDict()
        self._adapters: OrderedDict[str, object] = OrderedDict()
        self._base = None
        self._new_cache = EmbeddingCache

    def cache(self, volume_id: str):
        """The embedding cache of an uploaded volume (least recently used ones dropped)."""
        cache = self._caches.pop(volume_id, None) or self._new_cache()
        if self.cached_volumes:
            self._caches[volume_id] = cache
            while len(self._caches) > self.cached_volumes:
                self._caches.popitem(last=False)
        return cache

    def base(self):
        """The unadapted LiteMedSAM on this device, loaded once."""
        from medadapt.backends import load_backend
        if self._base is None:
            self._base = load_backend("litemedsam", self.device)
        return self._base

    def adapter(self, folder: Path):
        """The :class:`AdaptedModel` of a kept adapter, the two last used kept loaded."""
        from medadapt.artifacts import AdaptedModel
        key = str(folder)
        if key not in self._adapters:
            self._adapters[key] = AdaptedModel.load(folder, self.device)
            while len(self._adapters) > 2:
                self._adapters.popitem(last=False)
        self._adapters.move_to_end(key)
        return self._adapters[key]


@dataclass
class JobFiles:
    """Where a job reads and writes: its volumes' files, the adapter folder to use and the one to keep."""

    image: Path
    exemplars: Path | None
    adapter: Path | None
    result: Path
    keep_adapter: Path | None


def run_job(request: JobRequest, files: JobFiles, workspace: DeviceWorkspace, progress: ProgressCallback,
            cancel: CancelFlag) -> dict:
    """Run one job to its result file (and kept adapter); returns facts for its record. Nothing is written
    when it fails or is cancelled."""
    image = read_volume(files.image)
    exemplars_map = None
    if files.exemplars is not None:
        exemplars_map = read_volume(files.exemplars, label=True)
        require_same_grid(image, exemplars_map, "exemplars")
    points = points_from_json(request.points, image.geometry, "points") if request.points else None
    if request.kind == "adapt":
        return _adapt(request, files, workspace, image, exemplars_map, points, progress, cancel)
    backend, config, window, axis, heads, atlas = _model(request, files, workspace, image)
    if request.kind == "slice":
        segmentation = _slice(request, workspace, image, backend, window, points)
    else:
        from medadapt.pipeline import predict
        exemplars = (find_exemplars(image, exemplars_map, source="exemplars") if exemplars_map is not None
                     else None)
        segmentation = predict(image, backend, config, window, axis, exemplars, points, progress, cancel,
                               heads=heads, cache=workspace.cache(request.image), atlas=atlas)
    write_volume(segmentation, files.result)
    return {}


def _adapt(request, files, workspace, image, exemplars_map, points, progress, cancel) -> dict:
    from medadapt.artifacts import AdaptedModel
    from medadapt.pipeline import adapt
    options = adapt_options(request.options, workspace.device, request.save_adapter, workspace.models)
    config = build_config(options)
    exemplars = find_exemplars(image, exemplars_map, source="exemplars")
    result = adapt(image, exemplars, config, points, progress, cancel, cache=workspace.cache(request.image))
    if files.keep_adapter is not None:
        AdaptedModel.from_result(result, config, image, exemplars, keep_atlas=options.atlas).save(files.keep_adapter)
    write_volume(result.segmentation, files.result)
    return {"validation_dice": {str(k): round(float(v), 4) for k, v in result.validation_dice.items()},
            "grown_labels": [int(v) for v in result.grown_labels], "seconds": round(result.seconds, 1)}


def _model(request, files, workspace, image: Volume):
    """(backend, config, window, axis, heads, atlas) that a predict / propagate / slice job runs."""
    from medadapt.pipeline import window_for
    if files.adapter is not None:
        model = workspace.adapter(files.adapter)
        axis = model.axis if request.kind == "predict" else request.axis
        return model.backend, model.config, window_for(image, model.window), axis, model.heads, model.atlas
    config = build_config(replace(AdaptOptions(method="zero-shot"), device=workspace.device))
    return workspace.base(), config, intensity_window(image.array), request.axis, None, None


def _slice(request, workspace, image: Volume, backend, window, points) -> Volume:
    """One slice re-segmented from the clicks on it (a label map with that slice only)."""
    from medadapt.slices.session import SliceSession
    if request.index >= image.array.shape[request.axis]:
        raise InputError(f"index: slice {request.index} is beyond the image's {image.array.shape[request.axis]} "
                         f"slices along axis {request.axis}")
    session = SliceSession(backend, image, request.axis, window,
                           workspace.cache(request.image).slices(backend, request.axis, window))
    try:
        mask = session.segment_slice(request.index, points or [])
    except ValueError as exc:
        raise InputError(f"points: {exc}") from exc
    labels = session.put_slice(np.zeros(image.array.shape, np.uint8), request.index, mask)
    return image.with_array(labels)

