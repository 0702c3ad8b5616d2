"""Cross-subject benchmark (a script, not a test): adapt on k painted slices of one subject, save the adapter,
then segment other subjects' volumes with no prompt at all through the saved files (``medadapt predict``'s
path). Reports Dice per method and target, trainable parameters, adapter size and adapt seconds.

    python benchmarks/cross_subject.py --k 5 --out benchmarks/results/cross_subject.jsonl
    python benchmarks/cross_subject.py --table benchmarks/results/cross_subject.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from fewshot import DATA, bin_centre_slices

METHODS = ("lora", "lora-atlas", "atlas", "linear-probe", "spatial-adapter", "spatial-adapter-ti")
"""``lora-atlas``: the ``lora`` model (adapted once for both) saved with its atlas (``adapt --save-model``'s
default), ``lora`` saved without (``--no-atlas``); ``atlas``: the registered atlas's own labels (the painting
filled between slices, warped; no model)."""


def tasks() -> dict[str, tuple[tuple[str, str], list[tuple[str, str]], int]]:
    """Task name -> ((source image, labels), [(target image, labels)], label value), relative to the data."""
    hippocampus = sorted(p.name for p in (DATA / "mr_hippocampus" / "images").glob("*.nii.gz"))
    pairs = [(f"mr_hippocampus/images/{n}", f"mr_hippocampus/labels/{n}") for n in hippocampus]
    brats = [(f"mr_brats/{p}/flair.nii.gz", f"mr_brats/{p}/labels.nii.gz") for p in ("pat0005", "pat0006")]
    return {"hippocampus": (pairs[0], pairs[1:], 1), "brats_edema": (brats[0], brats[1:], 2)}


def trainable_parameters(method: str, backend, heads) -> int:
    """Parameters the method trained: LoRA and decoder heads (``lora``) plus the FSEFT heads."""
    from medadapt.methods.lora import trainable_count
    adapted = trainable_count(backend) if method == "lora" else 0
    return adapted + (sum(p.numel() for p in heads.parameters()) if heads is not None else 0)


def run_task(name: str, k: int, methods: list[str], limit: int | None = None) -> list[dict]:
    """Adapt on the task's source with each method and score prompt-free predictions on its targets."""
    from medadapt.artifacts import AdaptedModel
    from medadapt.methods.atlas import make_atlas, warp_atlas
    from medadapt.options import AdaptOptions, build_config
    from medadapt.io.exemplars import find_exemplars
    from medadapt.pipeline import EmbeddingCache, adapt, predict, window_for
    from medadapt.io.volume import read_volume

    (source_image, source_labels), targets, label = tasks()[name]
    targets = targets[:limit]
    image = read_volume(DATA / source_image)
    reference = read_volume(DATA / source_labels, label=True)
    painted = np.where(reference.array == label, label, 0).astype(np.int16)
    slices = bin_centre_slices(painted, k)
    exemplars = find_exemplars(image, reference.with_array(painted), axis=0, slices=slices)
    source_cache = EmbeddingCache()
    target_caches = {t: EmbeddingCache() for t, _ in targets}
    rows, adapted = [], {}
    atlas = make_atlas(image, exemplars) if "atlas" in methods else None
    for method in methods:
        row = {"task": name, "method": method, "k": k, "source": source_image, "slices": slices}
        if method == "atlas":
            rows.append(score({**row, "adapt_s": 0.0, "trainable": 0, "adapter_mb": 0.0}, targets, label,
                              lambda volume, _: warp_atlas(atlas, volume)))
            continue
        config = build_config(AdaptOptions(method=method.removesuffix("-atlas"), device="cpu", save_model=True))
        if config.method not in adapted:
            started = time.monotonic()
            adapted[config.method] = adapt(image, exemplars, config, cache=source_cache), time.monotonic() - started
        result, seconds = adapted[config.method]
        with tempfile.TemporaryDirectory() as folder:
            saved = AdaptedModel.from_result(result, config, image, exemplars, keep_atlas=method.endswith("-atlas")
                                             ).save(Path(folder) / "model")
            size_mb = sum(f.stat().st_size for f in saved.iterdir()) / 2 ** 20
            model = AdaptedModel.load(saved)
        row.update(adapt_s=round(seconds, 1), trainable=trainable_parameters(config.method, result.backend,
                                                                            result.heads), adapter_mb=round(size_mb, 2))
        rows.append(score(row, targets, label, lambda volume, path: predict(
            volume, model.backend, model.config, window_for(volume, model.window), 0, heads=model.heads,
            cache=target_caches[path], atlas=model.atlas)))
    return rows


def score(row: dict, targets: list[tuple[str, str]], label: int, segment) -> dict:
    """``row`` with the Dice of ``segment(volume, image path)`` on every target and their mean (printed)."""
    from medadapt.evaluation.metrics import dice_and_hd95
    from medadapt.io.volume import read_volume
    row["dice"] = {}
    for target_image, target_labels in targets:
        volume = read_volume(DATA / target_image)
        truth = read_volume(DATA / target_labels, label=True).array == label
        predicted = segment(volume, target_image)
        dice, _ = dice_and_hd95(predicted.array == label, truth, tuple(reversed(volume.geometry.spacing)))
        row["dice"][target_image] = round(dice, 4)
    row["mean_dice"] = round(float(np.mean(list(row["dice"].values()))), 4)
    print(f"{row['task']:12s} {row['method']:20s} k={row['k']} mean Dice {row['mean_dice']:.3f} over "
          f"{len(targets)} targets; adapt {row['adapt_s']} s; {row['trainable']} trainable; {row['adapter_mb']} MB",
          flush=True)
    return row


def print_table(path: Path) -> None:
    """Markdown table of the rows in ``path``: mean (min-max) Dice over the targets, seconds, size."""
    print("| task | k | method | mean Dice (min–max) over targets | adapt s | trainable | adapter MB |")
    print("|---|---|---|---|---|---|---|")
    for line in open(path):
        row = json.loads(line)
        values = list(row["dice"].values())
        print(f"| {row['task']} ({len(values)} targets) | {row['k']} | {row['method']} | **{row['mean_dice']:.3f}** "
              f"({min(values):.3f}–{max(values):.3f}) | {row['adapt_s']:.0f} | {row['trainable']:,} | "
              f"{row['adapter_mb']:.2f} |")


def main() -> None:
    """Run the cross-subject tasks and append one JSON line per (task, method) (or print a results table)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--tasks", nargs="+", default=list(tasks()))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--targets", type=int, help="only the first this many targets of each task")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cross_subject.jsonl"))
    parser.add_argument("--table", type=Path, help="print the markdown table of a results file and exit")
    args = parser.parse_args()
    if args.table:
        print_table(args.table)
        return
    if not DATA.is_dir():
        sys.exit(f"development data not found at {DATA} (set MEDADAPT_DATA)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.tasks:
        for row in run_task(name, args.k, args.methods, args.targets):
            with args.out.open("a") as handle:
                handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
