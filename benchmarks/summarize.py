"""Markdown tables (per case and mean, per k) from the JSON lines written by ``fewshot.py``.

    python benchmarks/summarize.py benchmarks/results/fewshot.jsonl [MORE.jsonl ...] [--lora-from iou0.7/auto10]

Rows of the same (case, k) from several files are merged (a later file adds the methods an earlier one lacks).

``--lora-from STOP/BETWEEN`` takes the lora column of rows that carry an ``ablation`` from that inference
variant of the same adapted model (what ``medadapt adapt`` gives with that stopping rule and ``--between``):
BETWEEN is ``model``, ``fill``, ``auto`` (leave-one-out choice, every gap) or ``auto10`` (the default: the
leave-one-out choice, Fill only in gaps of at most ``AdaptConfig.fill_max_gap_mm``, derived from the row's
model / fill values and the case's slice spacing). The ablation stored Fill over every gap, so ``auto10`` takes
the Fill value only when *all* the row's gaps are short enough, where the pipeline decides gap by gap
(:func:`medadapt.between.fill_gaps`); with slices at bin centres the gaps of a row differ by at most one slice.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import numpy as np
import SimpleITK as sitk
from fewshot import DATA, cases

from medadapt.config import AdaptConfig

from fewshot import FSEFT_METHODS, METHODS
BETWEEN = ("model", "fill", "auto", "auto10")


def slice_spacing(case: str) -> float:
    """Spacing (mm) along the array's first axis (SimpleITK z) of the case's image."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(DATA / cases()[case][0]))
    reader.ReadImageInformation()
    return reader.GetSpacing()[2]


def between_dice(row: dict, stop: str, between: str) -> float:
    """Dice of one ablation variant; ``auto10`` lets Fill take only gaps of at most ``fill_max_gap_mm``."""
    values = row["ablation"][stop]
    if between != "auto10":
        return values[between]
    gaps = np.diff(row["slices"]) * slice_spacing(row["case"])
    short = len(gaps) > 0 and gaps.max() <= AdaptConfig().fill_max_gap_mm
    return values["fill"] if row["ablation"]["fill_wins"] and short else values["model"]


def lora_dice(row: dict, variant: str | None) -> float:
    """The row's lora Dice, or that of the named ablation variant when the row has one."""
    if variant and "ablation" in row:
        return between_dice(row, *variant.split("/"))
    return row["lora"]["dice"]


def dice_table(table: list[dict], variant: str | None) -> None:
    """Per-case Dice of each method present, lora adapt seconds and peak RAM, then the means."""
    methods = [m for m in METHODS + FSEFT_METHODS if any(m in row for row in table)]
    print("| case | slices | " + " | ".join(f"{m} Dice" for m in methods) + " | lora s | peak RAM GB |")
    print("|---|---|" + "---|" * (len(methods) + 2))
    columns = defaultdict(list)
    for row in sorted(table, key=lambda r: r["case"]):
        cells = []
        for m in methods:
            value = lora_dice(row, variant) if m == "lora" else row.get(m, {}).get("dice")
            if value is not None:
                columns[m].append(value)
            cells.append(f"{value:.3f}" if value is not None else "–")
        seconds = f"{row['lora']['seconds']:.0f}" if "lora" in row else "–"
        print(f"| {row['case']} | {','.join(map(str, row['slices']))} | " + " | ".join(cells)
              + f" | {seconds} | {row['peak_ram_gb']:.2f} |")
    means = [f"**{np.mean(columns[m]):.3f}**" if columns[m] else "–" for m in methods]
    print(f"| **mean of {len(table)}** | | " + " | ".join(means) + " | | |")


def ablation_table(table: list[dict]) -> None:
    """Mean Dice of every inference variant (stopping rule x what fills between painted slices)."""
    rows = [r["ablation"] for r in table if "ablation" in r]
    if not rows:
        return
    stops = [name for name, value in rows[0].items() if isinstance(value, dict) and "model" in value
             and all(name in r for r in rows)]
    print(f"\nInference variants of the same adapted model, mean Dice over {len(rows)} cases "
          f"(Fill chosen by leave-one-out in {sum(r['fill_wins'] for r in rows)}):\n")
    print("| stopping rule | model between | fill between | auto (LOO) | auto, gaps <= "
          f"{AdaptConfig().fill_max_gap_mm:g} mm |")
    print("|---|---|---|---|---|")
    for stop in stops:
        print(f"| {stop} | " + " | ".join(f"{np.mean([between_dice(r, stop, b) for r in table if 'ablation' in r]):.3f}"
                                          for b in BETWEEN) + " |")
    for post in ("largest_component", "fill_holes"):
        print(f"\n{post} (iou0.5, model between): {np.mean([r[post] for r in rows]):.3f}", end="")
    print()


def main() -> None:
    """Print one table per k (and the ablation summary where rows carry one)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--lora-from", help="ablation variant STOP/BETWEEN for the lora column, e.g. iou0.5/auto")
    args = parser.parse_args()
    merged: dict[tuple[int, str], dict] = {}
    for path in args.paths:
        for line in open(path):
            row = json.loads(line)
            target = merged.setdefault((row["k"], row["case"]), {})
            for key, value in row.items():
                target.setdefault(key, value)
    rows = defaultdict(list)
    for (k, _), row in merged.items():
        rows[k].append(row)
    for k, table in sorted(rows.items()):
        print(f"\n### k = {k}\n")
        dice_table(table, args.lora_from)
        ablation_table(table)


if __name__ == "__main__":
    main()
