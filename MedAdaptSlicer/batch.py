"""Headless MedAdapt inside Slicer, through the module's library (the same code path as the GUI).

    Slicer --no-main-window --python-script MedAdaptSlicer/batch.py --image ct.nii.gz \\
        --exemplars painted.nii.gz -o segmentation.nii.gz [--method lora|zero-shot|fill] [--device auto|cpu|cuda]
        [--iterations N] [--rank R] [--synthetic K] [--seed S] [--points clicks.json] [--save-model folder
        [--no-atlas]]

Options are those of ``medadapt adapt`` (its parser is reused); each painted label is adapted as its own
segment. Exit codes: 0 ok, 2 bad input, 130 cancelled.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

UNSUPPORTED = ("slices", "axis", "labels", "reference", "pretrained_class")
"""``medadapt adapt`` options the batch script refuses by name instead of ignoring them."""


def parse_arguments(argv: list[str]):
    """``medadapt adapt`` options, with the image given as ``--image`` (Slicer's command line style)."""
    from medadapt.cli.main import build_parser, check_options
    from medadapt.errors import InputError
    argv = list(argv)
    if "--image" not in argv or argv.index("--image") + 1 >= len(argv):
        raise InputError("--image: the image to segment is required")
    at = argv.index("--image")
    image = argv[at + 1]
    del argv[at:at + 2]
    args = build_parser().parse_args(["adapt", image, *argv])
    check_options(args)
    defaults = build_parser().parse_args(["adapt", image, "--exemplars", "-", "-o", "-"])
    given = [name for name in UNSUPPORTED if getattr(args, name) != getattr(defaults, name)]
    if given:
        raise InputError(f"--{given[0].replace('_', '-')}: not supported by the Slicer batch script; "
                         f"crop the exemplar map or use 'medadapt adapt'")
    return args


def point_nodes(scene, path: str, geometry):
    """Positive and negative markups point lists (RAS) from a ``--points`` JSON file."""
    import vtk
    from medadapt.io.points import read_points
    nodes = {True: scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "positive"),
             False: scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "negative")}
    for point in read_points(path, geometry):
        lps = geometry.index_to_world(tuple(reversed(point.index_zyx)))
        nodes[point.positive].AddControlPoint(vtk.vtkVector3d(-lps[0], -lps[1], lps[2]))
    return nodes[True], nodes[False]


def run(args, scene) -> Path:
    """Adapt every painted label of ``args.exemplars`` on ``args.image`` and write the label map."""
    from MedAdaptSlicerLib.conversion import segment_array, update_node_from_volume, write_segment_array
    from MedAdaptSlicerLib.jobs import SynchronousRunner
    from MedAdaptSlicerLib.logic import MedAdaptLogic
    from MedAdaptSlicerLib.parameters import Parameters
    from MedAdaptSlicerLib.results import accept_preview
    from medadapt.errors import CancelledError, InputError
    from medadapt.options import AdaptOptions, build_config
    from medadapt.io.volume import check_writable, read_volume, require_same_grid, write_volume

    options = AdaptOptions.from_args(args)
    build_config(options)  # the command line's checks (--no-atlas without --save-model) before any work
    output = check_writable(args.output)
    image = read_volume(args.image)
    painted = read_volume(args.exemplars, label=True)
    require_same_grid(image, painted, f"--exemplars {args.exemplars}")
    volume_node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", Path(args.image).name)
    update_node_from_volume(volume_node, image)
    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "MedAdapt batch")
    segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    labels = [int(v) for v in np.unique(painted.array) if v != 0]
    if not labels:
        raise InputError(f"--exemplars {args.exemplars}: no annotated slice (the label map is empty)")
    positive, negative = point_nodes(scene, args.points, image.geometry) if args.points else (None, None)
    parameters = Parameters.from_options(options)
    logic = MedAdaptLogic(SynchronousRunner())
    result = np.zeros(painted.array.shape, np.int32)
    for label in labels:
        segment_id = segmentation_node.GetSegmentation().AddEmptySegment(f"label {label}", f"label {label}")
        write_segment_array(segmentation_node, segment_id, volume_node, painted.array == label)
        report = None if args.quiet else (lambda e, l=label: print(f"label {l}: {e.stage} {e.step}/{e.total}"
                                                                   + (f" loss {e.loss:.4f}" if e.loss else "")))
        job = logic.start_adapt(volume_node, segmentation_node, segment_id, parameters, positive, negative,
                                on_progress=report)
        if job.state == "cancelled":
            raise CancelledError("cancelled")
        if job.state == "failed":
            raise job.error
        accept_preview(segmentation_node, segment_id, volume_node)
        result[segment_array(segmentation_node, segment_id, volume_node).astype(bool)] = label
        if args.save_model:
            folder = Path(args.save_model) if len(labels) == 1 else Path(f"{args.save_model}-label{label}")
            logic.save_adapter(folder, keep_atlas=args.atlas)  # a lora model keeps its atlas unless --no-atlas
    return write_volume(image.with_array(result), output)


def main(argv: list[str]) -> int:
    """Run the batch job in the current ``slicer.mrmlScene``; returns the exit code."""
    import slicer
    from medadapt.cli.main import run_with_exit_code

    def job():
        print(f"MedAdapt batch: wrote {run(parse_arguments(argv), slicer.mrmlScene)}")
    return run_with_exit_code("MedAdapt batch", job)


if __name__ == "__main__":
    import slicer
    code = main(sys.argv[1:])
    if hasattr(slicer, "app"):
        slicer.util.exit(code)
    sys.exit(code)
