"""``medadapt demo``: the main job on the bundled sample CT (TotalSegmentator example, liver).

Three slices of the liver are the "painted" exemplars; LoRA adaptation, the zero-shot model and Fill between
slices each segment the volume; their Dice and HD95 on the other slices are printed, the LoRA result is
written as NIfTI and a PNG overlay.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medadapt.errors import InputError

IMAGE = "ct_abdomen_image.nii.gz"
LABELS = "ct_abdomen_liver_spleen.nii.gz"
LIVER = 5


PACKAGED_SAMPLE = Path(__file__).resolve().parents[1] / "sample"
"""The sample inside the package (a link to the repository's ``Resources/Sample`` in a source checkout, copied
into the wheel by an install)."""


def sample_folder(data: Path | None) -> Path:
    """The folder with the bundled sample: ``data`` or the one installed with the package."""
    candidates = [data] if data else [PACKAGED_SAMPLE]
    for folder in candidates:
        if (folder / IMAGE).is_file() and (folder / LABELS).is_file():
            return folder
    raise InputError(f"--data: the sample ({IMAGE}, {LABELS}) is not in {', '.join(map(str, candidates))}")


def run(out: Path, data: Path | None = None, device: str = "auto", show_progress: bool = True,
        iterations: int | None = None, synthetic: int | None = None) -> dict:
    """Adapt on 3 liver slices of the sample with every method (LoRA with ``iterations`` and ``synthetic``
    pairs per slice, the defaults when ``None``); returns {method: scores}."""
    from medadapt.cli.progress_bar import TqdmProgress
    from medadapt.evaluation.figures import overlay_png
    from medadapt.evaluation.metrics import evaluate
    from medadapt.io.exemplars import find_exemplars
    from medadapt.io.volume import check_writable, read_volume, write_volume
    from medadapt.options import AdaptOptions, build_config
    from medadapt.pipeline import EmbeddingCache, adapt

    folder = sample_folder(data)
    out.mkdir(parents=True, exist_ok=True)
    check_writable(out / "liver_lora.nii.gz")
    image = read_volume(folder / IMAGE)
    reference = read_volume(folder / LABELS, label=True)
    liver = (reference.array == LIVER).astype(np.int16) * LIVER
    extent = np.flatnonzero(liver.any(axis=(1, 2)))
    edges = np.linspace(extent.min(), extent.max() + 1, 4)
    slices = [int((edges[i] + edges[i + 1]) / 2) for i in range(3)]
    exemplars = find_exemplars(image, reference.with_array(liver), axis=0, slices=slices)
    spacing_zyx = tuple(reversed(image.geometry.spacing))
    scores, results = {}, {}
    cache = EmbeddingCache()  # zero-shot reuses the slice embeddings the lora run computed
    for method in ("lora", "zero-shot", "fill"):
        config = build_config(AdaptOptions(method=method, device=device, iterations=iterations, synthetic=synthetic))
        progress = TqdmProgress(show_progress)
        try:
            results[method] = adapt(image, exemplars, config, progress=progress, cache=cache)
        finally:
            progress.close()
        scores[method] = evaluate(results[method].segmentation.array, liver, [LIVER], 0, slices, spacing_zyx)[LIVER]
        scores[method]["seconds"] = results[method].seconds
    write_volume(results["lora"].segmentation, out / "liver_lora.nii.gz")
    hidden = [s for s in np.linspace(extent.min(), extent.max(), 6).astype(int)[1:-1] if s not in slices]
    outlines = {"reference": image.with_array(liver), "lora": results["lora"].segmentation,
                "fill between slices": results["fill"].segmentation}
    figure = overlay_png(out / "liver_overlay.png", image, outlines, sorted(hidden + slices[1:2]),
                         results["lora"].window, given=slices)
    print(f"sample: {folder / IMAGE}; liver painted on slices {slices} (axis z)")
    print(f"{'method':12s} {'Dice':>6s} {'HD95 mm':>8s} {'seconds':>8s}   (on the {len(extent) - 3} other liver slices)")
    for method, score in scores.items():
        print(f"{method:12s} {score['dice']:6.3f} {score['hd95_mm']:8.1f} {score['seconds']:8.1f}")
    print(f"wrote {out / 'liver_lora.nii.gz'} and {figure}")
    return scores
