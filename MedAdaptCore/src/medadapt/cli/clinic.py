"""``medadapt clinic``: the clinic model from the command line — add an accepted segmentation, remove one, show
the folder (tasks, subjects, Dice, size), train (the new model replaces the current one only when at least as good
on held-back entries) and segment a new volume prompt-free with it."""

from __future__ import annotations

import argparse
from collections import Counter

from medadapt.errors import InputError


def add_parser(commands) -> None:
    """The ``clinic`` sub-command and its own sub-commands."""
    clinic = commands.add_parser("clinic", help="the clinic model: every accepted segmentation teaches it; the next "
                                 "patient starts from its prompt-free result")
    actions = clinic.add_subparsers(dest="clinic_command", required=True)
    add = actions.add_parser("add", help="add an accepted segmentation (image + its label map) to the clinic")
    add.add_argument("folder", help="clinic folder (made on the first entry)")
    add.add_argument("--image", required=True)
    add.add_argument("--labels", required=True, help="label map on the image grid")
    add.add_argument("--label", type=int, default=None, help="the structure's value in --labels (default: its only "
                     "non-zero value)")
    add.add_argument("--task", required=True, help="task name, e.g. hippocampus (letters, digits, _ or -)")
    add.add_argument("--modality", required=True, help="e.g. CT, MR, FLAIR")
    remove = actions.add_parser("remove", help="remove an entry (its files are deleted; the next training forgets "
                                "it)")
    remove.add_argument("folder")
    remove.add_argument("entry", help="entry name as `clinic show` lists it, e.g. hippocampus_004")
    show = actions.add_parser("show", help="tasks, subjects, last measured Dice, size on disk, entries")
    show.add_argument("folder")
    train = actions.add_parser("train", help="train the clinic model on its entries; it replaces the current "
                               "one only when at least as good on the held-back entries")
    train.add_argument("folder")
    train.add_argument("--iterations", type=int, help="training steps (default 600)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="auto")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    predict = actions.add_parser("predict", help="segment a new volume with the clinic model, no prompt")
    predict.add_argument("folder")
    predict.add_argument("image")
    predict.add_argument("-o", "--output", required=True)
    predict.add_argument("--tasks", help="the tasks to segment (default all)")
    predict.add_argument("--modality", help="the image's modality (default: CT for Hounsfield units, else the "
                         "model's only one)")
    predict.add_argument("--device", default="auto")
    predict.add_argument("--allow-header-files", action="store_true")
    predict.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> None:
    """Run the parsed ``clinic`` sub-command."""
    {"add": _add, "remove": _remove, "show": _show, "train": _train, "predict": _predict}[args.clinic_command](args)


def _add(args: argparse.Namespace) -> None:
    import numpy as np

    from medadapt.clinic.folder import check_clinic_folder, entries_folder
    from medadapt.io.volume import read_volume, require_same_grid
    from medadapt.universal.collection import add_entry
    folder = check_clinic_folder(args.folder)
    image = read_volume(args.image)
    labels = read_volume(args.labels, label=True)
    require_same_grid(image, labels, args.labels)
    values = [int(v) for v in np.unique(labels.array) if v != 0]
    if args.label is None and len(values) != 1:
        raise InputError(f"--labels {args.labels}: holds the values {values}; name the structure's with --label")
    label = values[0] if args.label is None else args.label
    if label not in values:
        raise InputError(f"--label {label}: not in {args.labels} (its values: {values})")
    sidecar = add_entry(entries_folder(folder), image, labels.with_array(labels.array == label), args.task,
                        args.modality)
    print(f"added {sidecar.stem} ({args.task}, {args.modality}) to the clinic {folder}")


def _remove(args: argparse.Namespace) -> None:
    from medadapt.clinic.folder import entries_folder
    from medadapt.universal.collection import remove_entry
    removed = remove_entry(entries_folder(args.folder), args.entry)
    print(f"removed {args.entry} ({', '.join(p.name for p in removed)}); the next training forgets it")


def _show(args: argparse.Namespace) -> None:
    from pathlib import Path

    from medadapt.clinic.folder import clinic_entries, entry_name, folder_bytes, read_clinic
    if not Path(args.folder).is_dir():
        raise InputError(f"{args.folder}: no clinic folder there")
    entries = clinic_entries(args.folder)
    current = read_clinic(args.folder).current()
    subjects = Counter(task for entry in entries for task in entry.tasks)
    size = folder_bytes(args.folder)
    print(f"clinic {args.folder}: {len(entries)} entries, {size / 1e6:.1f} MB on disk (patient images: keep the "
          "folder where your data may be)")
    print("task | subjects | in the model | last measured Dice (held-back entries)")
    for task, count in sorted(subjects.items()):
        taught = sum(task in e.tasks for e in entries if current and entry_name(e) in current.trained_on)
        dice = current.dice_new.get(task) if current else None
        print(f"{task} | {count} | {taught} | {'-' if dice is None else f'{dice:.3f}'}")
    if current:
        print(f"clinic model: {current.backbone} backbone, trained {current.finished} on {len(current.trained_on)} "
              f"entries ({current.seconds:.0f} s)")
    else:
        print("clinic model: none yet (`medadapt clinic train`)")
    for entry in entries:
        print(f"  {entry_name(entry)}: {', '.join(entry.tasks)} ({entry.modality})")


def _train(args: argparse.Namespace) -> None:
    from medadapt.backends.devices import resolve_device
    from medadapt.cli.progress_bar import TqdmProgress
    from medadapt.clinic.train import train_clinic
    progress = TqdmProgress(not args.quiet)
    try:
        result = train_clinic(args.folder, resolve_device(args.device), args.iterations, args.seed, progress)
    finally:
        progress.close()
    checked = ", ".join(f"{task} {dice:.3f} (was {result.dice_old.get(task, 0.0):.3f})"
                        for task, dice in result.dice_new.items()) or "nothing held back yet"
    verdict = "kept as the clinic model" if result.kept else "not kept: the current clinic model did better"
    print(f"trained a {result.backbone} clinic model on {len(result.trained_on)} entries in {result.seconds:.0f} s; "
          f"held-back Dice: {checked}; {verdict}")


def _predict(args: argparse.Namespace) -> None:
    from medadapt.cli.universal import run_predict
    from medadapt.clinic.folder import model_folder
    from medadapt.universal.folder import is_universal
    if not is_universal(model_folder(args.folder)):
        raise InputError(f"{args.folder}: the clinic has no model yet; `medadapt clinic train {args.folder}`")
    run_predict(argparse.Namespace(**{**vars(args), "model": str(model_folder(args.folder)), "exemplars": None,
                                      "points": None, "batch": None}))
