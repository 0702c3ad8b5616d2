"""Evaluation: Dice and 95th-percentile Hausdorff distance (mm) with MONAI, on the slices not given."""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance


def mask_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two binary masks of any shape (0 when both are empty), for quick checks on single slices."""
    return 2 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b))


def hidden_slices_only(mask: np.ndarray, axis: int, given: list[int]) -> np.ndarray:
    """Copy of ``mask`` with the given (painted) slices cleared, so a score counts only predicted slices."""
    out = mask.copy()
    index = [slice(None)] * 3
    index[axis] = list(given)
    out[tuple(index)] = 0
    return out


def dice_and_hd95(prediction: np.ndarray, reference: np.ndarray, spacing_zyx: tuple[float, float, float]
                  ) -> tuple[float, float]:
    """Dice and HD95 (mm) of two binary (z, y, x) masks; Dice 1 and HD95 0 when both are empty, HD95
    infinite when exactly one is."""
    pred = torch.as_tensor(prediction.astype(bool))[None, None].float()
    ref = torch.as_tensor(reference.astype(bool))[None, None].float()
    if not ref.any() and not pred.any():
        return 1.0, 0.0
    dice = float(compute_dice(pred, ref, include_background=True, ignore_empty=False)[0, 0])
    if not ref.any() or not pred.any():
        return dice, float("inf")
    hd = float(compute_hausdorff_distance(pred, ref, include_background=True, percentile=95,
                                          spacing=list(spacing_zyx))[0, 0])
    return dice, hd


def evaluate(prediction: np.ndarray, reference: np.ndarray, labels: list[int], axis: int, given: list[int],
             spacing_zyx: tuple[float, float, float]) -> dict[int, dict[str, float]]:
    """Per label: Dice and HD95 on the slices that were not given as exemplars."""
    scores = {}
    for label in labels:
        dice, hd = dice_and_hd95(hidden_slices_only(prediction == label, axis, given),
                                 hidden_slices_only(reference == label, axis, given), spacing_zyx)
        scores[label] = {"dice": dice, "hd95_mm": hd}
    return scores
