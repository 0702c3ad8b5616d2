"""Point prompts (positive / negative clicks) read from JSON and mapped to voxel indices.

Format::

    {"coordinates": "RAS" | "LPS" | "voxel",
     "points": [{"position": [x, y, z], "positive": true, "label": 1}, ...]}

World positions are in mm; ``voxel`` positions are (i, j, k) indices in the image's x, y, z order.
``label`` (default 1) names the structure a point belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medadapt.errors import InputError
from medadapt.io.folders import read_json
from medadapt.io.volume import Geometry


@dataclass(frozen=True)
class PointPrompt:
    """One click: ``index_zyx`` is the nearest voxel in (z, y, x) array order."""

    index_zyx: tuple[int, int, int]
    positive: bool
    label: int = 1


def points_from_world(positions, positives, labels, geometry: Geometry, system: str,
                      source: str = "points") -> list[PointPrompt]:
    """Point prompts from world positions in ``system`` ('RAS' or 'LPS') or voxel (i, j, k) indices."""
    system = system.upper()
    if system not in ("RAS", "LPS", "VOXEL"):
        raise InputError(f"{source}: 'coordinates' must be RAS, LPS or voxel, got {system!r}")
    prompts = []
    for n, (position, positive, label) in enumerate(zip(positions, positives, labels)):
        try:
            position = np.asarray(position, dtype=float)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{source}: point {n} position must be three finite numbers, got {position!r}") from exc
        if position.shape != (3,) or not np.all(np.isfinite(position)):
            raise InputError(f"{source}: point {n} position must be three finite numbers, got {position.tolist()}")
        if isinstance(label, bool) or not isinstance(label, int) or not 1 <= label <= 65535:
            raise InputError(f"{source}: point {n} 'label' must be a label value 1..65535, got {label!r}")
        if not isinstance(positive, bool):
            raise InputError(f"{source}: point {n} 'positive' must be true or false, got {positive!r}")
        if system == "VOXEL":
            ijk = position
        else:
            lps = position * (np.array([-1.0, -1.0, 1.0]) if system == "RAS" else 1.0)
            ijk = geometry.world_to_index(lps)
        ijk = np.round(ijk).astype(int)
        if np.any(ijk < 0) or np.any(ijk >= np.asarray(geometry.size)):
            raise InputError(f"{source}: point {n} at {position.tolist()} ({system}) lies outside the image "
                             f"(voxel {ijk.tolist()}, size {list(geometry.size)})")
        prompts.append(PointPrompt((int(ijk[2]), int(ijk[1]), int(ijk[0])), positive, label))
    return prompts


def read_points(path: str | Path, geometry: Geometry) -> list[PointPrompt]:
    """Point prompts from a JSON file (see the module docstring for the format)."""
    path = Path(path)
    try:
        data = read_json(path)
    except FileNotFoundError as exc:
        raise InputError(f"{path}: points file not found") from exc
    return points_from_json(data, geometry, str(path))


def points_from_json(data, geometry: Geometry, source: str = "points") -> list[PointPrompt]:
    """Point prompts from the parsed JSON object of the format above; errors name ``source``."""
    if not isinstance(data, dict) or not isinstance(data.get("points"), list):
        raise InputError(f"{source}: expected an object with a 'points' list")
    try:
        entries = data["points"]
        positions = [entry["position"] for entry in entries]
        positives = [entry.get("positive", True) for entry in entries]
        labels = [entry.get("label", 1) for entry in entries]
    except (KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{source}: every point needs a 'position' [x, y, z]") from exc
    return points_from_world(positions, positives, labels, geometry, str(data.get("coordinates", "RAS")),
                             source=source)
