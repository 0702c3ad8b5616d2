"""Few-shot benchmark over the development scans in ../shared/data (a script, not a test).

For each case, k slices of one structure along the array's first axis (SimpleITK z) at the centres of k equal
bins of its extent are the exemplars; every method segments the volume and is scored (Dice, HD95) on the
other slices. Each (case, k) runs in its own process so that its peak RAM is measured alone.

    python benchmarks/fewshot.py --k 1 3 5 --out benchmarks/results/fewshot.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("MEDADAPT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
METHODS = ("lora", "zero-shot", "fill")
FSEFT_METHODS = ("linear-probe", "spatial-adapter", "spatial-adapter-ti")
"""Prompt-free FSEFT heads; not run unless named in ``--methods``."""


def cases() -> dict[str, tuple[str, str, int]]:
    """Case name -> (image, labels, label value), relative to the data folder."""
    table = {f"ct_abdomen_ts/{name}": ("ct_abdomen_ts/image.nii.gz", "ct_abdomen_ts/labels.nii.gz", value)
             for name, value in (("liver", 5), ("spleen", 1), ("kidney_right", 2), ("stomach", 6))}
    table.update({f"ct_lung1/{name}": ("ct_lung1/image.nii.gz", "ct_lung1/labels.nii.gz", value)
                  for name, value in (("tumour", 1), ("cord", 2), ("lung_left", 3))})
    for image in sorted((DATA / "mr_hippocampus" / "images").glob("*.nii.gz"))[:8]:
        table[f"hippocampus/{image.name[:-7]}"] = (f"mr_hippocampus/images/{image.name}",
                                                   f"mr_hippocampus/labels/{image.name}", 1)
    for patient in ("pat0005", "pat0006"):
        table[f"brats/{patient}/edema_flair"] = (f"mr_brats/{patient}/flair.nii.gz",
                                                 f"mr_brats/{patient}/labels.nii.gz", 2)
        table[f"brats/{patient}/enhancing_t1c"] = (f"mr_brats/{patient}/t1c.nii.gz",
                                                   f"mr_brats/{patient}/labels.nii.gz", 4)
    table["brats2021_01646/edema"] = ("mr_brats/brats2021_01646/flair.nii.gz",
                                      "mr_brats/brats2021_01646/labels.nii.gz", 1)
    return table


LESION_CASES = {f"mr_lesions/{name}": (f"mr_lesions/{name}_image.nrrd", f"mr_lesions/{name}_label.nrrd", 1)
                for name in ("brain2", "breast1")}
"""MR lesions on three slices each (pyradiomics test data): only k = 1 leaves a slice to score; outside
:func:`cases` so the recorded 20-case means stay comparable (``grow_fill.py`` and ``--cases`` name them)."""


OTHER_CASES = {"mr_abdomen_ts/kidney_right": ("mr_abdomen_ts/image.nii.gz", "mr_abdomen_ts/labels.nii.gz", 2)}
"""Cases outside the few-shot set (``--all`` and the tables leave them out): the MR abdomen's right kidney, another
subject's (and modality's) kidney for the lineage benchmark's forward transfer."""


def all_cases() -> dict[str, tuple[str, str, int]]:
    """:func:`cases` and :data:`OTHER_CASES`: every case name -> (image, labels, label value)."""
    return {**cases(), **OTHER_CASES, **LESION_CASES}


def bin_centre_slices(mask: np.ndarray, k: int) -> list[int]:
    """k slice indices along axis 0 at the centres of k equal bins of the structure's extent."""
    present = np.flatnonzero(mask.any(axis=(1, 2)))
    edges = np.linspace(present.min(), present.max() + 1, k + 1)
    return sorted({int((edges[i] + edges[i + 1]) / 2) for i in range(k)})


STOP_VARIANTS = {"iou0.5": {"min_iou": 0.5}, "iou0.3": {"min_iou": 0.3}, "iou0.7": {"min_iou": 0.7},
                 "growth1.2": {"min_iou": 0.5, "max_growth": 1.2}}
"""Stopping rules compared by ``--ablation`` (:class:`StopRule` fields that differ from its defaults)."""


def ablation(image, exemplars, target: np.ndarray, slices: list[int], result, cache) -> dict:
    """Dice on hidden slices of the adapted model's inference variants: stopping rule x what fills the slices
    between painted ones (model, Fill, leave-one-out choice), and post-processing; plus the LOO Dice."""
    from dataclasses import replace

    from medadapt.slices.leave_one_out import GAP_FILLERS, leave_one_out
    from medadapt.config import AdaptConfig
    from medadapt.evaluation.metrics import hidden_slices_only, mask_dice
    from medadapt.slices.between import fill_gaps
    from medadapt.slices.labels import assign_labels
    from medadapt.slices.stack import slice_stack
    from medadapt.config import StopRule
    from medadapt.slices.propagation import propagate
    from medadapt.slices.seeds import exemplar_seeds
    from medadapt.slices.frame import in_plane_spacing
    from medadapt.slices.model import SliceModel

    model = SliceModel(result.backend, slice_stack(image, 0, result.window),
                       in_plane_spacing(image.geometry.spacing, 0), embeddings=cache.slices(result.backend, 0,
                                                                                            result.window))
    seeds = exemplar_seeds(exemplars)[1]
    checks = leave_one_out(model, {1: seeds}, StopRule(), {1: GAP_FILLERS})
    best = checks.best_gap_filler(1)
    truth = hidden_slices_only(target > 0, 0, slices)

    def dice(probability, **post) -> float:
        labels = assign_labels({1: probability}, exemplars, replace(AdaptConfig(), **post))
        return round(mask_dice(hidden_slices_only(labels > 0, 0, slices), truth), 4)

    out = {"loo_model": checks.model.get(1), "loo_fill": checks.fill.get(1), "loo_warp": checks.warp.get(1),
           "gap_filler": best}
    for name, change in STOP_VARIANTS.items():
        probability = propagate(model, seeds, StopRule(**change))
        filled = fill_gaps(probability, model, exemplars, 1, "fill") if len(seeds) > 1 else probability
        warped = fill_gaps(probability, model, exemplars, 1, "warp") if len(seeds) > 1 else probability
        out[name] = {"model": dice(probability), "fill": dice(filled), "warp": dice(warped),
                     "auto": dice({"model": probability, "fill": filled, "warp": warped}[best])}
        if name == "iou0.5":
            out["largest_component"] = dice(probability, largest_component=True)
            out["fill_holes"] = dice(probability, fill_holes=True)
    return out


def load_case(case: str, k: int):
    """(image, target mask, painted slices, exemplars) of ``case`` painted on its k bin-centre slices."""
    from medadapt.io.exemplars import find_exemplars
    from medadapt.io.volume import read_volume

    image_path, label_path, label = all_cases()[case]
    image = read_volume(DATA / image_path)
    reference = read_volume(DATA / label_path, label=True)
    target = (reference.array == label).astype(np.int16)
    slices = bin_centre_slices(target, k)
    return image, target, slices, find_exemplars(image, reference.with_array(target), axis=0, slices=slices)


def run_one(case: str, k: int, methods: list[str], with_ablation: bool = False, cache=None) -> dict:
    """Adapt one case with every method; scores on the hidden slices, seconds and this process's peak RAM
    (``cache``: slice embeddings shared with earlier runs on the same image)."""
    from medadapt.options import AdaptOptions, build_config
    from medadapt.evaluation.metrics import evaluate
    from medadapt.pipeline import EmbeddingCache, adapt

    image, target, slices, exemplars = load_case(case, k)
    spacing_zyx = tuple(reversed(image.geometry.spacing))
    row = {"case": case, "k": k, "slices": slices}
    cache = cache if cache is not None else EmbeddingCache()  # zero-shot reuses the lora run's frozen embeddings
    for method in methods:
        if method == "fill" and k < 2:
            row[method] = {"dice": None, "note": "needs two slices"}
            continue
        started = time.monotonic()
        result = adapt(image, exemplars, build_config(AdaptOptions(method=method)), cache=cache)
        score = evaluate(result.segmentation.array, target, [1], 0, slices, spacing_zyx)[1]
        row[method] = {**score, "seconds": round(time.monotonic() - started, 1)}
        if method == "lora" and with_ablation:
            row["ablation"] = ablation(image, exemplars, target, slices, result, cache)
    row["peak_ram_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2)
    return row


def main() -> None:
    """Run every (case, k) in a child process and append one JSON line per result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--cases", nargs="*", help="case names (default: all); see --list")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS + FSEFT_METHODS)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/fewshot.jsonl"))
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--ablation", action="store_true",
                        help="also score inference variants of the adapted lora model (see ablation())")
    parser.add_argument("--one", nargs="+", metavar=("CASE", "K"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"development data not found at {DATA} (set MEDADAPT_DATA)")
    if args.list:
        print("\n".join(cases()))
        return
    if args.one:  # CASE K [K ...]: one line per k; the ks share the case's slice embeddings (and peak RAM)
        from medadapt.pipeline import EmbeddingCache
        cache = EmbeddingCache()
        for k in args.one[1:]:
            print(json.dumps(run_one(args.one[0], int(k), args.methods, args.ablation, cache)), flush=True)
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for k in args.k:
        for case in args.cases or list(cases()):
            child = subprocess.run([sys.executable, __file__, "--one", case, str(k), "--methods", *args.methods]
                                   + ["--ablation"] * args.ablation, capture_output=True, text=True)
            if child.returncode != 0:
                print(f"{case} k={k}: failed\n{child.stderr[-2000:]}", file=sys.stderr)
                continue
            line = child.stdout.strip().splitlines()[-1]
            with args.out.open("a") as handle:
                handle.write(line + "\n")
            row = json.loads(line)
            print(f"{case:40s} k={k} " + " ".join(
                f"{m}={row[m]['dice']:.3f}" for m in args.methods if row[m].get("dice") is not None)
                  + f" lora_s={row.get('lora', {}).get('seconds')} ram={row['peak_ram_gb']}GB", flush=True)


if __name__ == "__main__":
    main()
