"""Render the README's Slicer figures from real output of the module library (slicer-core, offscreen).

A real MRML scene gets the bundled sample CT and a "liver" segment painted on 3 axial slices, then:

* ``workflow`` (``MedAdaptSlicer.png``): the module's logic adapts (LoRA, as its Adapt button does) and writes
  the "liver (MedAdapt)" preview segment, shown in Slicer's red (axial), green (coronal) and yellow (sagittal)
  views with the segment colours read from the scene;
* ``effect`` (``SegmentEditorEffect.png``): with a "spleen" segment and a segment editor node (editable area:
  outside all segments), the Segment Editor effect's session adapts the liver (default LoRA, as the effect's
  Adapt does), shows the preview, and Apply writes it through Slicer's segment editor logic. Panels: the
  painting, the preview on a slice that was not painted, and the liver after Apply beside the untouched spleen.

    python Resources/Screenshots/render_figures.py workflow effect
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "Testing"))
sys.path.insert(0, str(REPO / "MedAdaptSlicer"))
LIVER, SPLEEN = 5, 1


def painted_scene(painted_slices: list[int], with_spleen: bool):
    """(scene, volume node, segmentation node, reference labels) with the liver painted on ``painted_slices``."""
    from slicer_fixtures import add_segmentation, load_ct, make_scene, reference_labels
    scene, _, logics = make_scene()
    volume = load_ct(logics)
    labels = reference_labels()
    painted = np.zeros(labels.shape, np.uint8)
    painted[painted_slices] = labels[painted_slices] == LIVER
    segments = {"liver": painted, **({"spleen": labels == SPLEEN} if with_spleen else {})}
    return scene, volume, add_segmentation(scene, volume, segments), labels


def lps(volume, array: np.ndarray) -> np.ndarray:
    """``array`` on ``volume``'s grid reoriented to LPS, (z, y, x): axial slices as radiologists view them."""
    import SimpleITK as sitk
    from MedAdaptSlicerLib.conversion import volume_from_node
    image = volume_from_node(volume)
    return sitk.GetArrayFromImage(sitk.DICOMOrient(image.with_array(array).to_sitk(), "LPS"))


def draw(path: Path, volume, panels, colours: dict, title: str, bars: dict | None = None) -> None:
    """Save panels (title, cut of an LPS-oriented (z, y, x) array, {name: mask on the volume grid}) over the CT."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from MedAdaptSlicerLib.conversion import volume_from_node
    ct = lps(volume, volume_from_node(volume).array)
    fig, axes = plt.subplots(1, len(panels), figsize=(12, 4.2), facecolor="black")
    for ax, (name, cut, masks) in zip(axes, panels):
        ax.imshow(cut(ct), cmap="gray", vmin=-160, vmax=240, aspect="equal")
        for segment, mask in masks.items():
            shown = cut(lps(volume, mask.astype(np.uint8)))
            ax.contour(shown.astype(float), levels=[0.5], colors=[colours[segment]], linewidths=1.5)
            overlay = np.zeros(shown.shape + (4,))
            overlay[shown > 0] = (*colours[segment], 0.25)
            ax.imshow(overlay, aspect="equal")
        bar = (bars or {}).get(name.split(":")[0])
        ax.set_title(name, color="white", fontsize=9, **({"backgroundcolor": bar} if bar else {}))
        ax.axis("off")
    handles = [plt.Line2D([], [], color=c, lw=3, label=n) for n, c in colours.items()]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, labelcolor="white")
    fig.suptitle(title, color="white")
    fig.tight_layout(rect=(0, 0.07, 1, 0.95))
    fig.savefig(path, dpi=100, facecolor="black")
    print(f"wrote {path}")


def workflow() -> None:
    """The module's Adapt and its preview segment in the three views."""
    from MedAdaptSlicerLib.conversion import segment_array
    from MedAdaptSlicerLib.jobs import SynchronousRunner
    from MedAdaptSlicerLib.logic import MedAdaptLogic
    from MedAdaptSlicerLib.parameters import Parameters
    from MedAdaptSlicerLib.results import preview_segment_id
    painted_slices = [9, 16, 23]
    _, volume, segmentation, _ = painted_scene(painted_slices, with_spleen=False)
    job = MedAdaptLogic(SynchronousRunner()).start_adapt(volume, segmentation, "liver", Parameters(method="lora"))
    if job.state != "done":
        raise SystemExit(f"adapt failed: {job.error}")
    preview_id = preview_segment_id(segmentation, "liver")
    segments = segmentation.GetSegmentation()
    masks = {"liver (painted)": segment_array(segmentation, "liver", volume),
             "liver (MedAdapt)": segment_array(segmentation, preview_id, volume)}
    colours = {"liver (painted)": segments.GetSegment("liver").GetColor(),
               "liver (MedAdapt)": segments.GetSegment(preview_id).GetColor()}
    preview = lps(volume, masks["liver (MedAdapt)"])
    y, x = (int(np.argmax(preview.sum(axis=axes))) for axes in ((0, 2), (0, 1)))
    panels = [("Red: axial, slice not painted", lambda a: a[12], masks),
              ("Green: coronal", lambda a: a[::-1, y, :], masks),
              ("Yellow: sagittal", lambda a: a[::-1, :, x], masks)]
    draw(HERE / "MedAdaptSlicer.png", volume, panels, colours,
         f"MedAdapt in Slicer: liver painted on axial slices {painted_slices}, Adapt -> preview segment",
         {"Red": "#c24b4b", "Green": "#6cb26c", "Yellow": "#d6c349"})


def effect() -> None:
    """The Segment Editor effect: paint, Adapt (preview), Apply with 'outside all segments'."""
    import slicer
    from slicer_fixtures import segment_arrays
    from MedAdaptSlicerLib.effect import EffectSession
    from MedAdaptSlicerLib.jobs import SynchronousRunner
    from MedAdaptSlicerLib.parameters import Parameters
    painted_slices = [5, 15, 25]
    scene, volume, segmentation, labels = painted_scene(painted_slices, with_spleen=True)
    segments = segmentation.GetSegmentation()
    editor = scene.AddNode(slicer.vtkMRMLSegmentEditorNode())
    editor.SetAndObserveSegmentationNode(segmentation)
    editor.SetAndObserveSourceVolumeNode(volume)
    editor.SetSelectedSegmentID(segments.GetSegmentIdBySegmentName("liver"))
    editor.SetMaskMode(slicer.vtkMRMLSegmentationNode.EditAllowedOutsideAllSegments)
    session = EffectSession(editor, SynchronousRunner())
    painted = segment_arrays(segmentation, volume)["liver"]
    job = session.start_adapt(Parameters(device="cpu"))
    if job.state != "done":
        raise SystemExit(f"adapt failed: {job.error}")
    preview = next(iter(session.previews.values()))
    session.apply()
    after = segment_arrays(segmentation, volume)
    colours = {name: segments.GetSegment(segments.GetSegmentIdBySegmentName(name)).GetColor()
               for name in ("liver", "spleen")}
    y = int(np.argmax(lps(volume, after["liver"]).sum(axis=(0, 2))))
    panels = [(f"1. Paint: liver on axial slices {painted_slices} (slice 15)", lambda a: a[15], {"liver": painted}),
              ("2. MedAdapt > Adapt: preview on slice 12, not painted", lambda a: a[12], {"liver": preview}),
              ("3. Apply (outside all segments): coronal", lambda a: a[::-1, y, :],
               {"liver": after["liver"], "spleen": after["spleen"]})]
    draw(HERE / "SegmentEditorEffect.png", volume, panels, colours,
         "MedAdapt in the Segment Editor: paint, Adapt, Apply")


if __name__ == "__main__":
    for figure in sys.argv[1:] or ["workflow", "effect"]:
        {"workflow": workflow, "effect": effect}[figure]()
