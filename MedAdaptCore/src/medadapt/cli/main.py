"""Command line: ``medadapt adapt``, ``medadapt predict``, ``medadapt demo``, ``medadapt lineage``,
``medadapt universal``, ``medadapt serve``, and the sub-commands that installed packages add through the
:data:`COMMANDS_GROUP` entry points (``medadapt web``, from ``MedAdaptWeb/``).

Exit codes: 0 ok, 2 bad input (the message names the file or option and what was wrong), 1 internal error,
130 cancelled.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from importlib.metadata import entry_points
from types import ModuleType
from typing import Callable

from medadapt.cli.clinic import add_parser as add_clinic_parser
from medadapt.cli.lineage import add_parser as add_lineage_parser
from medadapt.cli.serve import add_parser as add_serve_parser
from medadapt.cli.universal import add_parser as add_universal_parser
from medadapt.errors import CancelledError, InputError
from medadapt.methods.registry import method_for
from medadapt.options import OPTION_RANGES, check_option_values

COMMANDS_GROUP = "medadapt.commands"
"""Entry-point group of the sub-commands other packages add: each entry is named after its sub-command and names
a module with ``add_parser(commands)`` and ``run(args)``, like the command modules here."""


def added_commands() -> dict[str, ModuleType]:
    """The modules of the sub-commands installed packages add (:data:`COMMANDS_GROUP`), by name."""
    return {point.name: point.load() for point in entry_points(group=COMMANDS_GROUP)}


def _add_common(parser: argparse.ArgumentParser, batch: bool = False) -> None:
    if batch:
        parser.add_argument("image", nargs="?", help="3D image: NIfTI, NRRD, MHA or a DICOM series folder "
                            "(or --batch)")
        parser.add_argument("-o", "--output", required=True, help="output label map (same grid as the image); "
                            "with --batch the output folder")
    else:
        parser.add_argument("image", help="3D image: NIfTI, NRRD, MHA or a DICOM series folder")
        parser.add_argument("-o", "--output", required=True, help="output label map (same grid as the image)")
    parser.add_argument("--points", help="JSON file of positive/negative point prompts (see README)")
    parser.add_argument("--allow-header-files", action="store_true", help="read image headers that take their "
                        "voxels from other files (.mhd/.nhdr data files, .hdr/.img pairs, other ITK formats); "
                        "by default only self-contained files are read, so a file cannot pull in another")
    parser.add_argument("--device", default="auto", help="auto (default: cuda, else mps, else cpu), cpu, cuda or mps")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    """The ``medadapt`` argument parser (also used by the Slicer module's headless batch script)."""
    parser = argparse.ArgumentParser(prog="medadapt", description="Adapt a medical segmentation foundation "
                                     "model to a few painted slices and segment the whole volume.")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an internal error")
    commands = parser.add_subparsers(dest="command", required=True)
    adapt = commands.add_parser("adapt", help="adapt to painted exemplar slices and segment the volume")
    _add_common(adapt)
    adapt.add_argument("--exemplars", required=True, help="label map on the image grid with a few painted slices")
    adapt.add_argument("--method", default="lora", help="lora (default), zero-shot, fill, grow (Slicer's Grow "
                       "from seeds; needs slicer-core), or the prompt-free FSEFT heads linear-probe, spatial-adapter, "
                       "spatial-adapter-ti (README: Prompt-free FSEFT heads)")
    adapt.add_argument("--slices", help="use only these slices of --exemplars, e.g. 3,10,17")
    adapt.add_argument("--axis", help="slice axis x, y or z (default: the axis the painting lies on)")
    adapt.add_argument("--labels", help="adapt only these label values, e.g. 1,3 (default: all painted)")
    adapt.add_argument("--base-model", default="litemedsam", help="litemedsam (default), sam_vit_b, sam_vit_l, "
                       "sam_vit_h or medsam (downloaded once, checksum-verified; README: Official SAM and MedSAM checkpoints), or the 3D "
                       "swinunetr (FSEFT heads only; needs --checkpoint)")
    adapt.add_argument("--checkpoint", help="local weights file for --base-model instead of the download")
    adapt.add_argument("--input-size", type=int, help="reduced input size for SAM models, e.g. 512 on a CPU; "
                       "for swinunetr the sliding-window patch (default 96)")
    adapt.add_argument("--save-model", help="folder to write the adapter weights and manifest to")
    adapt.add_argument("--no-atlas", dest="atlas", action="store_false",
                       help="with --save-model: leave out the atlas a lora model keeps by default (this image, "
                            "coarsened above 4 M voxels, and its painting filled between slices: patient data), "
                            "which a prompt-free `predict` registers onto each new volume to find the structure")
    adapt.add_argument("--reference", help="reference label map: print Dice and HD95 on the slices not given")
    adapt.add_argument("--seed", type=int, default=0)
    adapt.add_argument("--iterations", type=int,
                       help="training iterations (default: 25 when every structure is painted on 2+ slices and "
                            "registration or Fill takes the gaps, else 100; FSEFT heads 200)")
    adapt.add_argument("--rank", type=int, help="LoRA rank (default 4)")
    adapt.add_argument("--synthetic", type=int, help="synthetic pairs per painted slice (default 6; 2D models only)")
    adapt.add_argument("--between", choices=("warp", "auto", "model", "fill"),
                       help="what segments the slices between painted ones: the painted masks carried by "
                       "registration of the image slices (warp, the default), auto (whichever of the model, Fill "
                       "and warp predicted held-out painted slices best), the model, or Fill between slices")
    adapt.add_argument("--no-grow-referee", dest="grow_referee", action="store_false",
                       help="keep MedAdapt's own result for every structure: by default a structure with three or "
                       "more painted slices goes to Slicer's Grow from seeds when Grow predicts every hidden painted "
                       "slice between two others better than registration does (needs slicer-core)")
    adapt.add_argument("--pretrained-class", type=int, help="swinunetr heads: start the probe from this channel of "
                       "the backbone's pretrained output layer (a structure it was trained on)")
    adapt.add_argument("--lora-parts", help="encoder, decoder or encoder,decoder (default: decoder on CPU, "
                       "encoder,decoder on a GPU)")
    predict = commands.add_parser("predict", help="apply a saved adapter to another volume")
    _add_common(predict, batch=True)
    predict.add_argument("--model", required=True, help="adapter folder written by --save-model, or a universal "
                         "model folder (`medadapt universal train`)")
    predict.add_argument("--batch", help="folder of NIfTI/NRRD/MHA images or CSV file with an 'image' column: "
                         "one output each in the -o folder, plus summary.csv")
    predict.add_argument("--exemplars", help="optional painted slices on this volume to start from")
    predict.add_argument("--tasks", help="universal model: the tasks to segment, e.g. liver,spleen (default all)")
    predict.add_argument("--modality", help="universal model: the image's modality (default: CT for Hounsfield "
                         "units, else the model's only other modality)")
    demo = commands.add_parser("demo", help="run the main job on the bundled sample CT")
    demo.add_argument("--out", default="medadapt-demo", help="output folder (default ./medadapt-demo)")
    demo.add_argument("--data", help="folder holding the sample (default: the one installed with medadapt)")
    demo.add_argument("--iterations", type=int,
                      help="LoRA training iterations (default 25: three painted slices, registration between them)")
    demo.add_argument("--synthetic", type=int, help="synthetic pairs per painted slice (default 6)")
    demo.add_argument("--device", default="auto")
    demo.add_argument("--quiet", action="store_true")
    add_lineage_parser(commands)
    add_universal_parser(commands)
    add_clinic_parser(commands)
    add_serve_parser(commands)
    for module in added_commands().values():
        module.add_parser(commands)
    return parser


def run_with_exit_code(prog: str, job: Callable[[], object], debug: bool = False) -> int:
    """Run ``job`` and map its outcome to an exit code with a one-line message: 2 bad input, 130 cancelled,
    1 out of memory or any other failure (its traceback only with ``debug``)."""
    try:
        job()
    except InputError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except (CancelledError, KeyboardInterrupt):
        print(f"{prog}: cancelled; nothing was written", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every other failure is one line (the traceback with --debug)
        if debug:
            traceback.print_exc()
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
            print(f"{prog}: error: out of memory ({first if str(exc) else 'host RAM'}); try --device cpu, fewer "
                  "--synthetic pairs or a smaller crop", file=sys.stderr)
        else:
            print(f"{prog}: internal error: {type(exc).__name__}: {first} (nothing was written; --debug shows "
                  "the traceback)", file=sys.stderr)
        return 1
    return 0


def check_options(args: argparse.Namespace) -> None:
    """Checks of option syntax and ranges that need no heavy import (so they answer at once); what needs
    the files (grids, labels, checkpoints) is checked by the commands before any work."""
    check_option_values({name: getattr(args, name) for name in ("device", *OPTION_RANGES) if hasattr(args, name)})
    if args.command not in ("lineage", "universal", "clinic") and getattr(args, "method", None) is not None:
        method_for(args.method)


def quiet_third_party_warnings() -> None:
    """Hide deprecation notices of libraries (timm, MONAI) that a command-line user cannot act on."""
    for category in (DeprecationWarning, FutureWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category, module=r"(timm|monai|torch|segment_anything)\b")
    warnings.filterwarnings("ignore", message=r"Importing from timm")
    warnings.filterwarnings("ignore", message=r".*always_return_as_numpy")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``medadapt`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    quiet_third_party_warnings()

    def job():
        check_options(args)
        os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")  # before torch is imported
        from medadapt.cli import commands  # heavy (torch): inside the job, so Ctrl-C here is a clean exit 130
        from medadapt.cli import clinic, lineage, serve, universal
        runs = {"adapt": commands.run_adapt, "predict": commands.run_predict, "demo": commands.run_demo,
                "lineage": lineage.run, "universal": universal.run, "clinic": clinic.run, "serve": serve.run}
        runs.update((name, module.run) for name, module in added_commands().items())
        runs[args.command](args)
    return run_with_exit_code("medadapt", job, args.debug)

