"""What each ``medadapt`` sub-command does, on parsed arguments."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from medadapt.backends.devices import resolve_device
from medadapt.cli.progress_bar import TqdmProgress
from medadapt.config import AdaptConfig
from medadapt.errors import InputError
from medadapt.io.exemplars import find_exemplars, parse_axis, parse_slices
from medadapt.io.volume import check_writable, read_volume, require_same_grid, write_volume
from medadapt.options import AdaptOptions, build_config


def _int_list(value: str | None, option: str) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError as exc:
        raise InputError(f"{option}: expected comma-separated integers, got {value!r}") from exc


def adapt_config(args: argparse.Namespace) -> AdaptConfig:
    """AdaptConfig from ``adapt`` options (:func:`options.build_config`, shared with the Slicer module)."""
    return build_config(AdaptOptions.from_args(args))


def _read_points(path, geometry):
    from medadapt.io.points import read_points
    return read_points(path, geometry) if path else None


def run_adapt(args: argparse.Namespace) -> None:
    """``medadapt adapt``: exemplars -> adapted model -> segmentation file (+ adapter, + scores)."""
    from medadapt.artifacts import AdaptedModel, check_model_folder, check_savable
    from medadapt.evaluation.metrics import evaluate
    from medadapt.pipeline import adapt
    output = check_writable(args.output, {"IMAGE": args.image, "--exemplars": args.exemplars,
                                           "--reference": args.reference, "--points": args.points})
    config = adapt_config(args)
    if args.save_model:
        check_savable(config.method, "--save-model")
        check_model_folder(args.save_model)
    image = read_volume(args.image, allow_header_files=args.allow_header_files)
    labelmap = read_volume(args.exemplars, label=True, allow_header_files=args.allow_header_files)
    exemplars = find_exemplars(image, labelmap, axis=parse_axis(args.axis), slices=parse_slices(args.slices),
                               labels=_int_list(args.labels, "--labels"), source=args.exemplars)
    reference = (read_volume(args.reference, label=True, allow_header_files=args.allow_header_files)
                 if args.reference else None)
    if reference is not None:
        require_same_grid(image, reference, args.reference)
    points = _read_points(args.points, image.geometry)
    progress = TqdmProgress(not args.quiet)
    try:
        result = adapt(image, exemplars, config, points, progress)
    finally:
        progress.close()
    if args.save_model:  # before the segmentation: a run whose adapter cannot be saved writes nothing
        model = AdaptedModel.from_result(result, config, image, exemplars, keep_atlas=args.atlas)
        print(f"saved adapter to {model.save(args.save_model)}")
    write_volume(result.segmentation, output)
    print(f"wrote {output} ({config.method}; labels {exemplars.labels}; axis {'zyx'[exemplars.axis]}; "
          f"painted slices {exemplars.slices}; {result.seconds:.0f} s)")
    for label, dice in result.validation_dice.items():
        grown = " (Grow from seeds, chosen by the grow referee)" if label in result.grown_labels else ""
        print(f"label {label}: leave-one-exemplar-out Dice {dice:.3f}{grown}")
    for label, size in result.size_priors.items():
        print(f"label {label}: size prior {size:.0f} voxels from the painted slices")
    if reference is not None:
        scores = evaluate(result.segmentation.array, reference.array, exemplars.labels, exemplars.axis,
                          exemplars.slices, tuple(reversed(image.geometry.spacing)))
        print(json.dumps({"scores_on_hidden_slices": scores}))


def run_predict(args: argparse.Namespace) -> None:
    """``medadapt predict``: a saved adapter applied to another volume (or, with ``--batch``, to many) from
    painted slices and/or clicks, or without any prompt for models with heads."""
    from medadapt.artifacts import AdaptedModel, adapter_files, read_manifest
    from medadapt.universal.folder import is_universal
    if is_universal(args.model):
        from medadapt.cli.universal import run_predict as run_universal_predict
        return run_universal_predict(args)
    if args.tasks or args.modality:
        raise InputError("--tasks / --modality: only for a universal model (`medadapt universal train`)")
    if bool(args.batch) == bool(args.image):
        raise InputError("predict: give either one IMAGE or --batch DIR_OR_CSV")
    if args.batch and (args.exemplars or args.points):
        raise InputError("--batch: --exemplars and --points are per image; a batch runs without prompts")
    if args.batch:
        from medadapt.cli.predict_batch import (batch_group, batch_inputs, check_batch_outputs, finish_batch,
                                                run_batch)
        inputs = batch_inputs(args.batch)
        check_batch_outputs(inputs, Path(args.output))
        device = resolve_device(args.device)
        with batch_group(device):  # under torchrun each process segments its share (predict_batch)
            model = AdaptedModel.load(args.model, device)
            rows = run_batch(inputs, Path(args.output), lambda path, output: _predict_one(
                path, output, model, None, None, False, args.allow_header_files), not args.quiet)
            finish_batch(rows, Path(args.output))
        return
    check_writable(args.output, {"IMAGE": args.image, "--exemplars": args.exemplars, "--points": args.points})
    check_writable(args.output, {f"--model {name}": Path(args.model) / name
                                 for name in adapter_files(read_manifest(args.model)[0])})
    device = resolve_device(args.device)
    output = _predict_one(args.image, args.output, AdaptedModel.load(args.model, device), args.exemplars,
                          args.points, not args.quiet, args.allow_header_files)
    print(f"wrote {output}")


def _predict_one(image_path, output, model, exemplars_path, points_path, show_progress: bool,
                 allow_header_files: bool) -> Path:
    """Segment one image with a loaded :class:`AdaptedModel` and write the label map; returns the output path
    (``allow_header_files``: :func:`read_volume`'s)."""
    from medadapt.pipeline import predict, window_for
    output = check_writable(output, {"IMAGE": image_path, "--exemplars": exemplars_path, "--points": points_path})
    image = read_volume(image_path, allow_header_files=allow_header_files)
    exemplars = None
    if exemplars_path:
        exemplars = find_exemplars(image, read_volume(exemplars_path, label=True,
                                                           allow_header_files=allow_header_files),
                                   source=exemplars_path)
    points = _read_points(points_path, image.geometry)
    progress = TqdmProgress(show_progress)
    try:
        segmentation = predict(image, model.backend, model.config, window_for(image, model.window), model.axis,
                               exemplars, points, progress, heads=model.heads, atlas=model.atlas)
    finally:
        progress.close()
    return write_volume(segmentation, output)


def run_demo(args: argparse.Namespace) -> None:
    """``medadapt demo``: see :mod:`medadapt.cli.demo`."""
    from medadapt.cli.demo import run
    run(Path(args.out), Path(args.data) if args.data else None, args.device, not args.quiet, args.iterations,
        args.synthetic)
