"""What the module's buttons do: gather inputs from MRML nodes, run the core off the GUI thread, and write
results back as a preview segment. The Widget, the self-test, ``batch.py`` and the tests all call this."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from medadapt.artifacts import AdaptedModel
from medadapt.backends import load_backend
from medadapt.backends.devices import resolve_device
from medadapt.errors import InputError
from medadapt.io.exemplars import Exemplars, find_exemplars
from medadapt.io.intensity import intensity_window
from medadapt.pipeline import adapt, predict, window_for
from medadapt.slices.labels import segment
from medadapt.io.points import PointPrompt
from medadapt.slices.seeds import exemplar_seeds
from medadapt.slices.session import SliceSession
from medadapt.io.volume import Volume

from . import results, terminology
from .base_logic import PreviewLogic
from .conversion import (box_from_roi, exemplar_labelmap, prompts_from_markups, segment_array, volume_from_node,
                         write_segment_array)
from .jobs import Job, Work
from .parameters import Parameters
from .regions import crop
from medadapt.methods.registry import METHODS, method_for

SAVABLE_METHODS = tuple(name for name, method in METHODS.items() if method.saveable and method.trained)
"""Methods whose model Save adapter writes (the server keeps the same ones, ``remote.KEPT_ADAPTER_METHODS``):
the trained ones. A zero-shot Adapt holds the unadapted base model, which the module does not save."""


@dataclass
class Inputs:
    """Core inputs read from the scene: the (ROI-cropped) image, painted exemplars (or ``None``), point
    prompts, and where the crop sits in the full volume."""

    image: Volume
    exemplars: Exemplars | None
    points: list[PointPrompt]
    low_zyx: tuple[int, int, int]
    full_shape: tuple[int, int, int]


def read_inputs(volume_node, segmentation_node=None, segment_id=None, positive_node=None, negative_node=None,
                roi_node=None, need_exemplars: bool = True) -> Inputs:
    """Read the image, the painted segment and the point lists, restricted to the ROI when one is given."""
    full = volume_from_node(volume_node)
    low, high = (np.zeros(3, int), np.array(full.array.shape) - 1)
    if roi_node is not None:
        low, high = box_from_roi(roi_node, full.geometry)
    image = crop(full, low, high)
    exemplars = None
    if segmentation_node is not None and segment_id and (
            need_exemplars or segment_array(segmentation_node, segment_id, volume_node).any()):
        exemplars = painted_exemplars(image, segmentation_node, segment_id, volume_node, (low, high))
    elif need_exemplars:
        raise InputError("segmentation: select a segmentation and the segment you painted")
    points = prompts_from_markups(positive_node, negative_node, image.geometry)
    return Inputs(image, exemplars, points, tuple(int(v) for v in low), full.array.shape)


def painted_exemplars(image: Volume, segmentation_node, segment_id: str, volume_node, bounds=None) -> Exemplars:
    """The painted slices of ``segment_id`` as core exemplars on ``image``, named after the segment in errors;
    ``bounds``: the inclusive (z, y, x) bounds ``image`` was cropped to, if it was."""
    labelmap = exemplar_labelmap(segmentation_node, segment_id, volume_node)
    if bounds is not None:
        labelmap = crop(labelmap, *bounds)
    name = segmentation_node.GetSegmentation().GetSegment(segment_id).GetName()
    return find_exemplars(image, labelmap, source=f"segment '{name}'")


class MedAdaptLogic(PreviewLogic):
    """Adapt, apply, interactive slice prompts, Accept / Reject (:class:`base_logic.PreviewLogic`), adapter
    files, lineages and universal models for one Slicer session, with the core on this computer.

    ``runner`` runs the heavy work (default: a worker thread; tests and batch pass a synchronous runner).
    """

    NO_MODEL = "no adapted model: run Adapt or Load adapter first"

    def __init__(self, runner=None):
        super().__init__(runner)
        self._base: dict[str, object] = {}
        self._session: SliceSession | None = None
        self._universal: dict[tuple[str, str], tuple[str, object, object]] = {}

    def base_backend(self, device: str):
        """The unadapted foundation model on ``device``, loaded once and reused (never trained in place)."""
        device = resolve_device(device)
        if device not in self._base:
            self._base[device] = load_backend("litemedsam", device)
        return self._base[device]

    def _hold(self, model: AdaptedModel) -> None:
        """Hold ``model``; the slice session of the previous one is dropped."""
        self.model, self._session = model, None

    def start_adapt(self, volume_node, segmentation_node, segment_id: str, parameters: Parameters,
                    positive_node=None, negative_node=None, roi_node=None, on_progress=None, on_done=None) -> Job:
        """Adapt to the painted slices of ``segment_id`` and show the result as its preview segment."""
        config = parameters.to_config()
        inputs = read_inputs(volume_node, segmentation_node, segment_id, positive_node, negative_node, roi_node)
        method = method_for(config.method)
        # a method that trains nothing runs the loaded base model as it is when that is the model asked for
        # (training ones build their own, after the run's seed, as the command line does)
        plain_base = config.backend == "litemedsam" and config.checkpoint is None and config.lineage is None
        reuse = self.base_backend(config.device) if method.uses_model and not method.trained and plain_base else None

        def work(progress, cancel):
            result = adapt(inputs.image, inputs.exemplars, config, inputs.points, progress, cancel, backend=reuse)
            # the atlas by the one rule (Method.keeps_atlas); the module has no opt-out: Save adapter is itself
            # the choice to keep the model, and batch.py's --no-atlas leaves the atlas out when saving
            model = None if result.backend is None else AdaptedModel.from_result(result, config, inputs.image,
                                                                                 inputs.exemplars)
            return result.segmentation.array, model
        return self._start_preview_job(work, inputs, volume_node, segmentation_node, segment_id, on_progress, on_done,
                                       keep_model=True)

    def start_apply(self, volume_node, segmentation_node, segment_id: str, positive_node=None, negative_node=None,
                    roi_node=None, on_progress=None, on_done=None) -> Job:
        """Segment another volume with the held (adapted or loaded) model from its painted slices and/or
        positive points, or with no prompt at all (a head method's heads, or LoRA's atlas registered onto the
        volume, find the structure); the result becomes the preview of ``segment_id``."""
        model = self._require_model()
        inputs = read_inputs(volume_node, segmentation_node, segment_id, positive_node, negative_node, roi_node,
                             need_exemplars=False)

        def work(progress, cancel):
            return predict(inputs.image, model.backend, model.config, window_for(inputs.image, model.window),
                           model.axis, inputs.exemplars, inputs.points, progress, cancel, heads=model.heads,
                           atlas=model.atlas).array, None
        return self._start_preview_job(work, inputs, volume_node, segmentation_node, segment_id, on_progress, on_done)

    def _slice_session(self, image: Volume, axis: int, device: str) -> SliceSession:
        backend = self.model.backend if self.model is not None else self.base_backend(device)
        window = self.model.window if self.model is not None else intensity_window(image.array)
        if self._session is None or not self._session.matches(backend, image, axis):
            self._session = SliceSession(backend, image, axis, window)
        return self._session

    def update_slice(self, volume_node, segmentation_node, segment_id: str, positive_node=None, negative_node=None,
                     roi_node=None, index: int | None = None, axis: int = 0, device: str = "auto") -> int:
        """Re-segment one slice along ``axis`` from the clicks and ROI and put it into the preview; returns the
        slice index (default: the slice of the last positive point, else the ROI's middle slice)."""
        image = volume_from_node(volume_node)
        points = prompts_from_markups(positive_node, negative_node, image.geometry)
        box = box_from_roi(roi_node, image.geometry) if roi_node is not None else None
        if index is None:
            positives = [p for p in points if p.positive]
            if positives:
                index = positives[-1].index_zyx[axis]
            elif box is not None:
                index = int((box[0][axis] + box[1][axis]) // 2)
            else:
                raise InputError("interactive: place a positive point or an ROI on the structure (or give the slice)")
        session = self._slice_session(image, axis, device)
        slice_mask = session.segment_slice(index, points, box)
        current = results.preview_mask(segmentation_node, segment_id, volume_node)
        current = np.zeros(image.array.shape, np.uint8) if current is None else current
        results.show_preview(segmentation_node, segment_id, volume_node, session.put_slice(current, index, slice_mask))
        return index

    def start_propagate(self, volume_node, segmentation_node, segment_id: str, index: int, axis: int = 0,
                        device: str = "auto", on_progress=None, on_done=None) -> Job:
        """Extend the preview's slice ``index`` through the volume (that slice is the seed)."""
        image = volume_from_node(volume_node)
        current = results.preview_mask(segmentation_node, segment_id, volume_node)
        seed = None if current is None else np.moveaxis(current, axis, 0)[index]
        if seed is None or not seed.any():
            raise InputError(f"propagate: the preview is empty on slice {index}; segment that slice first")
        labelmap = np.zeros(image.array.shape, np.int32)
        np.moveaxis(labelmap, axis, 0)[index] = seed
        exemplars = Exemplars(image.with_array(labelmap), axis, [index], {1: [index]})
        session = self._slice_session(image, axis, device)
        config = self.model.config if self.model is not None else Parameters(method="zero-shot",
                                                                              device=device).to_config()
        inputs = Inputs(image, exemplars, [], (0, 0, 0), image.array.shape)

        def work(progress, cancel):
            # The session's SliceModel is reused, so slices embedded during interaction are not encoded again.
            labels = segment(session.model, exemplars, exemplar_seeds(exemplars), config, {}, progress, cancel)
            return np.ascontiguousarray(np.moveaxis(labels, 0, axis)), None
        return self._start_preview_job(work, inputs, volume_node, segmentation_node, segment_id, on_progress, on_done)

    def adapt_work(self, volume_node, segmentation_node, segment_ids: list[str],
                   parameters: Parameters) -> dict[str, Work]:
        """For the Segment Editor effect: each segment's painted slices, read now (main thread), and a job body
        adapting to them alone on the whole volume (no clicks, no ROI) that returns the label array."""
        config = parameters.to_config()
        image = volume_from_node(volume_node)

        def adapting(exemplars: Exemplars) -> Work:
            return lambda progress, cancel: adapt(image, exemplars, config, None, progress, cancel).segmentation.array
        return {i: adapting(painted_exemplars(image, segmentation_node, i, volume_node)) for i in segment_ids}

    def start_add_to_lineage(self, folder: str | Path, volume_node, segmentation_node, segment_id: str,
                             task_name: str, modality: str = "", device: str = "auto", method: str = "medseqft",
                             retention: bool = True, settings=None, on_progress=None, on_done=None) -> Job:
        """Teach the lineage in ``folder`` the accepted segment ``segment_id`` of ``volume_node`` as task
        ``task_name`` (``medadapt lineage add``); a folder without a lineage gets a new one first (LiteMedSAM
        base, ``method``, ``retention`` of slices, stage ``settings``); an empty folder is used as it is. The
        job's result is the lineage."""
        from medadapt.lineage.folder import BaseFacts, StageSettings, is_lineage, new_record, write_lineage
        from medadapt.lineage.stage import add_task
        if not segment_id:
            raise InputError("add to lineage: select the accepted segment to add")
        name = segmentation_node.GetSegmentation().GetSegment(segment_id).GetName()
        task = (volume_from_node(volume_node), exemplar_labelmap(segmentation_node, segment_id, volume_node),
                f"segment '{name}'")
        device = resolve_device(device)
        if not is_lineage(folder):
            if Path(folder).is_dir() and any(Path(folder).iterdir()):
                raise InputError(f"add to lineage: {folder} is neither a lineage nor empty; choose a lineage folder "
                                 "or an empty one to start a lineage in")
            base = BaseFacts(name="litemedsam", sha256=self.base_backend(device).checkpoint_sha256)
            write_lineage(folder, new_record(base, method, retention, settings or StageSettings()))

        def work(progress, cancel):
            return add_task(folder, [task], 1, task_name, modality, device, progress=progress, cancel=cancel)
        return self.runner.start(work, on_progress, on_done)

    def universal_tasks(self, folder: str | Path) -> list[str]:
        """Task names of the universal model in ``folder``, read from its ``universal.json`` alone (the weights
        are not loaded); :class:`InputError` when the folder holds no universal model."""
        return [task["name"] for task in _universal_record(folder)["tasks"]]

    def universal_modalities(self, folder: str | Path) -> list[str]:
        """Modalities the universal model in ``folder`` learned (its priors), read from ``universal.json`` alone;
        :class:`InputError` when the field is missing or not a list of names."""
        record = _universal_record(folder)
        modalities = record.get("modalities")
        if not modalities or not isinstance(modalities, list) or not all(isinstance(m, str) for m in modalities):
            raise InputError(f"{Path(folder) / 'universal.json'}: field modalities: expected a list of names")
        return modalities

    def _universal_model(self, folder: str | Path, device: str):
        """(model, foundation model) of the universal model in ``folder`` on ``device``, loaded once and loaded
        again only when the folder's weights change."""
        from medadapt.universal.folder import read_universal
        from medadapt.universal.predict import base_backend
        key = (str(Path(folder).resolve()), resolve_device(device))
        weights = _universal_record(folder).get("weights_sha256", "")
        if key not in self._universal or self._universal[key][0] != weights:
            model = read_universal(folder)
            model.network.to(key[1])
            self._universal[key] = (model.record.weights_sha256, model, base_backend(model, key[1]))
        return self._universal[key][1:]

    def start_universal_segment(self, folder: str | Path, volume_node, segmentation_node, tasks: list[str],
                                modality: str | None = None, device: str = "auto", on_progress=None,
                                on_done=None) -> Job:
        """Segment ``tasks`` of the universal model in ``folder`` on ``volume_node``, prompt-free: each task
        becomes a new segment of ``segmentation_node`` named after it ("<task> (universal)" when the name is
        taken), with its terminology tag and colour. Existing segments are never changed; a cancelled or failed
        job adds nothing. ``modality``: the image's (default: CT for Hounsfield units, else the model's only
        other one). The job's result is the predicted label map."""
        from medadapt.universal.predict import choose_modality, predict_tasks
        known = self.universal_tasks(folder)
        tasks = list(dict.fromkeys(tasks or []))
        unknown = [name for name in tasks if name not in known]
        if unknown or not tasks:
            raise InputError(f"tasks: {'unknown task(s) ' + ', '.join(unknown) if unknown else 'none chosen'}; "
                             f"this model knows {', '.join(known)}")
        if segmentation_node is None:
            raise InputError("segmentation: select the segmentation that receives the new segments")
        image = volume_from_node(volume_node)
        model, backend = self._universal_model(folder, device)
        modality = choose_modality(model, image, modality)

        def work(progress, cancel):
            return predict_tasks(model, backend, image, tasks, modality, progress, cancel)

        def done(job: Job) -> None:
            if job.state == "done":
                add_task_segments(segmentation_node, volume_node, job.result.array,
                                  {name: model.task(name).value for name in tasks})
            if on_done is not None:
                on_done(job)
        return self.runner.start(work, on_progress, done)

    def save_to_collection(self, folder: str | Path, volume_node, segmentation_node, segment_id: str,
                           task_name: str, modality: str) -> Path:
        """Add the accepted segment ``segment_id`` of ``volume_node`` to the training collection in ``folder``
        (created if absent) as task ``task_name`` of ``modality``: the image and the segment as a label map
        (value 1) in NIfTI files and a JSON sidecar naming them, all under new names (nothing is overwritten),
        the sidecar written last. Returns the sidecar's path; ``medadapt universal train FOLDER`` reads it."""
        from medadapt.universal.collection import add_entry
        if not segment_id:
            raise InputError("add to collection: select the accepted segment to add")
        return add_entry(folder, volume_from_node(volume_node),
                         exemplar_labelmap(segmentation_node, segment_id, volume_node), task_name, modality)

    def save_adapter(self, directory: str | Path, keep_atlas: bool = True) -> Path:
        """Save the held adapted model as an adapter folder (:meth:`AdaptedModel.save`); ``keep_atlas=False``
        (``batch.py --no-atlas``) leaves its atlas out."""
        model = self._require_model()
        if model.config.method not in SAVABLE_METHODS:
            raise InputError(f"save adapter: only a trained model can be saved ({', '.join(SAVABLE_METHODS)}; this "
                             f"one is '{model.config.method}'); run Adapt with one of those methods first")
        return (model if keep_atlas else replace(model, atlas=None)).save(directory)

    def load_adapter(self, directory: str | Path, device: str = "auto") -> AdaptedModel:
        """Load an adapter folder (:meth:`AdaptedModel.load`) and hold it for Apply / interactive use."""
        model = AdaptedModel.load(directory, resolve_device(device))
        if model.window is None or "exemplars" not in model.manifest:
            raise InputError(f"adapter {directory}: manifest lacks 'window' or 'exemplars' (axis); re-save it")
        self._hold(model)
        return self.model


def _universal_record(folder: str | Path) -> dict:
    """The ``universal.json`` of a universal model folder as read (JSON only, no torch), its task list checked;
    :class:`InputError` naming the folder or field otherwise."""
    record = Path(folder or "") / "universal.json"
    if not folder or not record.is_file():
        raise InputError(f"universal model: {folder or '(none chosen)'} holds no universal.json; choose a folder "
                         "written by `medadapt universal train`")
    try:
        fields = json.loads(record.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{record}: not valid JSON ({exc})") from exc
    tasks = fields.get("tasks") if isinstance(fields, dict) else None
    if not tasks or not isinstance(tasks, list) or not all(
            isinstance(task, dict) and isinstance(task.get("name"), str) for task in tasks):
        raise InputError(f"{record}: field tasks: expected a list of tasks with names")
    return fields


def free_segment_name(segmentation_node, name: str) -> str:
    """``name`` when no segment has it, else "<name> (universal)", else "<name> (universal 2)", ..."""
    segmentation = segmentation_node.GetSegmentation()
    candidates = itertools.chain((name, f"{name} (universal)"), (f"{name} (universal {n})" for n in itertools.count(2)))
    return next(c for c in candidates if not segmentation.GetSegmentIdBySegmentName(c))


def add_task_segments(segmentation_node, volume_node, labels: np.ndarray, values: dict[str, int]) -> list[str]:
    """One new segment per task (task name -> label value in ``labels``, a (z, y, x) map on ``volume_node``'s
    grid), named by :func:`free_segment_name`, with terminology and colour; returns their IDs. Existing segments
    are left as they are; should writing fail, the segments added so far are removed again."""
    segmentation = segmentation_node.GetSegmentation()
    added = []
    try:
        for position, (task, value) in enumerate(values.items()):
            name = free_segment_name(segmentation_node, task)
            segment_id = segmentation.AddEmptySegment("", name)
            added.append(segment_id)
            terminology.describe_segment(segmentation.GetSegment(segment_id), task, position)
            write_segment_array(segmentation_node, segment_id, volume_node, labels == value)
    except BaseException:
        for segment_id in added:
            segmentation.RemoveSegment(segment_id)
        raise
    return added
