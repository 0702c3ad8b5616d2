"""What ``medadapt web`` (the browser UI, :mod:`medadapt_web.app`) does with the scene, without trame: load a
volume with a segmentation of one segment and two point lists, Adapt (the local core through
:class:`MedAdaptSlicerLib.logic.MedAdaptLogic`, or a ``medadapt serve`` server through
:class:`MedAdaptSlicerLib.remote.RemoteLogic`, as in the module), the preview, Accept / Reject and the accepted
segment as a NIfTI label map to download.

Runs on the MRML scene of a ``trame_slicer.core.SlicerApp`` (the same slicer-core scene and segment editor the
browser paints into); tests drive it without a browser or a trame server. Jobs run on a worker thread and their
callbacks are delivered by :meth:`WebSession.poll` on the thread that owns the scene (the app's event loop).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from MedAdaptSlicerLib import results
from MedAdaptSlicerLib.conversion import segment_array, volume_from_node
from MedAdaptSlicerLib.jobs import Job, ThreadRunner
from MedAdaptSlicerLib.parameters import Parameters

SEGMENT_COLOUR = (0.87, 0.35, 0.25)
POINT_LISTS = (("positive points", (0.2, 0.9, 0.3)), ("negative points", (0.95, 0.2, 0.2)))


class WebSession:
    """One browser session's data on ``slicer_app``'s scene: the volume, a segmentation with the segment
    ``segment_name`` that the paint effect edits, the positive / negative point lists, and the Adapt job.

    ``jobs``: :class:`MedAdaptSlicerLib.logic.MedAdaptLogic` (the local core, the default) or
    :class:`MedAdaptSlicerLib.remote.RemoteLogic` (a server); both have the same ``start_adapt`` and a ``runner``
    whose ``poll`` delivers the job's callbacks."""

    def __init__(self, slicer_app, jobs=None, segment_name: str = "liver"):
        if jobs is None:
            from MedAdaptSlicerLib.logic import MedAdaptLogic
            jobs = MedAdaptLogic(ThreadRunner())
        self.app, self.jobs, self.segment_name = slicer_app, jobs, segment_name
        self.volume_node = self.segmentation_node = None
        self.positive_node = self.negative_node = None
        self.segment_id = ""
        self.job: Job | None = None

    @property
    def scene(self):
        return self.app.scene

    def load_volume(self, paths):
        """Load the image in ``paths`` (a file, a DICOM series folder, or a list of files: the largest image
        they hold) with a new segmentation holding one empty segment and two empty point lists, replacing the
        previous ones; returns the volume node."""
        from medadapt.errors import InputError
        files = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
        files = [f for p in files for f in (sorted(x for x in p.iterdir() if x.is_file()) if p.is_dir() else [p])]
        if self.job is not None and self.job.state == "running":
            self.job.cancel()
        for node in (self.volume_node, self.segmentation_node, self.positive_node, self.negative_node):
            if node is not None and node.GetScene() is self.scene:
                self.scene.RemoveNode(node)
        self.volume_node = self.segmentation_node = self.positive_node = self.negative_node = None
        volumes = [v for v in self.app.io_manager.load_volumes([str(f) for f in files]) if v.GetImageData()]
        if not volumes:
            raise InputError(f"{', '.join(f.name for f in files) or 'no file'}: not an image Slicer can read")
        volumes.sort(key=lambda v: v.GetImageData().GetNumberOfPoints())
        self.volume_node = volumes.pop()
        for extra in volumes:
            self.scene.RemoveNode(extra)
        display = self.volume_node.GetDisplayNode()
        low = self.volume_node.GetImageData().GetScalarRange()[0]
        if display is not None and low < -500:  # CT in Hounsfield units: a soft-tissue window
            display.SetAutoWindowLevel(False)
            display.SetWindowLevel(400, 40)
        self.segmentation_node = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Segmentation")
        self.segmentation_node.CreateDefaultDisplayNodes()
        self.segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(self.volume_node)
        self.segment_id = self.segmentation_node.GetSegmentation().AddEmptySegment(
            self.segment_name, self.segment_name, SEGMENT_COLOUR)
        self.positive_node, self.negative_node = (self._point_list(name, colour) for name, colour in POINT_LISTS)
        self.app.segmentation_editor.set_active_segmentation(self.segmentation_node, self.volume_node)
        self.app.segmentation_editor.set_active_segment_id(self.segment_id)
        self.job = None
        return self.volume_node

    def _point_list(self, name: str, colour):
        node = self.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
        node.CreateDefaultDisplayNodes()
        node.GetDisplayNode().SetSelectedColor(*colour)
        node.GetDisplayNode().SetColor(*colour)
        return node

    def clear_points(self) -> None:
        for node in (self.positive_node, self.negative_node):
            if node is not None:
                node.RemoveAllControlPoints()

    def painted_voxels(self) -> int:
        """Voxels of the painted (or accepted) segment."""
        if self.volume_node is None:
            return 0
        return int(segment_array(self.segmentation_node, self.segment_id, self.volume_node).sum())

    def start_adapt(self, parameters: Parameters, on_progress=None, on_done=None) -> Job:
        """Start Adapt on the painted slices (and the points); the result becomes the preview segment."""
        from medadapt.errors import InputError
        if self.volume_node is None:
            raise InputError("load a volume first")
        if self.job is not None and self.job.state == "running":
            raise InputError("a job is running: wait for it or cancel it")
        if not self.painted_voxels():
            raise InputError(f"segment '{self.segment_name}' is empty: paint the structure on a few slices first")
        self.job = self.jobs.start_adapt(self.volume_node, self.segmentation_node, self.segment_id, parameters,
                                         positive_node=self.positive_node, negative_node=self.negative_node,
                                         on_progress=on_progress, on_done=on_done)
        return self.job

    def poll(self) -> bool:
        """Deliver the job's progress and completion (on the scene's thread); ``True`` while it runs."""
        return self.jobs.runner.poll()

    def wait(self, timeout_s: float = 600.0, step_s: float = 0.1) -> Job | None:
        """Poll until the job has finished (tests and scripts)."""
        deadline = time.monotonic() + timeout_s
        while self.poll() and time.monotonic() < deadline:
            time.sleep(step_s)
        return self.job

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def has_preview(self) -> bool:
        return self.segmentation_node is not None and results.preview_segment_id(
            self.segmentation_node, self.segment_id) is not None

    def accept(self) -> int:
        """Copy the preview into the segment (replacing what was painted); returns the segment's voxels."""
        results.accept_preview(self.segmentation_node, self.segment_id, self.volume_node)
        return self.painted_voxels()

    def reject(self) -> bool:
        return results.reject_preview(self.segmentation_node, self.segment_id)

    def label_map_bytes(self) -> bytes:
        """The segment as a gzipped NIfTI label map (value 1, uint8) on the volume's grid."""
        from medadapt.errors import InputError
        from medadapt.io.volume import write_volume
        if self.volume_node is None:
            raise InputError("load a volume first")
        mask = segment_array(self.segmentation_node, self.segment_id, self.volume_node)
        with tempfile.TemporaryDirectory(prefix="medadapt-web-") as folder:
            path = write_volume(volume_from_node(self.volume_node).with_array(mask.astype(np.uint8)),
                                Path(folder) / "labels.nii.gz")
            return path.read_bytes()
