"""The ``grow`` method: Slicer's Grow from seeds (:mod:`medadapt.slices.grow`), no model.

Seeds as a user would give the effect: each painted label its own seed value, and the rest of each painted slice
a background seed. The filter, ``vtkImageGrowCutSegment``, is Slicer's own, from the ``slicer-core`` wheel,
imported only when this method runs: the core does not hard-depend on slicer-core because that wheel is large and
pins its own VTK. Without it the method stops with an :class:`InputError` that says
``pip install slicer-core==5.11.0.6``.
"""

from __future__ import annotations

import time

from medadapt.methods.result import AdaptResult, AdaptRun
from medadapt.slices.grow import grow_from_seeds


def adapt_grow(run: AdaptRun) -> AdaptResult:
    """Grow every painted label, against the background of the painted slices, over the image intensities."""
    labels = grow_from_seeds(run.image.array, run.exemplars)
    return AdaptResult(run.image.with_array(labels), None, run.window, seconds=time.monotonic() - run.started)
