"""Universal model benchmark (issue 16; a script, not a test; needs ../shared/data): one prior-conditioned model
for eleven tasks of five modalities against one model per task at equal compute, the ablations, and whether CT
helps MR; prompt-free on unseen subjects where a task has several.

Data and splits (every volume's slices along the array's first axis, at most ``--max-slices`` per volume, evenly
spread):
- CT abdomen (liver, spleen, kidney_right, stomach), MR abdomen (the same four), LUNG1 (lung_left, cord,
  tumour): one subject each, so train on alternating blocks of 4 kept slices and score the other blocks.
- Hippocampus (anterior, posterior; T1 MR): train on the first 8 subjects (sorted names), score the next 6.
- BraTS: edema (FLAIR) from pat0005 and BraTS 2021, enhancing tumour (T1c) from pat0005; score pat0006.
Each dataset is drawn equally often (entry weight 1 / its dataset's volumes). Variants train as many steps as
their share of the full model's (slice, task) pairs: ``per-task`` models the pairs that task got in the full
model, ``no-ct`` the non-CT datasets' share.

    python benchmarks/universal_model.py --steps 600 --out benchmarks/results/universal_model.jsonl
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fewshot import DATA  # noqa: E402

BLOCK = 4
TASKS_ABDOMEN = {"liver": 5, "spleen": 1, "kidney_right": 2, "stomach": 6}
VARIANTS = ("universal", "per-task", "no-ct", "no-task-priors", "no-modality-priors", "no-fusion")


def volumes() -> list[dict]:
    """Every volume: name, dataset, image, labels, tasks, modality, role (split / train / test)."""
    found = [dict(name="ct_abdomen", dataset="ct_abdomen", image="ct_abdomen_ts/image.nii.gz",
                  labels="ct_abdomen_ts/labels.nii.gz", tasks=TASKS_ABDOMEN, modality="CT", role="split"),
             dict(name="mr_abdomen", dataset="mr_abdomen", image="mr_abdomen_ts/image.nii.gz",
                  labels="mr_abdomen_ts/labels.nii.gz", tasks=TASKS_ABDOMEN, modality="MR", role="split"),
             dict(name="lung1", dataset="lung1", image="ct_lung1/image.nii.gz", labels="ct_lung1/labels.nii.gz",
                  tasks={"lung_left": 3, "cord": 2, "tumour": 1}, modality="CT", role="split")]
    subjects = sorted(p.name for p in (DATA / "mr_hippocampus" / "images").glob("*.nii.gz"))
    for number, subject in enumerate(subjects[:14]):
        found.append(dict(name=f"hippocampus/{subject[:-7]}", dataset="hippocampus",
                          image=f"mr_hippocampus/images/{subject}", labels=f"mr_hippocampus/labels/{subject}",
                          tasks={"hippocampus_anterior": 1, "hippocampus_posterior": 2}, modality="T1",
                          role="train" if number < 8 else "test"))
    for patient, role in (("pat0005", "train"), ("pat0006", "test")):
        found.append(dict(name=f"brats/{patient}/flair", dataset="brats_flair", image=f"mr_brats/{patient}/flair.nii.gz",
                          labels=f"mr_brats/{patient}/labels.nii.gz", tasks={"edema": 2}, modality="FLAIR", role=role))
        found.append(dict(name=f"brats/{patient}/t1c", dataset="brats_t1c", image=f"mr_brats/{patient}/t1c.nii.gz",
                          labels=f"mr_brats/{patient}/labels.nii.gz", tasks={"enhancing": 4}, modality="T1c",
                          role=role))
    found.append(dict(name="brats2021_01646", dataset="brats_flair", image="mr_brats/brats2021_01646/flair.nii.gz",
                      labels="mr_brats/brats2021_01646/labels.nii.gz", tasks={"edema": 1}, modality="FLAIR",
                      role="train"))
    return found


def dataset_weights(table: list[dict]) -> dict[str, float]:
    """Sampling weight of each dataset's training volumes: 1 / its number of non-test volumes, so every dataset is
    drawn equally often."""
    counts: dict[str, int] = {}
    for volume in table:
        if volume["role"] != "test":
            counts[volume["dataset"]] = counts.get(volume["dataset"], 0) + 1
    return {dataset: 1.0 / count for dataset, count in counts.items()}


def pair_shares(train: list) -> tuple[float, dict[str, float]]:
    """(total sampling weight, each task's share of the drawn (example, task) pairs) of the (volume, item)
    training list."""
    total_weight = sum(item.weight for _, item in train)
    shares: dict[str, float] = {}
    for _, item in train:
        for task in item.masks:
            shares[task] = shares.get(task, 0.0) + item.weight / total_weight / len(item.masks)
    return total_weight, shares


def append_row(out: Path, row: dict) -> None:
    """Print ``row`` as JSON and append it to ``out``."""
    print(json.dumps(row), flush=True)
    with out.open("a") as handle:
        handle.write(json.dumps(row) + "\n")


def run_variants(variants: list[str], run, train: list, steps: int) -> None:
    """Call ``run(name, ablated parts, training list, steps[, tasks])`` for each variant: ``per-task`` once per
    task and ``no-ct`` without the CT datasets, each with steps by its share of the pairs."""
    total_weight, shares = pair_shares(train)
    for variant in variants:
        if variant == "universal":
            run("universal", {}, train, steps)
        elif variant == "per-task":
            for task, share in shares.items():
                run("per-task", {}, train, round(steps * share), [task])
        elif variant == "no-ct":
            kept = [(v, i) for v, i in train if v["modality"] != "CT"]
            run("no-ct", {}, kept, round(steps * sum(i.weight for _, i in kept) / total_weight))
        else:
            run(variant, {variant[3:].replace("-", "_"): False}, train, steps)


def encoded(backend, volume: dict, cache: Path, max_slices: int):
    """The volume's EncodedVolume, slice frame and reference masks of its kept slices (by task); embeddings
    cached on disk."""
    import torch
    from safetensors.torch import load_file, save_file

    from medadapt.io.volume import read_volume
    from medadapt.slices.frame import SliceFrame, in_plane_spacing
    from medadapt.universal.collection import Entry
    from medadapt.universal.slices import EncodedVolume, encode_entry, kept_slices
    entry = Entry(DATA / volume["image"], DATA / volume["labels"], volume["tasks"], volume["modality"], 1.0,
                  volume["name"])
    path = cache / (volume["name"].replace("/", "_") + f"-{max_slices}.safetensors")
    if path.is_file():
        tensors = load_file(str(path))
        item = EncodedVolume(tensors["embeddings"], {t: tensors[f"mask_{t}"].bool() for t in volume["tasks"]},
                             volume["modality"], 1.0, {t: bool(tensors[f"piece_{t}"]) for t in volume["tasks"]})
    else:
        item = encode_entry(backend, entry, max_slices)
        save_file({"embeddings": item.embeddings.contiguous(),
                   **{f"mask_{t}": m.to(torch.uint8).contiguous() for t, m in item.masks.items()},
                   **{f"piece_{t}": torch.tensor(int(p)) for t, p in item.one_piece.items()}}, str(path))
    image, labels = read_volume(DATA / volume["image"]), read_volume(DATA / volume["labels"], label=True)
    frame = SliceFrame(image.array.shape[1:], in_plane_spacing(image.geometry.spacing, 0), backend.image_size)
    kept = kept_slices(image.array.shape[0], max_slices)
    return item, frame, {t: labels.array[kept] == value for t, value in volume["tasks"].items()}


def subset(item, keep: np.ndarray, weight: float):
    """The EncodedVolume's slices at ``keep``, with sampling ``weight``."""
    from medadapt.universal.slices import EncodedVolume
    return EncodedVolume(item.embeddings[keep], {t: m[keep] for t, m in item.masks.items()}, item.modality, weight,
                         item.one_piece)


def split_blocks(count: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) positions: alternating blocks of :data:`BLOCK` slices."""
    block = np.arange(count) // BLOCK
    return np.flatnonzero(block % 2 == 0), np.flatnonzero(block % 2 == 1)


def scores(network, item, frame, references: dict, positions: np.ndarray, tasks: list[str],
           one_piece: dict[str, bool]) -> dict:
    """Dice per task on the slices at ``positions`` (tasks present there): the prediction rule of
    ``medadapt predict``."""
    import torch
    from medadapt.universal.predict import largest_piece
    probabilities = []
    with torch.no_grad():
        for p in positions:
            embedding = item.embeddings[p:p + 1].float().expand(len(tasks), -1, -1, -1)
            logits, _ = network(embedding, tasks, [item.modality] * len(tasks))
            probabilities.append(torch.sigmoid(frame.logits_to_slice(logits)).numpy())
    probabilities = np.stack(probabilities, 1)  # tasks, slices, rows, cols
    winner = probabilities.argmax(0)
    result = {}
    for number, task in enumerate(tasks):
        mask = (probabilities[number] > 0.5) & (winner == number)
        if one_piece[task] and mask.any():
            mask = largest_piece(mask)
        target = references[task][positions]
        if target.any():  # a task absent from every test slice has no Dice to report
            result[task] = round(float(2 * (mask & target).sum() / (mask.sum() + target.sum())), 4)
    return result


def main() -> None:
    """Encode every volume once, train each variant, score it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="steps of the full universal model")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--max-slices", type=int, default=32, help="slices kept per volume, evenly spread")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/medadapt-universal-cache"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/universal_model.jsonl"))
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"development data not found at {DATA} (set MEDADAPT_DATA)")
    import torch

    from medadapt.backends import load_backend
    from medadapt.universal.network import UniversalNetwork
    from medadapt.universal.priors import NetworkShape
    from medadapt.universal.train import TrainSettings, train_network
    args.cache.mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    backend = load_backend("litemedsam", "cpu")
    started = time.monotonic()
    table = volumes()
    loaded = [encoded(backend, volume, args.cache, args.max_slices) for volume in table]
    print(f"encoded {len(table)} volumes in {time.monotonic() - started:.0f} s", file=sys.stderr)
    weights = dataset_weights(table)
    train, test = [], []  # (volume, EncodedVolume[, frame, references, positions])
    for volume, (item, frame, references) in zip(table, loaded):
        weight = weights.get(volume["dataset"], 1.0)
        if volume["role"] == "split":
            fit, held = split_blocks(len(item))
            train.append((volume, subset(item, fit, weight)))
            test.append((volume, item, frame, references, held))
        elif volume["role"] == "train":
            train.append((volume, subset(item, np.arange(len(item)), weight)))
        else:
            test.append((volume, item, frame, references, np.arange(len(item))))
    def run(name: str, parts: dict, chosen: list, steps: int, tasks: list[str] | None = None) -> None:
        torch.manual_seed(0)
        items = [item for _, item in chosen]
        if tasks is not None:
            items = [subset(i, np.arange(len(i)), i.weight) for i in items]
            for i in items:
                i.masks = {t: m for t, m in i.masks.items() if t in tasks}
            items = [i for i in items if i.masks]
        task_list = list(dict.fromkeys(t for i in items for t in i.masks))
        modalities = list(dict.fromkeys(i.modality for i in items))
        network = UniversalNetwork(NetworkShape(**parts), task_list, modalities)
        clock = time.monotonic()
        train_network(network, items, TrainSettings(iterations=max(1, steps), max_slices=args.max_slices, seed=0))
        seconds = time.monotonic() - clock
        one_piece = {t: all(i.one_piece[t] for i in items if t in i.masks) for t in task_list}
        for volume, item, frame, references, positions in test:
            wanted = [t for t in item.masks if t in task_list and item.modality in modalities]
            if not wanted:
                continue
            for task, dice in scores(network, item, frame, references, positions, wanted, one_piece).items():
                append_row(args.out, {
                    "variant": name, "task": task, "volume": volume["name"], "modality": item.modality,
                    "dice": dice, "steps": steps, "train_seconds": round(seconds, 1),
                    "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)})

    run_variants(args.variants, run, train, args.steps)

if __name__ == "__main__":
    main()
