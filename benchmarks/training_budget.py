"""How much LoRA training and synthesis the default needs: Dice on the unpainted slices and seconds per stage
for a grid of (iterations, synthetic pairs per painted slice) (a script, not a test; needs ../shared/data).

Each case's frozen slice embeddings are shared by its runs (the CPU default trains decoder-side LoRA, so they
are the same for every run); seconds are taken per stage from the progress reports, so a run's encode time is
that of its own synthetic pairs and of any slice not yet encoded.

    python benchmarks/training_budget.py --grid 25x2 50x2 50x6 100x6 --out benchmarks/results/training_budget.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fewshot import DATA, load_case  # noqa: E402


class StageClock:
    """Progress callback that adds up wall seconds per stage (time since the previous report)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.last = time.monotonic()

    def __call__(self, event) -> None:
        now = time.monotonic()
        self.seconds[event.stage] = self.seconds.get(event.stage, 0.0) + now - self.last
        self.last = now


def run_case(case: str, k: int, grid: list[tuple[int | None, int]], changes: dict | None = None) -> list[dict]:
    """One row per (iterations, synthetic) for ``case`` painted on k bin-centre slices, with ``changes`` to the
    top-level :class:`AdaptConfig` fields."""
    from dataclasses import replace

    from medadapt.evaluation.metrics import evaluate
    from medadapt.options import AdaptOptions, build_config
    from medadapt.pipeline import EmbeddingCache, adapt

    image, target, slices, exemplars = load_case(case, k)
    cache, rows = EmbeddingCache(), []
    for iterations, synthetic in grid:
        clock = StageClock()
        started = time.monotonic()
        config = replace(build_config(AdaptOptions(device="cpu", iterations=iterations, synthetic=synthetic)),
                         **(changes or {}))
        result = adapt(image, exemplars, config, progress=clock, cache=cache)
        score = evaluate(result.segmentation.array, target, [1], 0, slices,
                         tuple(reversed(image.geometry.spacing)))[1]
        rows.append({"case": case, "k": k, "iterations": iterations, "synthetic": synthetic,
                     **(changes or {}),
                     "dice": round(score["dice"], 4), "grown_labels": result.grown_labels,
                     "seconds": round(time.monotonic() - started, 1),
                     "stage_seconds": {s: round(v, 1) for s, v in clock.seconds.items()},
                     "final_losses": [round(v, 4) for v in result.losses[-5:]]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    """Run the grid on each case and append one JSON line per run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["ct_abdomen_ts/liver", "ct_abdomen_ts/stomach",
                                                       "hippocampus/hippocampus_001", "hippocampus/hippocampus_006",
                                                       "brats/pat0005/edema_flair", "ct_abdomen_ts/kidney_right"])
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--grid", nargs="+", default=["25x2", "50x2", "50x6", "100x6"],
                        help="ITERATIONSxSYNTHETIC pairs; ITERATIONS 'auto' is the default's own choice")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=JSON",
                        help="change top-level AdaptConfig fields, e.g. focus_margin=0.5 shape_prompt=true")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/training_budget.jsonl"))
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"development data not found at {DATA} (set MEDADAPT_DATA)")
    changes = {field: json.loads(value) for field, value in (item.split("=", 1) for item in args.set)}
    grid = [tuple(None if v == "auto" else int(v) for v in cell.split("x")) for cell in args.grid]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for case in args.cases:
        for row in run_case(case, args.k, grid, changes):
            with args.out.open("a") as handle:
                handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
