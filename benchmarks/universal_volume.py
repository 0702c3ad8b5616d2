"""Universal model with the volume backbone (issue 16; a script, not a test; needs ../shared/data): one
prior-conditioned 3D network trained end to end on the images, for the tasks and splits of
``universal_model.py``, against one model per task at equal compute, the ablations and a model without CT.

Splits as in ``universal_model.py`` except for the one-subject datasets (CT abdomen, MR abdomen, LUNG1): a 3D
patch would reach across alternating slice blocks, so the first half of the slices (array axis 0) trains and the
second half is segmented (a task absent from either half is left out there). Hippocampus: the first 8 subjects
train, the next 6 are segmented prompt-free; BraTS: pat0005 (and BraTS 2021 for edema) train, pat0006 is
segmented. Prediction is ``medadapt predict``'s: patches slid over the working grid, threshold 0.5, the most
probable task wins an overlap, the largest piece for one-piece tasks; the seconds of each test volume are
recorded.

    python benchmarks/universal_volume.py --steps 2400 --variants universal per-task \\
        --out benchmarks/results/universal_volume.jsonl
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fewshot import DATA  # noqa: E402
from universal_model import append_row, dataset_weights, run_variants, VARIANTS, volumes  # noqa: E402


def read_pair(volume: dict, part: str):
    """The volume's image and label map (label values as integers): whole (``part`` "all"), or the first or
    second half of its slices along array axis 0 ("first" / "second"), geometry kept."""
    import SimpleITK as sitk

    from medadapt.io.volume import Volume
    pair = []
    for key in ("image", "labels"):
        image = sitk.ReadImage(str(DATA / volume[key]))
        depth = image.GetSize()[2]
        if part != "all":
            image = image[:, :, :depth // 2] if part == "first" else image[:, :, depth // 2:]
        pair.append(Volume.from_sitk(image, volume[key]))
    image, labels = pair
    return image, labels.with_array(np.rint(labels.array).astype(np.int16))


def main() -> None:
    """Prepare every volume once, train each variant, segment the test volumes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2400, help="steps of the full universal model")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/universal_volume.jsonl"))
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"development data not found at {DATA} (set MEDADAPT_DATA)")
    import torch

    from medadapt.evaluation.metrics import mask_dice
    from medadapt.universal.folder import TaskRecord, UniversalModel, build_network, new_record
    from medadapt.universal.predict import predict_tasks
    from medadapt.universal.priors import shape_for
    from medadapt.universal.train import TrainSettings, train_network
    from medadapt.universal.volumes import prepare_volume
    args.out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    table = volumes()
    weights = dataset_weights(table)
    train, test = [], []  # (volume, PatchVolume) / (volume, image, labels, tasks)
    for volume in table:
        weight = weights.get(volume["dataset"], 1.0)
        if volume["role"] in ("split", "train"):
            image, labels = read_pair(volume, "first" if volume["role"] == "split" else "all")
            present = {t: v for t, v in volume["tasks"].items() if np.any(labels.array == v)}
            train.append((volume, prepare_volume(image, labels, present, volume["modality"], weight)))
        if volume["role"] in ("split", "test"):
            image, labels = read_pair(volume, "second" if volume["role"] == "split" else "all")
            present = {t: v for t, v in volume["tasks"].items() if np.any(labels.array == v)}
            test.append((volume, image, labels, present))
    print(f"prepared {len(table)} volumes in {time.monotonic() - started:.0f} s", file=sys.stderr)
    def run(name: str, parts: dict, chosen: list, steps: int, tasks: list[str] | None = None) -> None:
        torch.manual_seed(0)
        items = []
        for _, item in chosen:
            masks = {t: m for t, m in item.masks.items() if tasks is None or t in tasks}
            if masks:
                items.append(type(item)(item.image, masks, item.modality, item.weight, item.one_piece))
        task_list = list(dict.fromkeys(t for i in items for t in i.masks))
        modalities = list(dict.fromkeys(i.modality for i in items))
        shape = shape_for("volume", **parts)
        records = [TaskRecord(name=t, value=n, modalities=[i.modality for i in items if t in i.masks],
                              one_piece=all(i.one_piece[t] for i in items if t in i.masks), stage=1,
                              volumes=sum(t in i.masks for i in items)) for n, t in enumerate(task_list, start=1)]
        record = new_record("none", "", shape, records, modalities, {})
        model = UniversalModel(record, build_network(record))
        clock = time.monotonic()
        train_network(model.network, items, TrainSettings(iterations=max(1, steps), batch_size=args.batch_size,
                                                          seed=0))
        seconds = time.monotonic() - clock
        for volume, image, labels, present in test:
            wanted = [t for t in present if t in task_list]
            if not wanted or volume["modality"] not in modalities:
                continue
            clock = time.monotonic()
            predicted = predict_tasks(model, None, image, wanted, volume["modality"]).array
            predict_seconds = time.monotonic() - clock
            for task in wanted:
                append_row(args.out, {
                    "variant": name, "task": task, "volume": volume["name"], "modality": volume["modality"],
                    "dice": round(mask_dice(predicted == model.task(task).value, labels.array == present[task]), 4),
                    "steps": steps, "train_seconds": round(seconds, 1), "predict_seconds": round(predict_seconds, 1),
                    "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)})

    run_variants(args.variants, run, train, args.steps)

if __name__ == "__main__":
    main()
