"""Results rows (JSON lines) shared by the benchmark scripts: reading them keyed by case, k and placement, and
writing one as it is measured."""

from __future__ import annotations

import json
from pathlib import Path


def read_rows(paths: list[Path]) -> dict[tuple[str, int, str], dict]:
    """Every row of the JSON-lines files ``paths`` by (case, k, placement); a later row replaces an earlier one."""
    rows = {}
    for path in paths:
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows[(row["case"], row["k"], row["placement"])] = row
    return rows


def emit(row: dict, out: Path | None) -> None:
    """Print ``row`` as one JSON line and append it to ``out`` (when given) at once, so a long run keeps what it
    measured."""
    print(json.dumps(row), flush=True)
    if out:
        with out.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
