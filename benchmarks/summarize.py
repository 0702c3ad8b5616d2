"""Markdown tables (per case and mean, per k) from the JSON lines written by ``fewshot.py``.

    python benchmarks/summarize.py benchmarks/results/fewshot.jsonl
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

METHODS = ("lora", "zero-shot", "fill")


def main(path: str) -> None:
    """Print one table per k: Dice of each method, LoRA adapt seconds and peak RAM, then the means."""
    rows = defaultdict(list)
    for line in open(path):
        row = json.loads(line)
        rows[row["k"]].append(row)
    for k, table in sorted(rows.items()):
        print(f"\n### k = {k}\n")
        print("| case | slices | " + " | ".join(f"{m} Dice" for m in METHODS) + " | lora s | peak RAM GB |")
        print("|---|---|" + "---|" * (len(METHODS) + 2))
        for row in table:
            cells = [f"{row[m]['dice']:.3f}" if row.get(m, {}).get("dice") is not None else "–" for m in METHODS]
            print(f"| {row['case']} | {','.join(map(str, row['slices']))} | " + " | ".join(cells)
                  + f" | {row['lora']['seconds']:.0f} | {row['peak_ram_gb']:.2f} |")
        means = []
        for m in METHODS:
            values = [r[m]["dice"] for r in table if r.get(m, {}).get("dice") is not None]
            means.append(f"**{sum(values) / len(values):.3f}**" if values else "–")
        print(f"| **mean of {len(table)}** | | " + " | ".join(means) + " | | |")


if __name__ == "__main__":
    main(sys.argv[1])
