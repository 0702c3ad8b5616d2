"""Render the README's "first five minutes in Slicer" figure from the Segment Editor effect's real output
(slicer-core, offscreen).

A real MRML scene gets the bundled sample CT, a segmentation with a "spleen" segment and a "liver" segment
painted on 3 axial slices, and a segment editor node (editable area: outside all segments). The effect's
session adapts the liver (default LoRA, as the effect's Adapt button does), shows the preview, and Apply
writes it through Slicer's segment editor logic. Panels: the painting, the preview on a slice that was not
painted, and the liver segment after Apply next to the untouched spleen (coronal).

    python Resources/Screenshots/render_effect.py   # writes Resources/Screenshots/SegmentEditorEffect.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "Testing"))
sys.path.insert(0, str(REPO / "MedAdaptSlicer"))


def main() -> None:
    """Run paint -> Adapt -> Apply in a scene and save the figure."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import slicer
    import SimpleITK as sitk
    from slicer_fixtures import add_segmentation, load_ct, make_scene, reference_labels, segment_arrays
    from MedAdaptSlicerLib.conversion import volume_from_node
    from MedAdaptSlicerLib.effect import EffectSession
    from MedAdaptSlicerLib.jobs import SynchronousRunner
    from MedAdaptSlicerLib.parameters import Parameters

    scene, _, logics = make_scene()
    volume = load_ct(logics)
    labels = reference_labels()
    painted_slices = [5, 15, 25]
    painted = np.zeros(labels.shape, np.uint8)
    painted[painted_slices] = labels[painted_slices] == 5
    segmentation = add_segmentation(scene, volume, {"liver": painted, "spleen": labels == 1})
    segments = segmentation.GetSegmentation()
    editor = scene.AddNode(slicer.vtkMRMLSegmentEditorNode())
    editor.SetAndObserveSegmentationNode(segmentation)
    editor.SetAndObserveSourceVolumeNode(volume)
    editor.SetSelectedSegmentID(segments.GetSegmentIdBySegmentName("liver"))
    editor.SetMaskMode(slicer.vtkMRMLSegmentationNode.EditAllowedOutsideAllSegments)
    session = EffectSession(editor, SynchronousRunner())
    job = session.start_adapt(Parameters(device="cpu"))
    if job.state != "done":
        raise SystemExit(f"adapt failed: {job.error}")
    preview = next(iter(session.previews.values()))
    session.apply()
    after = segment_arrays(segmentation, volume)
    image = volume_from_node(volume)

    def lps(array):
        return sitk.GetArrayFromImage(sitk.DICOMOrient(image.with_array(array).to_sitk(), "LPS"))
    ct = lps(image.array)
    colour = {name: segments.GetSegment(segments.GetSegmentIdBySegmentName(name)).GetColor()
              for name in ("liver", "spleen")}
    unpainted = 12
    y = int(np.argmax(lps(after["liver"]).sum(axis=(0, 2))))
    panels = [(f"1. Paint: liver on axial slices {painted_slices} (slice 15)", lambda a: a[15],
               {"liver": lps(painted)}),
              (f"2. MedAdapt > Adapt: preview on slice {unpainted}, not painted", lambda a: a[unpainted],
               {"liver": lps(preview)}),
              ("3. Apply (outside all segments): coronal", lambda a: a[::-1, y, :],
               {"liver": lps(after["liver"]), "spleen": lps(after["spleen"])})]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2), facecolor="black")
    for ax, (title, cut, masks) in zip(axes, panels):
        ax.imshow(cut(ct), cmap="gray", vmin=-160, vmax=240, aspect="equal")
        for name, mask in masks.items():
            ax.contour(cut(mask).astype(float), levels=[0.5], colors=[colour[name]], linewidths=1.5)
            overlay = np.zeros(cut(mask).shape + (4,))
            overlay[cut(mask) > 0] = (*colour[name], 0.3)
            ax.imshow(overlay, aspect="equal")
        ax.set_title(title, color="white", fontsize=9)
        ax.axis("off")
    handles = [plt.Line2D([], [], color=c, lw=3, label=name) for name, c in colour.items()]
    fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False, labelcolor="white")
    fig.suptitle("MedAdapt in the Segment Editor: paint, Adapt, Apply", color="white")
    fig.tight_layout(rect=(0, 0.07, 1, 0.95))
    fig.savefig(HERE / "SegmentEditorEffect.png", dpi=100, facecolor="black")
    print(f"wrote {HERE / 'SegmentEditorEffect.png'}")


if __name__ == "__main__":
    main()
