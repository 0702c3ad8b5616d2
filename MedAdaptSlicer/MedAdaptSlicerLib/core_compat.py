"""Workaround for a MedAdapt core bug, applied only while the installed core still has it.

``medadapt.slice_frame.SliceFrame.points_to_frame`` returns a reversed (negative-stride) numpy view, which
``torch.as_tensor`` rejects, so every point prompt fails with "At least one stride ... is negative". Until the
core returns ``np.ascontiguousarray(...)`` itself, :func:`ensure_point_prompts_work` wraps the method to do so.
The check runs the original method once and does nothing when the result is already contiguous.
"""

from __future__ import annotations

import numpy as np

from medadapt.slice_frame import SliceFrame


def ensure_point_prompts_work() -> bool:
    """Make ``SliceFrame.points_to_frame`` return a contiguous array; ``True`` when the fix was needed."""
    original = SliceFrame.points_to_frame
    probe = original(SliceFrame((4, 4), (1.0, 1.0), 8), np.zeros((1, 2)))
    if probe.flags.c_contiguous:
        return False

    def points_to_frame(self, points_rc):
        return np.ascontiguousarray(original(self, points_rc))
    points_to_frame.__doc__ = original.__doc__
    SliceFrame.points_to_frame = points_to_frame
    return True
