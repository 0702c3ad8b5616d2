"""Assertions shared by every area folder (numpy and pytest only, so a child process that blocks torch and the core
can import it too)."""

from __future__ import annotations

import numpy as np
import pytest


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two binary arrays."""
    a, b = a.astype(bool), b.astype(bool)
    return 2 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b))


def assert_same_grid(result, source) -> None:
    """``result`` (a SimpleITK image) lies on ``source``'s grid: the same size, direction, spacing and origin."""
    assert result.GetSize() == source.GetSize()
    assert result.GetDirection() == pytest.approx(source.GetDirection())
    assert result.GetSpacing() == pytest.approx(source.GetSpacing())
    assert result.GetOrigin() == pytest.approx(source.GetOrigin())
