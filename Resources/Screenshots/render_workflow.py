"""Render the README's Slicer workflow figure from the module library's real output (slicer-core, offscreen).

A real MRML scene gets the bundled sample CT and a "liver" segment painted on 3 axial slices; the module's
logic adapts (LoRA, as the Adapt button does) and writes the "liver (MedAdapt)" preview segment. The figure
shows the painted segment and the preview in Slicer's red (axial), green (coronal) and yellow (sagittal)
views, with the segment colours read from the scene.

    python Resources/Screenshots/render_workflow.py   # writes Resources/Screenshots/MedAdaptSlicer.png
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
    """Run the workflow in a scene and save the figure."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import SimpleITK as sitk
    from slicer_fixtures import add_segmentation, load_ct, make_scene, reference_labels
    from MedAdaptSlicerLib.conversion import segment_array, volume_from_node
    from MedAdaptSlicerLib.jobs import SynchronousRunner
    from MedAdaptSlicerLib.logic import MedAdaptLogic
    from MedAdaptSlicerLib.parameters import Parameters
    from MedAdaptSlicerLib.results import preview_segment_id

    scene, _, logics = make_scene()
    volume = load_ct(logics)
    liver = reference_labels() == 5
    painted_slices = [9, 16, 23]
    painted = np.zeros(liver.shape, np.uint8)
    painted[painted_slices] = liver[painted_slices]
    segmentation = add_segmentation(scene, volume, {"liver": painted})
    job = MedAdaptLogic(SynchronousRunner()).start_adapt(volume, segmentation, "liver", Parameters(method="lora"))
    if job.state != "done":
        raise SystemExit(f"adapt failed: {job.error}")
    preview_id = preview_segment_id(segmentation, "liver")
    segments = segmentation.GetSegmentation()
    masks = {"liver (painted)": (segment_array(segmentation, "liver", volume), segments.GetSegment("liver")),
             "liver (MedAdapt)": (segment_array(segmentation, preview_id, volume), segments.GetSegment(preview_id))}
    image = volume_from_node(volume)

    def lps(array):
        return sitk.GetArrayFromImage(sitk.DICOMOrient(image.with_array(array).to_sitk(), "LPS"))
    ct = lps(image.array)
    oriented = {name: (lps(mask.astype(np.uint8)), segment.GetColor()) for name, (mask, segment) in masks.items()}
    preview = oriented["liver (MedAdapt)"][0]
    z, y, x = 12, int(np.argmax(preview.sum(axis=(0, 2)))), int(np.argmax(preview.sum(axis=(0, 1))))
    views = [("Red: axial, slice not painted", lambda a: a[z]),
             ("Green: coronal", lambda a: a[::-1, y, :]),
             ("Yellow: sagittal", lambda a: a[::-1, :, x])]
    bar = {"Red": "#c24b4b", "Green": "#6cb26c", "Yellow": "#d6c349"}
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2), facecolor="black")
    for ax, (title, cut) in zip(axes, views):
        ax.imshow(cut(ct), cmap="gray", vmin=-160, vmax=240, aspect="equal")
        for name, (mask, colour) in oriented.items():
            ax.contour(cut(mask).astype(float), levels=[0.5], colors=[colour], linewidths=1.5)
            overlay = np.zeros(cut(mask).shape + (4,))
            overlay[cut(mask) > 0] = (*colour, 0.25)
            ax.imshow(overlay, aspect="equal")
        ax.set_title(title, color="white", fontsize=10, backgroundcolor=bar[title.split(":")[0]])
        ax.axis("off")
    handles = [plt.Line2D([], [], color=colour, lw=3, label=name) for name, (_, colour) in oriented.items()]
    fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False, labelcolor="white")
    fig.suptitle(f"MedAdapt in Slicer: liver painted on axial slices {painted_slices}, Adapt -> preview segment",
                 color="white")
    fig.tight_layout(rect=(0, 0.07, 1, 0.95))
    fig.savefig(HERE / "MedAdaptSlicer.png", dpi=100, facecolor="black")
    print(f"wrote {HERE / 'MedAdaptSlicer.png'}")


if __name__ == "__main__":
    main()
