"""PNG overlays of segmentations on image slices (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medadapt.io.volume import Volume


def radiological(volume: Volume) -> np.ndarray:
    """(z, y, x) array reoriented so that rows run anterior->posterior and columns right->left (LPS)."""
    return sitk.GetArrayFromImage(sitk.DICOMOrient(volume.to_sitk(), "LPS"))


def overlay_png(path: str | Path, image: Volume, masks: dict[str, Volume], slices: list[int],
                window: tuple[float, float], given: list[int] = ()) -> Path:
    """Save a row of axial slices of ``image`` (radiological view) with each named mask's outline; slice
    numbers are those of the (z, y, x) array of the reoriented image; ``given`` slices are marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    colours = ["#ffd400", "#00e5ff", "#ff3b30", "#7cff4f"]
    array = radiological(image)
    outlines = {name: radiological(mask) for name, mask in masks.items()}
    fig, axes = plt.subplots(1, len(slices), figsize=(3.2 * len(slices), 3.4), squeeze=False)
    for ax, index in zip(axes[0], slices):
        ax.imshow(array[index], cmap="gray", vmin=window[0], vmax=window[1])
        for colour, mask in zip(colours, outlines.values()):
            ax.contour(mask[index].astype(float), levels=[0.5], colors=colour, linewidths=1.2)
        ax.set_title(f"slice {index}" + (" (painted)" if index in given else ""), fontsize=9)
        ax.axis("off")
    handles = [plt.Line2D([], [], color=c, label=n) for c, n in zip(colours, masks)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
