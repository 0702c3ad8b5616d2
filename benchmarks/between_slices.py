"""What fills the slices between painted ones, measured there alone: Fill between slices against the painted masks
carried by registration (and its variants), on every development case (a script, not a test; needs
../shared/data). No model is adapted, so it runs in seconds per case and covers the large scans too.

Dice is taken on the unpainted slices strictly between the outermost painted ones (what a gap filler decides);
painted slices as in ``inference_variants.py`` (bin centres, or one random slice per bin).

    python benchmarks/between_slices.py --k 3 5 --placement centre random --variants fill warp \\
        --out benchmarks/results/between_slices.jsonl
    python benchmarks/between_slices.py --table benchmarks/results/between_slices.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fewshot import cases  # noqa: E402
from inference_variants import painted_case  # noqa: E402
from rows import emit  # noqa: E402

VARIANTS = {
    "fill": {},
    "warp": {},
    "warp-it100": {"ITERATIONS": 100},
    "warp-s1": {"SMOOTHING_PIXELS": 1.0},
    "warp-s2.5": {"SMOOTHING_PIXELS": 2.5},
}
"""Gap fillers compared: Fill, and registration with its defaults or with changed module constants of
:mod:`medadapt.slices.registration`."""


def filled(variant: str, stack: np.ndarray, exemplars) -> np.ndarray:
    """(slices, rows, cols) foreground probability from ``variant`` in every gap between painted slices."""
    from medadapt.slices import registration
    from medadapt.slices.between import fill_gaps

    class Model:  # what fill_gaps reads of a SliceModel
        cancel = None

    Model.stack = stack
    empty = np.zeros(stack.shape, np.float32)
    if variant == "fill":
        return fill_gaps(empty, Model, exemplars, 1, "fill")
    saved = {name: getattr(registration, name) for name in VARIANTS[variant]}
    try:
        for name, value in VARIANTS[variant].items():
            setattr(registration, name, value)
        return fill_gaps(empty, Model, exemplars, 1, "warp")
    finally:
        for name, value in saved.items():
            setattr(registration, name, value)


def run_case(case: str, k: int, placement: str, variants: list[str]) -> dict:
    """Dice of each variant on the unpainted slices between the outermost painted ones."""
    from medadapt.evaluation.metrics import mask_dice
    from medadapt.io.intensity import intensity_window
    from medadapt.slices.stack import slice_stack

    image, target, slices, exemplars = painted_case(case, k, placement)
    painted = np.zeros(target.shape, bool)
    painted[slices] = target[slices] > 0
    stack = slice_stack(image, 0, intensity_window(image.array, painted))
    between = [s for s in range(slices[0] + 1, slices[-1]) if s not in slices]
    row = {"case": case, "k": k, "placement": placement, "slices": slices, "between": len(between)}
    for variant in variants:
        started = time.monotonic()
        probability = filled(variant, stack, exemplars)
        row[variant] = round(mask_dice(probability[between] > 0.5, target[between] > 0), 4) if between else None
        row[f"{variant}_s"] = round(time.monotonic() - started, 2)
    return row


def table(paths: list[Path]) -> None:
    """Markdown table of the rows in ``paths`` with per-(k, placement) means."""
    rows = [json.loads(line) for path in paths for line in path.read_text().splitlines() if line.strip()]
    variants = [v for v in VARIANTS if any(v in r for r in rows)]
    print("| case | k | placement | " + " | ".join(variants) + " |")
    print("|---|---|---|" + "---|" * len(variants))
    for r in rows:
        print(f"| {r['case']} | {r['k']} | {r['placement']} | "
              + " | ".join("–" if r.get(v) is None else f"{r[v]:.3f}" for v in variants) + " |")
    for key in sorted({(r["k"], r["placement"]) for r in rows}):
        group = [r for r in rows if (r["k"], r["placement"]) == key]
        means, below = [], []
        for v in variants:
            scored = [r for r in group if r.get(v) is not None]
            means.append(f"{np.mean([r[v] for r in scored]):.3f} ({len(scored)})" if scored else "–")
            below.append(str(sum(r[v] < r["fill"] - 0.01 for r in scored if r.get("fill") is not None)))
        print(f"| **mean (cases)** | {key[0]} | {key[1]} | " + " | ".join(means) + " |")
        print(f"| below Fill by > 0.01 | {key[0]} | {key[1]} | " + " | ".join(below) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[3])
    parser.add_argument("--placement", nargs="+", default=["centre"], choices=["centre", "random"])
    parser.add_argument("--variants", nargs="+", default=["fill", "warp"], choices=list(VARIANTS))
    parser.add_argument("--cases", nargs="+", default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--table", type=Path, nargs="+", default=None)
    args = parser.parse_args()
    if args.table:
        table(args.table)
        return
    for k in args.k:
        for placement in args.placement:
            for case in args.cases or list(cases()):
                emit(run_case(case, k, placement, args.variants), args.out)


if __name__ == "__main__":
    main()
