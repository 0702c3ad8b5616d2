"""Slicer's two model-free tools beside MedAdapt on every development case: "Fill between slices" (ITK
morphological contour interpolation) and "Grow from seeds" (the real ``vtkImageGrowCutSegment`` from slicer-core,
cropped and seeded as the Segment Editor effect does: :mod:`medadapt.slices.grow`). A script, not a test; needs
../shared/data and slicer-core.

Painted slices as in ``inference_variants.py`` (bin centres, or one random slice per bin, seeded per case); Grow's
seeds are the painted structure (label 1) and the rest of each painted slice (background). Dice on every unpainted
slice, as the few-shot benchmark scores MedAdapt. With one painted slice Fill has nothing to interpolate and
adds nothing (Dice 0). At k >= 2 each painted slice is also hidden in turn and predicted from the others by Grow
(and by Fill where it lies between two others): the held-out Dice a leave-one-out rule can choose by (not on
the LUNG1 scan, where one grow takes minutes, and for the whole-volume grow only on scans under 3 M voxels).
LUNG1 has no ``grow_full`` either. ``grow`` crops as the effect does (the seeds' box with a 20 %
margin, at least 3 voxels: with one painted slice only 3 slices either side); ``grow_full`` grows over the whole
volume (what a user gets by widening the effect's ``extentGrowthRatio``, as Slicer's forum advises to reach
further, or by painting background beyond the structure's ends).

    OMP_NUM_THREADS=1 python benchmarks/grow_fill.py --k 1 3 5 --placement centre random \\
        --out benchmarks/results/grow_fill_baselines.jsonl
    python benchmarks/grow_fill.py --table benchmarks/results/grow_fill_baselines.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fewshot import LESION_CASES, cases  # noqa: E402
from inference_variants import painted_case  # noqa: E402
from rows import emit, read_rows  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


WHOLE_VOLUME = None
"""No crop: the whole volume (``grow_full``; the effect's default crop is ``grow``)."""


def grown(image, target: np.ndarray, slices: list[int], ratio: float | None = 0.2) -> np.ndarray:
    """Grow from seeds' mask of the structure painted on ``slices`` (``ratio``: the effect's crop margin,
    ``None`` for the whole volume)."""
    from medadapt.io.exemplars import find_exemplars
    from medadapt.slices.grow import grow_from_seeds

    exemplars = find_exemplars(image, image.with_array(target.astype(np.int16)), axis=0, slices=slices)
    return grow_from_seeds(image.array, exemplars, ratio) == 1


def warp_held(image, target: np.ndarray, slices: list[int]) -> dict[int, float]:
    """Dice of each painted slice between two others predicted by registration (MedAdapt's default between
    painted slices) from its two painted neighbours, on the slice stack the pipeline builds (built once)."""
    from medadapt.evaluation.metrics import mask_dice
    from medadapt.io.intensity import intensity_window
    from medadapt.slices.registration import carry_between
    from medadapt.slices.stack import slice_stack

    painted = np.zeros(target.shape, bool)
    painted[slices] = target[slices] > 0
    stack = slice_stack(image, 0, intensity_window(image.array, painted))
    scores = {}
    for low, held, high in zip(slices, slices[1:], slices[2:]):
        carried = carry_between(stack, low, target[low] > 0, high, target[high] > 0)[held]
        scores[held] = round(mask_dice(carried > 0.5, target[held] > 0), 4)
    return scores


def run_case(case: str, k: int, placement: str, held_out: bool = True, interior_only: bool = False) -> dict:
    """Fill's and Grow's Dice on the unpainted slices of one case, and their held-out Dice per painted slice
    (``interior_only``: no whole-volume grow, and held-out runs only on the painted slices between two others,
    where registration is also scored)."""
    from medadapt.evaluation.metrics import hidden_slices_only, mask_dice
    from medadapt.slices.fill import fill_between_slices
    from medadapt.slices.leave_one_out import fill_held_slice

    image, target, slices, exemplars = painted_case(case, k, placement)
    truth = hidden_slices_only(target > 0, 0, slices)
    row = {"case": case, "k": k, "placement": placement, "slices": slices}
    if not truth.any():
        return {**row, "note": "every slice of the structure is painted"}
    started = time.monotonic()
    if len(slices) > 1:
        fill = fill_between_slices(exemplars) > 0
        row["fill"] = round(mask_dice(hidden_slices_only(fill, 0, slices), truth), 4)
    else:
        row["fill"] = 0.0  # one painted slice: nothing between slices to fill
    row["fill_s"] = round(time.monotonic() - started, 2)
    started = time.monotonic()
    grow = grown(image, target, slices)
    row["grow"] = round(mask_dice(hidden_slices_only(grow, 0, slices), truth), 4)
    row["grow_s"] = round(time.monotonic() - started, 2)
    if interior_only:
        inner = slices[1:-1]
        row["loo_grow"] = {held: round(mask_dice(grown(image, target, [s for s in slices if s != held])[held],
                                                 target[held] > 0), 4) for held in inner}
        row["loo_fill"] = {held: round(mask_dice(fill_held_slice({s: target[s] > 0 for s in slices if s != held},
                                                                 held), target[held] > 0), 4) for held in inner}
        row["loo_warp"] = warp_held(image, target, slices)
        return row
    started = time.monotonic()
    if image.array.size > 2e7:  # LUNG1 (35 M voxels): minutes per whole-volume grow on the loaded machine
        return row
    row["grow_full"] = round(mask_dice(hidden_slices_only(grown(image, target, slices, WHOLE_VOLUME), 0, slices),
                                       truth), 4)
    row["grow_full_s"] = round(time.monotonic() - started, 2)
    if held_out and len(slices) > 1:
        seeds = {s: target[s] > 0 for s in slices}
        loo_grow, loo_full, loo_fill = {}, {}, {}
        for held in slices:
            others = [s for s in slices if s != held]
            loo_grow[held] = round(mask_dice(grown(image, target, others)[held], seeds[held]), 4)
            if image.array.size < 3e6:  # BraTS 2013 (9 M voxels): 20 s per whole-volume grow
                loo_full[held] = round(mask_dice(grown(image, target, others, WHOLE_VOLUME)[held], seeds[held]), 4)
            if min(others) < held < max(others):
                loo_fill[held] = round(mask_dice(fill_held_slice({s: seeds[s] for s in others}, held), seeds[held]),
                                       4)
        row["loo_grow"], row["loo_grow_full"], row["loo_fill"] = loo_grow, loo_full, loo_fill
    return row


def medadapt_figures() -> dict[tuple[str, int, str], float]:
    """The recorded Dice of MedAdapt's default per (case, k, placement): bin centres from the default re-runs
    (``default_k*.jsonl``; k = 3 otherwise ``training_budget_warp.jsonl`` at 25 iterations, k = 1 otherwise
    ``fewshot_k1.jsonl``), random places from ``inference_variants_taper.jsonl`` (k = 3, ``grow1.1`` with
    registration between: today's default) and ``inference_variants_k1.jsonl`` / ``_contain_k1`` (k = 1), whose
    models were adapted on the 3 bin-centre slices (a slightly optimistic stand-in)."""
    def rows(name):
        path = RESULTS / name
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []

    figures = {}
    for row in rows("fewshot_k1.jsonl"):
        figures[(row["case"], 1, "centre")] = row["lora"]["dice"]
    for row in rows("training_budget_warp.jsonl"):
        if row["iterations"] == 25:
            figures[(row["case"], 3, "centre")] = row["dice"]
    for k in (1, 3, 5):
        for row in rows(f"default_k{k}.jsonl"):
            figures[(row["case"], k, "centre")] = row["dice"]
    for row in rows("inference_variants_taper.jsonl"):
        if row["placement"] == "random" and "grow1.1" in row:
            figures[(row["case"], 3, "random")] = row["grow1.1"]["warp"]
    for row in rows("inference_variants_contain_k1.jsonl"):
        if row["placement"] == "random":
            figures[(row["case"], 1, "random")] = row["reach0.5"]["model"]
    for row in rows("inference_variants_k1.jsonl"):
        if row["placement"] == "random" and "baseline" in row:
            figures[(row["case"], 1, "random")] = row["baseline"]["model"]
    return figures


def loo_pick(row: dict) -> str | None:
    """The model-free candidate (``fill``, ``grow``, ``grow_full``) with the best mean held-out Dice over every
    painted slice (Fill 0 on the outer ones, which it cannot predict; the earlier one on a tie); ``None`` without
    held-out runs."""
    if not row.get("loo_grow"):
        return None
    held = list(row["loo_grow"])
    means = {"fill": np.mean([row["loo_fill"].get(s, 0.0) for s in held]),
             "grow": np.mean([row["loo_grow"][s] for s in held])}
    if row.get("loo_grow_full"):
        means["grow_full"] = np.mean([row["loo_grow_full"][s] for s in held])
    order = list(means)
    return max(order, key=lambda name: (means[name], -order.index(name)))


def table(paths: list[Path]) -> None:
    """Markdown table per (k, placement): MedAdapt (where recorded) | Fill | Grow (the effect's crop) | best(Fill,
    Grow) | MedAdapt − best | Grow over the whole volume | the held-out pick among the three, with means."""
    rows = read_rows(paths)
    figures = medadapt_figures()
    fmt = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    mean = lambda values: f"{np.mean(values):.3f}" if values else "–"  # noqa: E731
    for k, placement in sorted({(key[1], key[2]) for key in rows}):
        group = [r for key, r in sorted(rows.items()) if key[1:] == (k, placement) and "grow" in r]
        print(f"\n**k = {k}, {placement}**\n")
        print("| case | MedAdapt | Fill | Grow | best(Fill, Grow) | MedAdapt − best | Grow, whole volume | "
              "held-out pick |")
        print("|---|---|---|---|---|---|---|---|")
        for r in group:
            ours = figures.get((r["case"], k, placement))
            best = max(r["fill"], r["grow"])
            pick = loo_pick(r)
            print(f"| {r['case']} | {fmt(ours)} | {fmt(r['fill'])} | {fmt(r['grow'])} | {fmt(best)} | "
                  + ("–" if ours is None else f"{ours - best:+.3f}") + f" | {fmt(r.get('grow_full'))} | "
                  + ("–" if pick is None else f"{pick} {r[pick]:.3f}") + " |")
        full = [r["grow_full"] for r in group if r.get("grow_full") is not None]
        picks = [r[loo_pick(r)] for r in group if loo_pick(r)]
        print(f"| **mean, all {len(group)}** | – | {mean([r['fill'] for r in group])} | "
              f"{mean([r['grow'] for r in group])} | {mean([max(r['fill'], r['grow']) for r in group])} | | "
              f"{mean(full)} ({len(full)}) | {mean(picks)} ({len(picks)}) |")
        both = [r for r in group if (r["case"], k, placement) in figures]
        if both:
            ours = [figures[(r['case'], k, placement)] for r in both]
            below = sum(o < max(r["fill"], r["grow"]) - 0.01 for o, r in zip(ours, both))
            print(f"| **mean, the {len(both)} with MedAdapt** | {mean(ours)} | {mean([r['fill'] for r in both])} | "
                  f"{mean([r['grow'] for r in both])} | {mean([max(r['fill'], r['grow']) for r in both])} | "
                  f"{below} below best by > 0.01 | | |")


def referee_table(paths: list[Path], margin: float = 0.0) -> None:
    """Markdown table per (k, placement) of the interior referee (rows run with ``--interior-only``): each
    interior painted slice hidden in turn and filled from its two neighbours by registration (MedAdapt's default
    between painted slices) and by Grow from seeds; Grow is picked for the whole output when its held-out Dice
    beats registration's by more than ``margin`` on every such slice (MedAdapt's rule,
    :func:`medadapt.slices.grow_referee.grow_wins`), else MedAdapt's recorded default is kept. Columns "held"
    show the means."""
    rows = read_rows(paths)
    figures = medadapt_figures()
    for k, placement in sorted({(key[1], key[2]) for key in rows}):
        group = [r for key, r in sorted(rows.items()) if key[1:] == (k, placement) and r.get("loo_warp")]
        print(f"\n**k = {k}, {placement}, margin {margin}**\n")
        print("| case | MedAdapt | Fill | Grow | best | held: registration | held: Grow | pick | result | − best | "
              "− MedAdapt |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        results, bests, ours_all, below = [], [], [], 0
        for r in group:
            ours = figures.get((r["case"], k, placement))
            warp, grow = np.mean(list(r["loo_warp"].values())), np.mean(list(r["loo_grow"].values()))
            pick = "grow" if all(r["loo_grow"][s] > r["loo_warp"][s] + margin for s in r["loo_warp"]) else "medadapt"
            result = r["grow"] if pick == "grow" else ours
            best = max(r["fill"], r["grow"])
            cells = [f"{ours:.3f}" if ours is not None else "–", f"{r['fill']:.3f}", f"{r['grow']:.3f}", f"{best:.3f}",
                     f"{warp:.3f}", f"{grow:.3f}", pick, "–" if result is None else f"{result:.3f}",
                     "–" if result is None else f"{result - best:+.3f}",
                     "–" if result is None or ours is None else f"{result - ours:+.3f}"]
            print(f"| {r['case']} | " + " | ".join(cells) + " |")
            if result is not None and ours is not None:
                results.append(result)
                bests.append(best)
                ours_all.append(ours)
                below += result < best - 0.01
        if results:
            print(f"| **mean, the {len(results)} with MedAdapt** | {np.mean(ours_all):.3f} | | | {np.mean(bests):.3f} | "
                  f"| | | {np.mean(results):.3f} | {below} below best by > 0.01 | {np.mean(results) - np.mean(ours_all):+.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--placement", nargs="+", default=["centre", "random"], choices=["centre", "random"])
    parser.add_argument("--cases", nargs="+", default=None, help="default: the 20 few-shot cases and the MR lesions")
    parser.add_argument("--no-held-out", action="store_true", help="skip the leave-one-painted-slice-out runs")
    parser.add_argument("--interior-only", action="store_true",
                        help="held-out runs (Fill, Grow, registration) on interior painted slices only; no whole-volume grow")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--table", type=Path, nargs="+", default=None)
    parser.add_argument("--referee-table", type=Path, nargs="+", default=None,
                        help="print the interior referee's picks and results for these --interior-only rows and exit")
    parser.add_argument("--margin", type=float, default=0.0, help="--referee-table: Grow must win by more than this")
    args = parser.parse_args()
    if args.referee_table:
        referee_table(args.referee_table, args.margin)
        return
    if args.table:
        table(args.table)
        return
    for k in args.k:
        for placement in args.placement:
            for case in args.cases or [*cases(), *LESION_CASES]:  # (--cases to run LUNG1, the slow one, last)
                emit(run_case(case, k, placement, not args.no_held_out, args.interior_only), args.out)


if __name__ == "__main__":
    main()
