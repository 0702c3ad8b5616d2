"""Exemplar annotations: which slices a user painted, along which axis, for which labels."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medadapt.errors import InputError
from medadapt.io.volume import Volume, require_same_grid

AXIS_NAMES = {"z": 0, "y": 1, "x": 2}
"""Image index axis name -> axis of the (z, y, x) array."""


@dataclass
class Exemplars:
    """Painted slices of a labelmap along one array axis.

    ``slices`` are the annotated slice indices (any label present; background there is known background);
    ``label_slices[label]`` the annotated slices where that label is present.
    """

    labelmap: Volume
    axis: int
    slices: list[int]
    label_slices: dict[int, list[int]] = field(default_factory=dict)

    @property
    def labels(self) -> list[int]:
        """Label values with at least one painted slice."""
        return sorted(self.label_slices)

    def slice_mask(self, label: int, index: int) -> np.ndarray:
        """Binary 2D mask of ``label`` on annotated slice ``index``."""
        return np.take(self.labelmap.array, index, axis=self.axis) == label

    def negative_slices(self, label: int) -> list[int]:
        """Annotated slices where ``label`` is known to be absent."""
        return [s for s in self.slices if s not in self.label_slices[label]]


def parse_axis(value: str | int | None) -> int | None:
    """``'z'|'y'|'x'`` (image index axes k, j, i) or ``0|1|2`` (array axes) -> array axis."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in AXIS_NAMES:
        return AXIS_NAMES[text]
    if text in ("0", "1", "2"):
        return int(text)
    raise InputError(f"--axis: expected one of x, y, z (or array axis 0, 1, 2), got {value!r}")


def parse_slices(value: str | list[int] | None) -> list[int] | None:
    """``'3,10,17'`` -> ``[3, 10, 17]``."""
    if value is None or isinstance(value, list):
        return value
    try:
        return sorted({int(v) for v in str(value).split(",") if v.strip()})
    except ValueError as exc:
        raise InputError(f"--slices: expected comma-separated slice numbers, got {value!r}") from exc


def keep_slices(labels: np.ndarray, axis: int, slices: list[int]) -> np.ndarray:
    """Copy of ``labels`` with every slice along ``axis`` outside ``slices`` cleared."""
    kept = np.zeros_like(labels)
    index = [slice(None)] * 3
    index[axis] = list(slices)
    kept[tuple(index)] = labels[tuple(index)]
    return kept


def infer_axis(labels: np.ndarray) -> int:
    """The array axis along which labelled voxels occupy the fewest slices (ties: the z axis first)."""
    counts = [int(np.count_nonzero(np.any(labels != 0, axis=tuple(a for a in range(3) if a != ax))))
              for ax in range(3)]
    return int(np.argmin(counts))


def find_exemplars(image: Volume, labelmap: Volume, axis: int | None = None, slices: list[int] | None = None,
                   labels: list[int] | None = None, source: str = "exemplars") -> Exemplars:
    """Exemplars from a labelmap on the image grid; ``slices``/``axis`` restrict or override what was painted."""
    require_same_grid(image, labelmap, source)
    array = labelmap.array
    if labels is not None:
        present = set(np.unique(array).tolist())
        unknown = [lab for lab in labels if lab not in present]
        if unknown:
            raise InputError(f"{source}: label(s) {unknown} not found; labels present: "
                             f"{sorted(present - {0})}")
        array = np.where(np.isin(array, labels), array, 0)
    if not np.any(array):
        raise InputError(f"{source}: no annotated slice (the label map is empty)")
    if axis is None:
        axis = infer_axis(array)
    n_slices = array.shape[axis]
    if slices is not None:
        bad = [s for s in slices if not 0 <= s < n_slices]
        if bad:
            raise InputError(f"--slices: {bad} outside 0..{n_slices - 1} along axis {axis}")
        array = keep_slices(array, axis, slices)
    present = np.any(array != 0, axis=tuple(a for a in range(3) if a != axis))
    annotated = [int(s) for s in np.flatnonzero(present)]
    if not annotated:
        raise InputError(f"{source}: no annotated slice among {slices} along axis {axis}")
    label_slices = {}
    for lab in sorted(int(v) for v in np.unique(array) if v != 0):
        on = np.any(array == lab, axis=tuple(a for a in range(3) if a != axis))
        label_slices[lab] = [int(s) for s in np.flatnonzero(on)]
    return Exemplars(labelmap.with_array(array), axis, annotated, label_slices)
