"""Remote mode: the module's Adapt, Apply, interactive slice and Propagate, and the effect's Adapt, run on a
``medadapt serve`` server instead of this computer. Slicer then needs neither torch nor the ``medadapt`` core:
this module and everything it imports at load time (numpy, vtk, slicer, the standard-library client) are
always in Slicer, and the image files are written and read with the SimpleITK that ships with Slicer.

A job reads the scene on the main thread (the volume's voxels and grid, the painted segment as a label map of
value 1 on that grid, the clicks as RAS points), then, in the runner's worker, writes them to NRRD files (exact
grid), uploads them, submits the job, forwards the server's progress, downloads the result label map and
checks that its grid is the volume's. The finished job's result becomes the preview segment on the main thread
exactly as in Local mode (:func:`results.show_preview`), so Accept and Reject work unchanged. Cancel asks the
server to stop the job and, like Local mode, leaves the scene as it was.

The uploaded image is reused while its voxels and grid are unchanged (the server keeps its slice embeddings per
upload, so a re-prompt runs the prompt decoder only); painted label maps and downloaded results are deleted on
the server once used. An adapter trained remotely stays on the server: Apply and the interactive slice use it
there, and Save adapter downloads it.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import results
from .base_logic import PreviewLogic
from .conversion import RAS_TO_LPS, Grid, box_from_roi, node_array, node_grid, painted_mask, segment_array
from .core_types import CancelledError, InputError, Progress
from .jobs import Job, Work
from .parameters import Parameters
from .regions import box, crop_grid
from .remote_client import RemoteClient, RemoteError

METHOD_NAMES = ("lora", "zero-shot", "fill", "grow", "linear-probe", "spatial-adapter", "spatial-adapter-ti")
"""The core's methods (``medadapt.methods.registry``; a test keeps the lists equal), offered without the core."""
KEPT_ADAPTER_METHODS = ("lora", "linear-probe", "spatial-adapter", "spatial-adapter-ti")
"""Methods whose trained model the server keeps (Local mode's savable ones): Apply and Save adapter use it."""
FINISHED = ("done", "failed", "cancelled")
POLL_S = 0.5
"""Longest wait for the server's answer before the cancel flag is looked at again."""
KEPT_UPLOADS = 2
"""Uploaded images kept on the server for reuse; older ones are deleted there."""


@dataclass
class Snapshot:
    """What a remote job sends, read from the scene on the main thread: the voxels (cropped to the ROI when
    there is one) on their LPS grid, the key of that upload, and where the crop sits in the full volume."""

    array: np.ndarray
    grid: Grid
    key: tuple
    low_zyx: tuple[int, int, int]
    full_shape: tuple[int, int, int]

    def crop(self, mask: np.ndarray) -> np.ndarray:
        """A full-volume (z, y, x) array restricted to this snapshot's region."""
        return np.ascontiguousarray(mask[box(self.low_zyx, self.array.shape)])


@dataclass
class RemoteModel:
    """The model Apply, the interactive slice and Propagate use on the server: a kept adapter (``adapter_id``),
    or the server's unadapted base model (``adapter_id`` ``None``, after a zero-shot Adapt)."""

    adapter_id: str | None
    method: str
    validation_dice: dict[int, float] = field(default_factory=dict)
    grown_labels: list[int] = field(default_factory=list)
    """Labels the server's grow referee gave to Grow from seeds."""


def write_image(array: np.ndarray, grid: Grid, path: str | Path) -> Path:
    """Write a (z, y, x) array on ``grid`` as an image file (NRRD keeps the grid exactly; compressed)."""
    import SimpleITK as sitk  # ships with Slicer
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(grid.spacing)
    image.SetOrigin(grid.origin)
    image.SetDirection(grid.direction)
    sitk.WriteImage(image, str(path), True)
    return Path(path)


def read_result(path: str | Path, grid: Grid, tolerance: float = 1e-4) -> np.ndarray:
    """The (z, y, x) label array of a downloaded result, which must lie on ``grid`` (the image sent):
    :class:`RemoteError` naming the field that differs otherwise, so a result is never shown shifted."""
    import SimpleITK as sitk
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise RemoteError(f"server result: not a readable image ({str(exc).strip().splitlines()[-1]})") from None
    got = Grid(tuple(image.GetSize()), tuple(image.GetSpacing()), tuple(image.GetOrigin()),
               tuple(image.GetDirection()))
    for name in ("size", "spacing", "origin", "direction"):
        a, b = np.asarray(getattr(grid, name), float), np.asarray(getattr(got, name), float)
        if a.shape != b.shape or not np.allclose(a, b, atol=tolerance * max(1.0, float(np.abs(a).max()))):
            raise RemoteError(f"server result: its {name} {tuple(round(float(v), 4) for v in b)} is not the "
                              f"volume's {tuple(round(float(v), 4) for v in a)}; the result was not shown")
    return sitk.GetArrayFromImage(image)


def points_json(positive_node=None, negative_node=None) -> dict | None:
    """The clicks of a positive and a negative point list as the server's points JSON (RAS, label 1), or
    ``None`` without any; the server maps them onto the image and names a point outside it."""
    points = []
    for node, positive in ((positive_node, True), (negative_node, False)):
        for n in range(node.GetNumberOfControlPoints() if node is not None else 0):
            position = [0.0, 0.0, 0.0]
            node.GetNthControlPointPositionWorld(n, position)
            points.append({"position": [float(v) for v in position], "positive": positive, "label": 1})
    return {"coordinates": "RAS", "points": points} if points else None


def voxel_of(grid: Grid, ras) -> tuple[int, int, int]:
    """(z, y, x) voxel nearest to a RAS position."""
    ijk = np.round(grid.world_to_index(RAS_TO_LPS @ np.asarray(ras, float))).astype(int)
    return int(ijk[2]), int(ijk[1]), int(ijk[0])


class RemoteLogic(PreviewLogic):
    """Adapt, Apply, interactive slice, Propagate, Accept / Reject (:class:`base_logic.PreviewLogic`) and Save
    adapter against one server (``url``) with one bearer ``token``: the same calls as
    :class:`logic.MedAdaptLogic`, so the widget and the effect use either. ``runner`` runs the jobs (default: a
    worker thread; tests pass a synchronous runner)."""

    NO_MODEL = "no adapted model: run Adapt (or choose a server adapter with Load adapter) first"

    def __init__(self, url: str, token: str = "", runner=None, client: RemoteClient | None = None):
        self.client = client or RemoteClient(url, token)
        super().__init__(runner)
        self.last_job: dict | None = None
        """The server's record of the latest job submitted (its ``id`` and state when submitted)."""
        self._uploads: OrderedDict[tuple, str] = OrderedDict()
        self._lock = threading.Lock()

    # --- connection -----------------------------------------------------------------------------------------------
    def test_connection(self, timeout: float = 10.0) -> str:
        """One line saying who the server takes this token for, its devices and this token's usage and limits
        ("Test connection", an answer within ``timeout`` seconds); :class:`RemoteError` with what went wrong
        otherwise."""
        try:
            who = RemoteClient(self.client.url, self.client.token, timeout).whoami()
        except RemoteError as exc:
            if exc.status == 401:
                raise RemoteError(f"{exc}: the server refused the token; enter the token its administrator gave "
                                  "you", exc.status) from None
            if exc.status == 404:
                raise RemoteError(f"{self.client.url} answered but is not a MedAdapt server (no /v1/whoami); check "
                                  "the URL and port", exc.status) from None
            raise
        usage, limits = who.get("usage", {}), who.get("limits", {})
        return (f"Connected to MedAdapt {who.get('version', '?')} at {self.client.url} as '{who.get('name', '?')}'; "
                f"devices: {', '.join(who.get('devices', [])) or '?'}; using {usage.get('storage_mb', 0)} of "
                f"{limits.get('max_storage_mb', '?')} MB, {usage.get('active_jobs', 0)} of {limits.get('max_jobs', '?')} "
                f"jobs queued or running; uploads up to {limits.get('max_upload_mb', '?')} MB.")

    def start_test_connection(self, on_done=None) -> Job:
        """:meth:`test_connection` as a job in the runner (the GUI stays responsive for the up to 10 s it may
        wait): the job's result is the line, its error what went wrong."""
        return self.runner.start(lambda progress, cancel: self.test_connection(), None, on_done)

    # --- reading the scene (main thread) --------------------------------------------------------------------------
    def snapshot(self, volume_node, roi_node=None) -> Snapshot:
        """The volume (restricted to the ROI's box when given) to send, read now on the main thread."""
        grid = node_grid(volume_node)
        array = node_array(volume_node)
        full_shape = tuple(int(s) for s in array.shape)
        low, high = np.zeros(3, int), np.array(full_shape) - 1
        if roi_node is not None:
            low, high = box_from_roi(roi_node, grid)
            array, grid = np.ascontiguousarray(array[box(low, high - low + 1)]), crop_grid(grid, low, high)
        key = (volume_node.GetID(), volume_node.GetImageData().GetMTime(), grid)
        return Snapshot(array, grid, key, tuple(int(v) for v in low), full_shape)

    def _painted(self, segmentation_node, segment_id, volume_node, snapshot: Snapshot) -> np.ndarray:
        """The painted segment as a label map of value 1 on the snapshot's region; :class:`InputError` naming the
        segment when nothing is painted there."""
        if segmentation_node is None or not segment_id:
            raise InputError("segmentation: select a segmentation and the segment you painted")
        labels = snapshot.crop(painted_mask(segmentation_node, segment_id, volume_node))
        if not labels.any():
            name = segmentation_node.GetSegmentation().GetSegment(segment_id).GetName()
            raise InputError(f"segment '{name}': nothing painted inside the ROI; move the ROI over painted slices")
        return labels

    # --- running a job on the server (worker thread) --------------------------------------------------------------
    def run(self, snapshot: Snapshot, request: dict, labels: np.ndarray | None = None, progress=None,
            cancel=None) -> tuple[np.ndarray, dict]:
        """Send ``snapshot`` (and the label map ``labels`` as the job's exemplars), run the job ``request``
        (the server's job fields but the volume IDs), forward its progress; returns (the result label array on
        the snapshot's grid, the job's final record). Cancelling asks the server to stop the job and raises
        :class:`CancelledError`; a failed job raises :class:`RemoteError` with the server's message."""
        report = progress or (lambda event: None)
        folder = Path(tempfile.mkdtemp(prefix="medadapt-remote-"))
        exemplars = job_id = None
        try:
            report(Progress("uploading to the server", 0, 1))
            image = self._image_id(snapshot, folder)
            _check(cancel)
            if labels is not None:
                exemplars = self.client.upload(write_image(labels.astype(np.uint8), snapshot.grid,
                                                           folder / "painted.nrrd"))["id"]
                _check(cancel)
            try:
                record = self.client.submit({**request, "image": image, "exemplars": exemplars})
            except RemoteError as exc:  # the kept upload was deleted on the server: send it again
                if exc.status != 404 or "image" not in str(exc):
                    raise
                self._drop_upload(snapshot.key)
                record = self.client.submit({**request, "image": self._image_id(snapshot, folder),
                                             "exemplars": exemplars})
            job_id, self.last_job = record["id"], record
            record = self._follow(job_id, report, cancel)
            if record["state"] != "done":
                raise RemoteError(f"the server's {request.get('kind', '')} job {record['state']}: "
                                  f"{record.get('error') or 'no reason given'}")
            array = read_result(self.client.result(job_id, folder / "result.nii.gz"), snapshot.grid)
            self._delete("jobs", job_id)
            return array, record
        finally:
            if exemplars is not None:
                self._delete("volumes", exemplars)
            shutil.rmtree(folder, ignore_errors=True)

    def _follow(self, job_id: str, report, cancel) -> dict:
        """The job's final record, its progress forwarded meanwhile; cancelled on the server when asked."""
        while True:
            if cancel is not None and cancel.is_set():
                try:
                    self.client.cancel(job_id)
                except RemoteError:
                    pass  # unreachable now: the server stops it at its next step if it can, nothing is shown
                raise CancelledError("cancelled by the user")
            record = self.client.job(job_id, wait=POLL_S)
            if record["state"] in FINISHED:
                return record
            event = record.get("progress")
            if record["state"] == "queued":
                report(Progress("queued on the server", 0, 1))
            elif event:
                report(Progress(**{k: event.get(k) for k in ("stage", "step", "total", "loss", "eta_s")}))

    def _image_id(self, snapshot: Snapshot, folder: Path) -> str:
        """The server's ID of the snapshot's image: the earlier upload while the voxels and grid are the same."""
        with self._lock:
            if snapshot.key in self._uploads:
                self._uploads.move_to_end(snapshot.key)
                return self._uploads[snapshot.key]
        image_id = self.client.upload(write_image(snapshot.array, snapshot.grid, folder / "image.nrrd"))["id"]
        with self._lock:
            self._uploads[snapshot.key] = image_id
            old = [self._uploads.popitem(last=False)[1] for _ in range(max(0, len(self._uploads) - KEPT_UPLOADS))]
        for volume_id in old:
            self._delete("volumes", volume_id)
        return image_id

    def _drop_upload(self, key) -> None:
        with self._lock:
            self._uploads.pop(key, None)

    def _delete(self, kind: str, item_id: str) -> None:
        """Delete on the server, best effort (a failure only leaves a file in this token's storage)."""
        try:
            self.client.delete(kind, item_id)
        except RemoteError:
            pass

    def close(self) -> None:
        """Delete this session's kept uploads on the server (best effort)."""
        with self._lock:
            kept, self._uploads = list(self._uploads.values()), OrderedDict()
        for volume_id in kept:
            self._delete("volumes", volume_id)

    # --- the module's workflows -----------------------------------------------------------------------------------
    def start_adapt(self, volume_node, segmentation_node, segment_id: str, parameters: Parameters,
                    positive_node=None, negative_node=None, roi_node=None, on_progress=None, on_done=None) -> Job:
        """Adapt on the server to the painted slices of ``segment_id`` (and the clicks) and show the result as
        its preview segment; a trained model stays on the server for Apply and Save adapter."""
        options = parameters.to_server_options()
        method = options["method"]
        snapshot = self.snapshot(volume_node, roi_node)
        labels = self._painted(segmentation_node, segment_id, volume_node, snapshot)
        keep = method in KEPT_ADAPTER_METHODS
        # the server keeps the atlas with the adapter by the core's one rule (Method.keeps_atlas), as Local does
        request = {"kind": "adapt", "points": points_json(positive_node, negative_node), "save_adapter": keep,
                   "options": options}

        def work(progress, cancel):
            array, record = self.run(snapshot, request, labels, progress, cancel)
            facts = record.get("facts") or {}
            dice = {int(k): float(v) for k, v in facts.get("validation_dice", {}).items()}
            model = (RemoteModel(record.get("adapter") if keep else None, method, dice,
                                 [int(v) for v in facts.get("grown_labels", [])])
                     if method not in ("fill", "grow") else None)
            return array, model
        return self._start_preview_job(work, snapshot, volume_node, segmentation_node, segment_id, on_progress,
                                       on_done, keep_model=True)

    def start_apply(self, volume_node, segmentation_node, segment_id: str, positive_node=None, negative_node=None,
                    roi_node=None, on_progress=None, on_done=None) -> Job:
        """Segment this volume on the server with the held model from its painted slices and/or clicks, or with
        none (a kept LoRA adapter registers its atlas, heads find the structure); the result becomes the
        preview of ``segment_id``."""
        model = self._require_model()
        snapshot = self.snapshot(volume_node, roi_node)
        labels = None
        if segmentation_node is not None and segment_id and segment_array(segmentation_node, segment_id,
                                                                          volume_node).any():
            labels = self._painted(segmentation_node, segment_id, volume_node, snapshot)
        points = points_json(positive_node, negative_node)
        if model.adapter_id is not None:
            request = {"kind": "predict", "adapter": model.adapter_id, "points": points}
        elif labels is not None:  # the server's base model (zero-shot) propagates the painted slices
            request = {"kind": "propagate", "points": points, "axis": _painted_axis(labels)}
        else:
            raise InputError("apply: the server's base model (zero-shot) needs painted slices of the segment")

        def work(progress, cancel):
            return self.run(snapshot, request, labels, progress, cancel)[0], None
        return self._start_preview_job(work, snapshot, volume_node, segmentation_node, segment_id, on_progress,
                                       on_done)

    def update_slice(self, volume_node, segmentation_node, segment_id: str, positive_node=None, negative_node=None,
                     roi_node=None, index: int | None = None, axis: int = 0, device: str = "auto") -> int:
        """Re-segment one slice along ``axis`` on the server from the clicks on it (with the held model, else
        the base model) and put it into the preview; returns the slice index (default: the slice of the last
        positive click, else the ROI's middle slice). The server's slice job takes clicks, not the ROI's box.
        Waits for the server (as Local mode waits for the model)."""
        grid = node_grid(volume_node)
        points = points_json(positive_node, negative_node)
        if index is None:
            positives = [p["position"] for p in (points or {}).get("points", []) if p["positive"]]
            if positives:
                index = voxel_of(grid, positives[-1])[axis]
            elif roi_node is not None:
                low, high = box_from_roi(roi_node, grid)
                index = int((low[axis] + high[axis]) // 2)
            else:
                raise InputError("interactive: place a positive point or an ROI on the structure (or give the slice)")
        if points is None:
            raise InputError("interactive (Remote): place a positive point on the structure; the server segments a "
                             "slice from clicks")
        snapshot = self.snapshot(volume_node)
        request = {"kind": "slice", "index": int(index), "axis": axis, "points": points,
                   "adapter": self.model.adapter_id if self.model is not None else None}
        array, _ = self.run(snapshot, request)
        current = results.preview_mask(segmentation_node, segment_id, volume_node)
        current = np.zeros(snapshot.full_shape, np.uint8) if current is None else np.array(current, np.uint8)
        np.moveaxis(current, axis, 0)[index] = np.moveaxis(array, axis, 0)[index] == 1
        results.show_preview(segmentation_node, segment_id, volume_node, current)
        return int(index)

    def start_propagate(self, volume_node, segmentation_node, segment_id: str, index: int, axis: int = 0,
                        device: str = "auto", on_progress=None, on_done=None) -> Job:
        """Extend the preview's slice ``index`` through the volume on the server (that slice is the seed)."""
        current = results.preview_mask(segmentation_node, segment_id, volume_node)
        seed = None if current is None or index is None else np.moveaxis(current, axis, 0)[index]
        if seed is None or not seed.any():
            raise InputError(f"propagate: the preview is empty on slice {index}; segment that slice first")
        snapshot = self.snapshot(volume_node)
        labels = np.zeros(snapshot.full_shape, np.uint8)
        np.moveaxis(labels, axis, 0)[index] = seed
        request = {"kind": "propagate", "axis": axis,
                   "adapter": self.model.adapter_id if self.model is not None else None}

        def work(progress, cancel):
            return self.run(snapshot, request, labels, progress, cancel)[0], None
        return self._start_preview_job(work, snapshot, volume_node, segmentation_node, segment_id, on_progress,
                                       on_done)

    def adapt_work(self, volume_node, segmentation_node, segment_ids: list[str],
                   parameters: Parameters) -> dict[str, Work]:
        """For the Segment Editor effect: each segment's painting, read now (main thread), and a job body
        adapting to it alone on the server (whole volume, no clicks) that returns the label array."""
        options = parameters.to_server_options()
        snapshot = self.snapshot(volume_node)

        def adapting(labels: np.ndarray) -> Work:
            return lambda progress, cancel: self.run(snapshot, {"kind": "adapt", "options": options}, labels,
                                                     progress, cancel)[0]
        return {i: adapting(painted_mask(segmentation_node, i, volume_node)) for i in segment_ids}

    # --- adapters kept on the server ------------------------------------------------------------------------------
    def server_adapters(self) -> list[dict]:
        """The adapters this token keeps on the server (``id``, ``method``, ``created``), newest first."""
        return sorted(self.client.adapters(), key=lambda record: -float(record.get("created", 0)))

    def use_adapter(self, adapter_id: str) -> RemoteModel:
        """Hold the server's adapter ``adapter_id`` for Apply (as Load adapter does locally)."""
        known = {record["id"]: record for record in self.client.adapters()}
        if adapter_id not in known:
            raise InputError(f"adapter {adapter_id}: not among this token's adapters on the server")
        self._hold(RemoteModel(adapter_id, known[adapter_id].get("method", "lora")))
        return self.model

    def save_adapter(self, directory: str | Path) -> Path:
        """Download the held adapter into the new folder ``directory`` (the layout ``medadapt adapt`` writes)."""
        model = self._require_model()
        if model.adapter_id is None:
            raise InputError(f"save adapter: method '{model.method}' trains no model to keep; run Adapt with one of "
                             f"{', '.join(KEPT_ADAPTER_METHODS)} first")
        directory = Path(directory)
        if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
            raise InputError(f"save adapter: {directory} exists and is not an empty folder; choose a new name")
        with tempfile.TemporaryDirectory(prefix="medadapt-adapter-") as staging:
            archive = self.client.adapter(model.adapter_id, Path(staging) / "adapter.zip")
            with zipfile.ZipFile(archive) as bundle:
                bundle.extractall(Path(staging) / "adapter")
            directory.parent.mkdir(parents=True, exist_ok=True)
            if directory.exists():
                directory.rmdir()
            shutil.move(str(Path(staging) / "adapter"), str(directory))
        return directory


def _painted_axis(labels: np.ndarray) -> int:
    """The array axis whose slices hold the painting: the fewest painted slices, ties to z (the server's
    ``infer_axis``)."""
    counts = [int(np.count_nonzero(labels.any(axis=tuple(a for a in range(3) if a != axis)))) for axis in range(3)]
    return int(np.argmin(counts))


def _check(cancel) -> None:
    if cancel is not None and cancel.is_set():
        raise CancelledError("cancelled by the user")
