"""What each ``medadapt`` sub-command does, on parsed arguments."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .config import AdaptConfig
from .devices import resolve_device
from .errors import InputError
from .exemplars import find_exemplars, parse_axis, parse_slices
from .options import AdaptOptions, build_config
from .progress import Progress
from .volume import check_writable, read_volume, require_same_grid, write_volume


class TqdmProgress:
    """Progress callback drawing one tqdm bar per stage (training shows loss and ETA)."""

    def __init__(self, enabled: bool = True):
        self.enabled, self.bar, self.stage = enabled, None, None

    def __call__(self, event: Progress) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm
        if event.stage != self.stage:
            self.close()
            self.bar, self.stage = tqdm(total=event.total, desc=event.stage, leave=False), event.stage
        self.bar.n = event.step
        if event.loss is not None:
            self.bar.set_postfix(loss=f"{event.loss:.3f}")
        self.bar.refresh()

    def close(self) -> None:
        """Finish the current bar."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


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
    from .points import read_points
    return read_points(path, geometry) if path else None


def run_adapt(args: argparse.Namespace) -> None:
    """``medadapt adapt``: exemplars -> adapted model -> segmentation file (+ adapter, + scores)."""
    from .artifacts import check_model_folder, save_adapter
    from .atlas import make_atlas
    from .metrics import evaluate
    from .pipeline import adapt
    output = check_writable(args.output, (args.image, args.exemplars, args.reference, args.points))
    config = adapt_config(args)
    if args.save_model:
        if config.method == "fill":
            raise InputError(f"--save-model: method {config.method!r} trains no model to save")
        check_model_folder(args.save_model)
    image = read_volume(args.image)
    labelmap = read_volume(args.exemplars, label=True)
    exemplars = find_exemplars(image, labelmap, axis=parse_axis(args.axis), slices=parse_slices(args.slices),
                               labels=_int_list(args.labels, "--labels"), source=args.exemplars)
    reference = read_volume(args.reference, label=True) if args.reference else None
    if reference is not None:
        require_same_grid(image, reference, args.reference)
    points = _read_points(args.points, image.geometry)
    progress = TqdmProgress(not args.quiet)
    try:
        result = adapt(image, exemplars, config, points, progress)
    finally:
        progress.close()
    if args.save_model:  # before the segmentation: a run whose adapter cannot be saved writes nothing
        facts = {"exemplars": {"axis": exemplars.axis, "slices": exemplars.slices, "labels": exemplars.labels},
                 "window": list(result.window), "validation_dice": result.validation_dice,
                 "final_loss": result.losses[-1] if result.losses else None, "size_priors": result.size_priors}
        atlas = make_atlas(image, exemplars) if args.atlas else None
        print(f"saved adapter to {save_adapter(args.save_model, result.backend, config, facts, result.heads, atlas)}")
    write_volume(result.segmentation, output)
    print(f"wrote {output} ({config.method}; labels {exemplars.labels}; axis {'zyx'[exemplars.axis]}; "
          f"painted slices {exemplars.slices}; {result.seconds:.0f} s)")
    for label, dice in result.validation_dice.items():
        print(f"label {label}: leave-one-exemplar-out Dice {dice:.3f}")
    for label, size in result.size_priors.items():
        print(f"label {label}: size prior {size:.0f} voxels from the painted slices")
    if reference is not None:
        scores = evaluate(result.segmentation.array, reference.array, exemplars.labels, exemplars.axis,
                          exemplars.slices, tuple(reversed(image.geometry.spacing)))
        print(json.dumps({"scores_on_hidden_slices": scores}))


def run_predict(args: argparse.Namespace) -> None:
    """``medadapt predict``: a saved adapter applied to another volume (or, with ``--batch``, to many) from
    painted slices and/or clicks, or without any prompt for models with heads."""
    from .artifacts import load_adapter, load_atlas, load_heads
    if bool(args.batch) == bool(args.image):
        raise InputError("predict: give either one IMAGE or --batch DIR_OR_CSV")
    if args.batch and (args.exemplars or args.points):
        raise InputError("--batch: --exemplars and --points are per image; a batch runs without prompts")
    if args.batch:
        from .batch import batch_inputs, check_batch_outputs, run_batch
        inputs = batch_inputs(args.batch)
        check_batch_outputs(inputs, Path(args.output))
    else:
        check_writable(args.output, (args.image, args.exemplars, args.points))
    device = resolve_device(args.device)
    backend, manifest, config = load_adapter(args.model, device)
    heads = load_heads(args.model, manifest)
    atlas = load_atlas(args.model, manifest)
    if args.batch:
        rows = run_batch(inputs, Path(args.output), lambda path, output: _predict_one(
            path, output, backend, manifest, config, heads, atlas, None, None, False), not args.quiet)
        failed = [row for row in rows if row.status != "ok"]
        print(f"wrote {len(rows) - len(failed)} of {len(rows)} outputs and {Path(args.output) / 'summary.csv'}")
        if failed:
            raise InputError(f"--batch: {len(failed)} of {len(rows)} inputs failed (first: {failed[0].error}); "
                             f"see {Path(args.output) / 'summary.csv'}")
        return
    output = _predict_one(args.image, args.output, backend, manifest, config, heads, atlas, args.exemplars,
                          args.points, not args.quiet)
    print(f"wrote {output}")


def _predict_one(image_path, output, backend, manifest: dict, config: AdaptConfig, heads, atlas, exemplars_path,
                 points_path, show_progress: bool) -> Path:
    """Segment one image with a loaded adapter and write the label map; returns the output path."""
    from .pipeline import predict, window_for
    output = check_writable(output, (image_path, exemplars_path, points_path))
    image = read_volume(image_path)
    exemplars = None
    if exemplars_path:
        exemplars = find_exemplars(image, read_volume(exemplars_path, label=True), source=exemplars_path)
    points = _read_points(points_path, image.geometry)
    axis = manifest.get("exemplars", {}).get("axis", 0)
    progress = TqdmProgress(show_progress)
    try:
        segmentation = predict(image, backend, config, window_for(image, manifest.get("window")), axis,
                               exemplars, points, progress, heads=heads, atlas=atlas)
    finally:
        progress.close()
    return write_volume(segmentation, output)


def run_demo(args: argparse.Namespace) -> None:
    """``medadapt demo``: see :mod:`medadapt.demo`."""
    from .demo import run
    run(Path(args.out), Path(args.data) if args.data else None, args.device, not args.quiet)
