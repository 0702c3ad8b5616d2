"""``medadapt universal train | add | show``: one prior-conditioned model for many tasks (README: Universal model);
``medadapt predict IMAGE --model FOLDER --tasks ...`` segments with it."""

from __future__ import annotations

import argparse
from pathlib import Path

from medadapt.errors import InputError

BACKBONES = ("embeddings", "volume")
"""The universal network's backbones (:data:`medadapt.universal.priors.BACKBONES`, named here without importing
torch)."""

VOLUME_BATCH = 2
"""Default patches per step of the volume backbone (a 48-voxel cube each)."""


def add_parser(commands) -> None:
    """The ``universal`` sub-command and its own sub-commands."""
    universal = commands.add_parser("universal", help="one model for many structures and modalities, trained on "
                                    "accepted segmentations (task and modality priors, after Hermes)")
    actions = universal.add_subparsers(dest="universal_command", required=True)
    train = actions.add_parser("train", help="train a universal model on a collection of labelled volumes")
    train.add_argument("collection", help="CSV file (columns image, labels, tasks, modality[, weight]) or folder "
                       "of JSON entries; tasks as liver=5;spleen=1")
    train.add_argument("-o", "--output", required=True, help="new folder for the model")
    train.add_argument("--backbone", choices=BACKBONES, default="embeddings",
                       help="embeddings (default): a head on the frozen foundation model's slice embeddings; "
                       "volume: a 3D network trained end to end on the images (no foundation model; faster and "
                       "more accurate across subjects when several labelled volumes of a kind exist)")
    train.add_argument("--base-model", help="foundation model whose frozen embeddings the embeddings backbone "
                       "reads: litemedsam (default), sam_vit_b, sam_vit_l, sam_vit_h or medsam")
    for part, what in (("task-priors", "task prior tokens in the fusion"),
                       ("modality-priors", "modality prior tokens"),
                       ("fusion", "prior-feature attention")):
        train.add_argument(f"--no-{part}", action="store_true", help=f"ablation: without {what}")
    _add_training(train)
    add = actions.add_parser("add", help="teach a universal model new tasks (only their priors train, unless "
                             "--train-shared)")
    add.add_argument("collection", help="CSV file or folder of JSON entries labelled for the new tasks")
    add.add_argument("--model", required=True, help="universal model folder")
    add.add_argument("-o", "--output", required=True,
                     help="folder for the grown model (may be --model itself: replaced whole once done)")
    add.add_argument("--train-shared", action="store_true",
                     help="also train the shared weights (earlier tasks may change)")
    add.add_argument("--check", help="CSV file or folder of volumes labelled for earlier tasks: their Dice is "
                     "reported before and after")
    _add_training(add)
    show = actions.add_parser("show", help="print the model's tasks, modalities and history")
    show.add_argument("folder", help="universal model folder")


def _add_training(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--iterations", type=int, help="training steps (default 600)")
    parser.add_argument("--batch-size", type=int, help="(example, task) pairs per step (default 8 slices for the "
                        "embeddings backbone, 2 patches for the volume backbone)")
    parser.add_argument("--max-slices", type=int, help="embeddings backbone: slices kept per volume, evenly spread "
                        "(default 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> None:
    """Run the parsed ``universal`` sub-command."""
    {"train": _train, "add": _add, "show": _show}[args.universal_command](args)


def _settings(args: argparse.Namespace, backbone: str):
    from medadapt.universal.train import TrainSettings
    limits = {"iterations": (1, 100_000), "batch_size": (1, 1024), "max_slices": (1, 10_000)}
    values = {}
    for name, (low, high) in limits.items():
        value = getattr(args, name)
        if value is not None and not low <= value <= high:
            raise InputError(f"--{name.replace('_', '-')}: expected {low}..{high}, got {value}")
        if value is not None:
            values[name] = value
    if backbone == "volume":
        if args.max_slices is not None:
            raise InputError("--max-slices: the volume backbone trains on 3D patches, not slices; leave it out")
        values.setdefault("batch_size", VOLUME_BATCH)
    return TrainSettings(seed=args.seed, **values)


def _grouped_run(args: argparse.Namespace, work):
    """Run ``work(device, progress)`` in a ``torchrun`` group when launched so (rank 0 reports and writes);
    returns (result, whether this process leads)."""
    from medadapt.backends.devices import resolve_device
    from medadapt.backends.distributed import process_group
    from medadapt.cli.progress_bar import TqdmProgress
    device = resolve_device(args.device)
    with process_group(device) as share:
        progress = TqdmProgress(not args.quiet and share.lead)
        try:
            return work(device, progress), share.lead
        finally:
            progress.close()


def _train(args: argparse.Namespace) -> None:
    from medadapt.backends import load_backend
    from medadapt.universal.collection import read_collection
    from medadapt.universal.folder import check_universal_folder, is_universal, write_universal
    from medadapt.universal.learn import train_universal
    from medadapt.universal.priors import shape_for
    output = check_universal_folder(args.output)
    if is_universal(output):
        raise InputError(f"-o: {output} already holds a universal model; grow it with `medadapt universal add` "
                         "or choose a new folder")
    if args.backbone == "volume" and args.base_model:
        raise InputError("--base-model: the volume backbone reads the images themselves, not a foundation model's "
                         "embeddings; leave --base-model out or use --backbone embeddings")
    entries = read_collection(args.collection)
    settings = _settings(args, args.backbone)
    shape = shape_for(args.backbone, task_priors=not args.no_task_priors, modality_priors=not args.no_modality_priors,
                      fusion=not args.no_fusion)
    model, lead = _grouped_run(args, lambda device, progress: train_universal(
        None if args.backbone == "volume" else load_backend(args.base_model or "litemedsam", device), entries, shape,
        settings, device, progress))
    if lead:
        model = write_universal(output, model)
        _print_stage(output, model)


def _add(args: argparse.Namespace) -> None:
    from medadapt.universal.collection import read_collection
    from medadapt.universal.folder import check_universal_folder, read_universal, write_universal
    from medadapt.universal.learn import add_tasks
    from medadapt.universal.predict import base_backend
    output = check_universal_folder(args.output)
    if Path(args.output).resolve() != Path(args.model).resolve() and output.exists():
        raise InputError(f"-o: {output} already holds another universal model; choose a new folder or --model")
    model = read_universal(args.model)
    entries = read_collection(args.collection)
    check = read_collection(args.check) if args.check else None
    settings = _settings(args, model.backbone)
    grown, lead = _grouped_run(args, lambda device, progress: add_tasks(
        model, base_backend(model, device), entries, settings, args.train_shared, check, device, progress))
    if lead:
        grown = write_universal(output, grown)
        _print_stage(output, grown)


def _print_stage(folder: Path, model) -> None:
    stage = model.record.history[-1]
    print(f"universal model {folder}: stage {stage.stage} learned {', '.join(stage.added)} in {stage.seconds:.0f} s "
          f"({stage.iterations} steps); tasks now {', '.join(t.name for t in model.record.tasks)}")
    if stage.dice_before:
        print("earlier tasks' Dice on --check, before -> after: " + ", ".join(
            f"{name} {stage.dice_before[name]:.3f} -> {stage.dice_after.get(name, float('nan')):.3f}"
            for name in stage.dice_before))


def _show(args: argparse.Namespace) -> None:
    from medadapt.universal.folder import read_universal
    record = read_universal(args.folder).record
    shape = record.network
    off = [part for part in ("task_priors", "modality_priors", "fusion") if not getattr(shape, part)]
    base = ("volume backbone (trained on the images)" if shape.backbone == "volume" else
            f"base {record.base_model} ({record.base_sha256[:12]}...)")
    print(f"universal model {args.folder}: {base}, modalities {', '.join(record.modalities)}"
          f"{'; ablated: ' + ', '.join(off) if off else ''}")
    print("task | label value | modalities | one piece | stage | volumes")
    for task in record.tasks:
        print(f"{task.name} | {task.value} | {', '.join(task.modalities)} | {'yes' if task.one_piece else 'no'} | "
              f"{task.stage} | {task.volumes}")
    for stage in record.history:
        print(f"stage {stage.stage}: added {', '.join(stage.added)}; {stage.iterations} steps, {stage.seconds:.0f} s, "
              f"peak {stage.peak_rss_gb:.1f} GB" + (f"; before {stage.dice_before} after {stage.dice_after}"
                                                      if stage.dice_before else ""))


def run_predict(args: argparse.Namespace) -> None:
    """``medadapt predict --model UNIVERSAL_FOLDER``: the chosen tasks, prompt-free, one label map with each
    task's own value (``--batch``: one per image)."""
    from medadapt.backends.devices import resolve_device
    from medadapt.cli.predict_batch import batch_group, batch_inputs, check_batch_outputs, finish_batch, run_batch
    from medadapt.io.volume import check_writable
    from medadapt.universal.folder import read_universal
    from medadapt.universal.predict import base_backend, choose_tasks
    if args.exemplars or args.points:
        raise InputError("predict: a universal model segments without prompts; drop --exemplars / --points")
    if bool(args.batch) == bool(args.image):
        raise InputError("predict: give either one IMAGE or --batch DIR_OR_CSV")
    model = read_universal(args.model)
    tasks = choose_tasks(model, args.tasks)
    if args.batch:
        inputs = batch_inputs(args.batch)
        check_batch_outputs(inputs, Path(args.output))
    else:
        check_writable(args.output, {"IMAGE": args.image})
    device = resolve_device(args.device)
    if args.batch:
        with batch_group(device):  # under torchrun each process segments its share (predict_batch)
            backend = base_backend(model, device)
            model.network.to(device)
            rows = run_batch(inputs, Path(args.output), lambda path, output: _segment(
                model, backend, path, output, tasks, args.modality, False, args.allow_header_files), not args.quiet)
            finish_batch(rows, Path(args.output))
        return
    backend = base_backend(model, device)
    model.network.to(device)
    output = _segment(model, backend, args.image, args.output, tasks, args.modality, not args.quiet,
                      args.allow_header_files)
    values = ", ".join(f"{name}={model.task(name).value}" for name in tasks)
    print(f"wrote {output} ({values})")


def _segment(model, backend, image_path, output, tasks: list[str], modality: str | None, show: bool,
             allow_header_files: bool) -> Path:
    from medadapt.cli.progress_bar import TqdmProgress
    from medadapt.io.volume import check_writable, read_volume, write_volume
    from medadapt.universal.predict import choose_modality, predict_tasks
    output = check_writable(output, {"IMAGE": image_path})
    image = read_volume(image_path, allow_header_files=allow_header_files)
    progress = TqdmProgress(show)
    try:
        labels = predict_tasks(model, backend, image, tasks, choose_modality(model, image, modality), progress)
    finally:
        progress.close()
    return write_volume(labels, output)
