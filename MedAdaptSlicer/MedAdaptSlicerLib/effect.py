"""The Segment Editor effect's work, without Qt: adapt to the painted segments of the editor's segmentation
(one job, one progress, one preview per segment), then Apply through Slicer's segment editor logic (editable
area, overwrite mode, intensity mask and undo are Slicer's own) or Cancel.

The preview lives in a separate segmentation node hidden from editors, as Slicer's own Fill between slices
keeps its preview: the user's segmentation is not touched until Apply, and Cancel removes that node, so the
scene is as it was.

Adapt asks the active logic (:func:`base_logic.logic_for`) to read each segment's painting and adapt to it:
:class:`logic.MedAdaptLogic` on this computer, or :class:`remote.RemoteLogic` on its server. The preview, Apply
and Cancel are the same either way, and nothing here needs the core or torch.
"""

from __future__ import annotations

import numpy as np
import slicer

from .conversion import oriented_mask, segment_array
from .core_types import InputError, Progress
from .jobs import Job, ThreadRunner
from .parameters import Parameters

PREVIEW_NODE_NAME = "MedAdapt preview"


class EditorLogicWriter:
    """Writes segments through a ``vtkSlicerSegmentEditorLogic`` bound to the editor node (slicer-core, tests):
    its masking honours the editor node's settings and its history gives one undo step per Apply."""

    def __init__(self, editor_node):
        self.logic = slicer.vtkSlicerSegmentEditorLogic()
        self.logic.SetMRMLScene(editor_node.GetScene())
        self.logic.SetSegmentEditorNode(editor_node)

    def save_state(self) -> None:
        """Save the segmentation for undo (one step for the whole Apply)."""
        self.logic.SaveStateForUndo()

    def modify(self, segmentation_node, segment_id: str, labelmap) -> None:
        """Set ``segment_id`` to ``labelmap`` inside the editable area the editor node allows."""
        self.logic.ModifySegmentByLabelmap(segmentation_node, segment_id, labelmap,
                                           self.logic.ModificationModeSet, False, False)


def painted_segment_ids(segmentation_node, volume_node) -> list[str]:
    """IDs of the segments with any painted voxel on ``volume_node``'s grid, in segment order."""
    segmentation = segmentation_node.GetSegmentation()
    ids = [segmentation.GetNthSegmentID(n) for n in range(segmentation.GetNumberOfSegments())]
    return [i for i in ids if segment_array(segmentation_node, i, volume_node).any()]


class EffectSession:
    """Adapt / Apply / Cancel for one Segment Editor (its ``vtkMRMLSegmentEditorNode``).

    ``runner`` runs the heavy work (default: a worker thread); ``writer`` applies previews (default:
    :class:`EditorLogicWriter`; the Qt effect passes one that writes through the editor widget).
    """

    def __init__(self, editor_node, runner=None, writer=None):
        self.editor_node = editor_node
        self.runner = runner or ThreadRunner()
        self.writer = writer or EditorLogicWriter(editor_node)
        self.previews: dict[str, np.ndarray] = {}
        self._preview_node = None

    def _inputs(self):
        segmentation_node = self.editor_node.GetSegmentationNode()
        volume_node = self.editor_node.GetSourceVolumeNode()
        if segmentation_node is None:
            raise InputError("Segment Editor: select a segmentation first")
        if volume_node is None:
            raise InputError("Segment Editor: select the source volume the segments were painted on")
        return segmentation_node, volume_node

    def start_adapt(self, parameters: Parameters, segment_ids: list[str] | None = None, on_progress=None,
                    on_done=None, logic=None) -> Job:
        """Adapt to each segment's painted slices (default: the editor's selected segment) in one job, each
        segment from its own painting, with ``logic`` (the active one; default: Local mode's); when it finishes,
        each segment's result is shown as its preview."""
        segmentation_node, volume_node = self._inputs()
        if segment_ids is None:
            selected = self.editor_node.GetSelectedSegmentID()
            if not selected:
                raise InputError("Segment Editor: select the segment you painted")
            segment_ids = [selected]
        names = {i: segmentation_node.GetSegmentation().GetSegment(i).GetName() for i in segment_ids}
        if logic is None:
            from .logic import MedAdaptLogic
            logic = MedAdaptLogic()
        adapting = logic.adapt_work(volume_node, segmentation_node, segment_ids, parameters)

        def work(progress, cancel):
            masks = {}
            for n, (segment_id, adapt_one) in enumerate(adapting.items()):
                prefix = f"{names[segment_id]} ({n + 1}/{len(adapting)})"
                report = (lambda event, p=prefix: progress(Progress(f"{p}: {event.stage}", event.step, event.total,
                                                                    event.loss, event.eta_s)))
                masks[segment_id] = (adapt_one(report, cancel) == 1).astype(np.uint8)
            return masks

        def done(job: Job) -> None:
            if job.state == "done":
                self.show_previews(job.result)
            if on_done is not None:
                on_done(job)
        return self.runner.start(work, on_progress, done)

    def show_previews(self, masks: dict[str, np.ndarray]) -> None:
        """Show ``masks`` (segment ID -> mask on the source volume grid) in the preview node, replacing any
        earlier preview; the user's segmentation is not changed."""
        segmentation_node, volume_node = self._inputs()
        self.remove_preview()
        node = slicer.vtkMRMLSegmentationNode()
        node.SetName(PREVIEW_NODE_NAME)
        node.SetHideFromEditors(True)
        self.editor_node.GetScene().AddNode(node)
        node.CreateDefaultDisplayNodes()
        node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
        for segment_id, mask in masks.items():
            source = segmentation_node.GetSegmentation().GetSegment(segment_id)
            preview_id = node.GetSegmentation().AddEmptySegment(segment_id, source.GetName(), source.GetColor())
            slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
                oriented_mask(volume_node, mask), node, preview_id, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
        self._preview_node, self.previews = node, dict(masks)

    def apply(self) -> list[str]:
        """Write every preview into its segment as one undo step, through the writer (Slicer's masking and
        overwrite settings apply), remove the preview and return the segment IDs written."""
        if not self.previews:
            raise InputError("MedAdapt: nothing to apply; press Adapt first")
        segmentation_node, volume_node = self._inputs()
        missing = [i for i in self.previews if segmentation_node.GetSegmentation().GetSegment(i) is None]
        if missing:
            raise InputError(f"segmentation '{segmentation_node.GetName()}': segment(s) {missing} were removed "
                             "since Adapt; press Adapt again")
        previews = self.previews
        self.remove_preview()
        self.writer.save_state()
        # Slicer builds the editable area ("outside all segments", ...) relative to the editor's selected segment:
        # select each segment while it is written, then restore the user's selection.
        selected = self.editor_node.GetSelectedSegmentID()
        try:
            for segment_id, mask in previews.items():
                self.editor_node.SetSelectedSegmentID(segment_id)
                self.writer.modify(segmentation_node, segment_id, oriented_mask(volume_node, mask))
        finally:
            self.editor_node.SetSelectedSegmentID(selected)
        return list(previews)

    def remove_preview(self) -> None:
        """Cancel: drop the preview node (if any); the segmentation was never changed."""
        node = self._preview_node
        if node is not None and node.GetScene() is not None:
            scene = node.GetScene()
            for display in [node.GetNthDisplayNode(n) for n in range(node.GetNumberOfDisplayNodes())]:
                scene.RemoveNode(display)
            scene.RemoveNode(node)
        self._preview_node, self.previews = None, {}
