"""``medadapt lineage create | add | show``: a model that learns task after task (README: Model lineages)."""

from __future__ import annotations

import argparse
from pathlib import Path

from medadapt.errors import InputError


def add_parser(commands) -> None:
    """The ``lineage`` sub-command and its own sub-commands."""
    lineage = commands.add_parser("lineage", help="a model fine-tuned task after task (sequential fine-tuning, "
                                  "MedSeqFT); `adapt --base-model FOLDER` starts from its current model")
    actions = lineage.add_subparsers(dest="lineage_command", required=True)
    create = actions.add_parser("create", help="start a lineage from a base model")
    create.add_argument("folder", help="new folder for the lineage")
    create.add_argument("--base-model", default="litemedsam", help="litemedsam (default), sam_vit_b, sam_vit_l, "
                        "sam_vit_h or medsam")
    create.add_argument("--checkpoint", help="local weights file for --base-model instead of the download")
    create.add_argument("--method", default="medseqft", choices=("medseqft", "naive"),
                        help="medseqft (default: MDS selection and K&G RFT distillation) or naive (each task's "
                        "LoRA merged, nothing distilled)")
    create.add_argument("--no-retention", action="store_true",
                        help="keep no slices of the tasks in the folder (they are patient data); medseqft then "
                        "distils only towards the base model and the history lists only each new task")
    create.add_argument("--iterations", type=int, help="training iterations per task (default 100)")
    create.add_argument("--max-slices", type=int, help="training slices per task at most (default 24)")
    create.add_argument("--retain", type=int, help="slices each task retains, chosen by MDS (default 8)")
    add = actions.add_parser("add", help="teach the lineage a task from images and their label maps")
    add.add_argument("folder", help="lineage folder")
    add.add_argument("--image", action="append", required=True, help="3D image (repeat for several volumes)")
    add.add_argument("--labels", action="append", required=True,
                     help="label map on that image's grid: accepted segmentation or painted slices (repeat, one "
                     "per --image)")
    add.add_argument("--label", type=int, required=True, help="the task's label value in the label maps")
    add.add_argument("--name", required=True, help="task name, e.g. liver")
    add.add_argument("--modality", default="", help="e.g. CT or MR (recorded)")
    add.add_argument("--device", default="auto")
    add.add_argument("--seed", type=int, default=0)
    add.add_argument("--quiet", action="store_true", help="no progress bars")
    show = actions.add_parser("show", help="print the lineage's tasks and per-task Dice after each stage")
    show.add_argument("folder", help="lineage folder")


def run(args: argparse.Namespace) -> None:
    """Run the parsed ``lineage`` sub-command."""
    {"create": _create, "add": _add, "show": _show}[args.lineage_command](args)


def _create(args: argparse.Namespace) -> None:
    from medadapt.backends import load_backend
    from medadapt.io.folders import check_output_folder
    from medadapt.lineage.folder import BaseFacts, StageSettings, new_record, write_lineage
    folder = check_output_folder(args.folder, replaceable=lambda _: False,
                                 refusal="already exists; a new lineage needs a new folder")
    options = {"iterations": "--iterations", "max_slices": "--max-slices", "retain_per_task": "--retain"}
    values = {field: getattr(args, option[2:].replace("-", "_")) for field, option in options.items()}
    try:
        settings = StageSettings(**{field: value for field, value in values.items() if value is not None})
    except ValueError as exc:
        error = exc.errors()[0]
        raise InputError(f"{options[error['loc'][0]]}: {error['msg']}") from exc
    backend = load_backend(args.base_model, "cpu", args.checkpoint)
    checkpoint = str(Path(args.checkpoint).resolve()) if args.checkpoint else None
    record = new_record(BaseFacts(name=args.base_model, checkpoint=checkpoint, sha256=backend.checkpoint_sha256),
                        args.method, not args.no_retention, settings)
    write_lineage(folder, record)
    print(f"created lineage {folder} ({args.method}, base {args.base_model}"
          f"{', retaining no slices' if args.no_retention else ''})")


def _add(args: argparse.Namespace) -> None:
    from medadapt.backends.devices import resolve_device
    from medadapt.backends.distributed import process_group
    from medadapt.cli.progress_bar import TqdmProgress
    from medadapt.io.volume import read_volume
    from medadapt.lineage.folder import read_lineage
    from medadapt.lineage.stage import add_task
    if len(args.image) != len(args.labels):
        raise InputError(f"lineage add: {len(args.image)} --image but {len(args.labels)} --labels; give one label "
                         "map per image")
    read_lineage(args.folder)  # refuse a broken or tampered lineage before reading any volume
    volumes = [(read_volume(image), read_volume(labels, label=True), labels)
               for image, labels in zip(args.image, args.labels)]
    device = resolve_device(args.device)
    with process_group(device) as share:  # under torchrun: every process trains, rank 0 writes and reports
        progress = TqdmProgress(not args.quiet and share.lead)
        try:
            lineage = add_task(args.folder, volumes, args.label, args.name, args.modality, device, args.seed,
                               progress)
        finally:
            progress.close()
    if not share.lead:
        return
    task = lineage.record.tasks[-1]
    print(f"lineage {lineage.path}: stage {task.stage} learned {task.name!r} from {task.slices} slices "
          f"({task.seconds:.0f} s); Dice on retained slices: {lineage.record.history[-1]}")


def _show(args: argparse.Namespace) -> None:
    from medadapt.lineage.folder import read_lineage
    lineage = read_lineage(args.folder)
    record = lineage.record
    print(f"lineage {lineage.path}: {record.method}, base {record.base_model.name} "
          f"({record.base_model.sha256[:12]}...), {lineage.stage} task(s), "
          f"{'retains slices (patient data)' if record.retention else 'retains no slices'}")
    names = [task.name for task in record.tasks]
    if names:
        print("stage | task | modality | label | slices | retained | seconds | " + " | ".join(names))
    for task, dice in zip(record.tasks, record.history):
        scores = " | ".join(f"{dice[name]:.3f}" if name in dice else "-" for name in names)
        print(f"{task.stage} | {task.name} | {task.modality or '-'} | {task.label} | {task.slices} | "
              f"{task.retained} | {task.seconds:.0f} | {scores}")
