"""The FSEFT head methods (``linear-probe``, ``spatial-adapter``, ``spatial-adapter-ti``) on the 2D slice
model of a promptable backend or on a frozen 3D volume model (the backend registry's kind)."""

from __future__ import annotations

from medadapt.backends.registry import VOLUME_MODEL, kind_of
from medadapt.methods.fseft import adapt_heads
from medadapt.methods.fseft3d import adapt_3d
from medadapt.methods.result import AdaptResult, AdaptRun


def adapt_with_heads(run: AdaptRun) -> AdaptResult:
    """Train the method's heads on frozen features of the painted slices; they segment every slice."""
    if kind_of(run.config.backend) == VOLUME_MODEL:
        return adapt_3d(run.image, run.exemplars, run.config, run.progress, run.cancel, run.backend)
    return adapt_heads(run)
