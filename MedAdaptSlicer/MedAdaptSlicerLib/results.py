"""Writing results into a segmentation: the preview segment, Accept and Reject.

Undo: in the Slicer application, Accept is one undoable step (the scene's state is saved right before the
target segment changes, when scene undo is on). slicer-core without the application has the same
``SaveStateForUndo`` call, but segment voxels are only restored by the application's segment editor undo,
so headless callers should keep a copy (see :func:`accept_preview`'s return value).
"""

from __future__ import annotations

import colorsys

import numpy as np

from .conversion import segment_array, write_segment_array

PREVIEW_SUFFIX = " (MedAdapt)"
EDITABLE_AREAS = ("everywhere", "outside other segments")


def preview_name(segment_name: str) -> str:
    """Name of the preview segment of ``segment_name``."""
    return f"{segment_name}{PREVIEW_SUFFIX}"


def _distinct_colour(colour: tuple[float, float, float]) -> tuple[float, float, float]:
    """The complementary hue at full saturation, so the preview stands out from its target segment."""
    hue, _, value = colorsys.rgb_to_hsv(*colour)
    return colorsys.hsv_to_rgb((hue + 0.5) % 1.0, 0.9, max(value, 0.8))


def preview_segment_id(segmentation_node, target_id: str) -> str | None:
    """ID of the target segment's preview, or ``None`` when there is none."""
    segmentation = segmentation_node.GetSegmentation()
    name = preview_name(segmentation.GetSegment(target_id).GetName())
    return segmentation.GetSegmentIdBySegmentName(name) or None


def show_preview(segmentation_node, target_id: str, volume_node, mask: np.ndarray) -> str:
    """Create or replace the preview segment of ``target_id`` holding ``mask``; returns its ID."""
    segmentation = segmentation_node.GetSegmentation()
    target = segmentation.GetSegment(target_id)
    preview_id = preview_segment_id(segmentation_node, target_id)
    if preview_id is None:
        name = preview_name(target.GetName())
        preview_id = segmentation.AddEmptySegment(name, name, _distinct_colour(target.GetColor()))
    write_segment_array(segmentation_node, preview_id, volume_node, mask)
    return preview_id


def preview_mask(segmentation_node, target_id: str, volume_node) -> np.ndarray | None:
    """The current preview mask on the volume grid, or ``None`` without a preview."""
    preview_id = preview_segment_id(segmentation_node, target_id)
    return None if preview_id is None else segment_array(segmentation_node, preview_id, volume_node)


def _other_segments(segmentation_node, volume_node, exclude: set[str]) -> np.ndarray:
    segmentation = segmentation_node.GetSegmentation()
    others = None
    for n in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(n)
        if segment_id in exclude:
            continue
        mask = segment_array(segmentation_node, segment_id, volume_node).astype(bool)
        others = mask if others is None else others | mask
    return others


def accept_preview(segmentation_node, target_id: str, volume_node, editable: str = "everywhere",
                   replace: bool = True) -> np.ndarray:
    """Copy the preview into the target segment, remove the preview, and return the target's previous mask.

    ``replace`` overwrites the target (else the preview is added to it); ``editable`` ``"outside other
    segments"`` leaves voxels that belong to any other segment out. Other segments are never modified.
    """
    if editable not in EDITABLE_AREAS:
        raise ValueError(f"editable area: expected one of {EDITABLE_AREAS}, got {editable!r}")
    preview_id = preview_segment_id(segmentation_node, target_id)
    if preview_id is None:
        raise ValueError(f"segmentation '{segmentation_node.GetName()}': no MedAdapt preview to accept")
    previous = segment_array(segmentation_node, target_id, volume_node)
    new = segment_array(segmentation_node, preview_id, volume_node).astype(bool)
    if editable == "outside other segments":
        others = _other_segments(segmentation_node, volume_node, {target_id, preview_id})
        if others is not None:
            new &= ~others
    if not replace:
        new |= previous.astype(bool)
    scene = segmentation_node.GetScene()
    if scene is not None:
        scene.SaveStateForUndo()
    write_segment_array(segmentation_node, target_id, volume_node, new)
    segmentation_node.GetSegmentation().RemoveSegment(preview_id)
    return previous


def reject_preview(segmentation_node, target_id: str) -> bool:
    """Remove the target's preview segment; ``True`` when there was one."""
    preview_id = preview_segment_id(segmentation_node, target_id)
    if preview_id is not None:
        segmentation_node.GetSegmentation().RemoveSegment(preview_id)
    return preview_id is not None
