"""Click-to-preview latency of the Slicer module's interactive prompt mode (a script, not a test).

Loads the bundled sample CT into a real MRML scene (slicer-core), then, through the module library exactly as
the Widget does, re-segments one slice after each "click" (a moved ROI box) and writes the preview segment.
The first update of a slice includes its image embedding; later ones reuse the cached embedding.

    python benchmarks/interactive_latency.py [--device cpu|cuda] [--repeats 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Testing"))
sys.path.insert(0, str(REPO / "MedAdaptSlicer"))


def main() -> None:
    """Print first-click and cached-click latencies (median, max) in seconds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    from slicer_fixtures import add_roi, add_segmentation, load_ct, make_scene, reference_labels
    from MedAdaptSlicerLib.jobs import SynchronousRunner
    from MedAdaptSlicerLib.logic import MedAdaptLogic

    scene, _, logics = make_scene()
    volume = load_ct(logics)
    liver = reference_labels() == 5
    segmentation = add_segmentation(scene, volume, {"liver": np.zeros(liver.shape, np.uint8)})
    logic = MedAdaptLogic(SynchronousRunner())
    logic.base_backend(args.device)  # model loading is a one-off, not part of a click
    first, cached = [], []
    for index in (10, 15, 20):
        rows, cols = np.nonzero(liver[index])
        for repeat in range(args.repeats + 1):
            shift = repeat % 3
            roi = add_roi(scene, volume, (index, rows.min() + shift, cols.min()), (index, rows.max(), cols.max()))
            started = time.perf_counter()
            logic.update_slice(volume, segmentation, "liver", None, None, roi, device=args.device)
            (first if repeat == 0 else cached).append(time.perf_counter() - started)
            scene.RemoveNode(roi)
    print(f"device {args.device}: first click on a slice (embedding + decode + preview): "
          f"median {statistics.median(first):.2f} s, max {max(first):.2f} s (n={len(first)})")
    print(f"device {args.device}: next clicks on that slice (cached embedding): "
          f"median {statistics.median(cached):.3f} s, max {max(cached):.3f} s (n={len(cached)})")


if __name__ == "__main__":
    main()
