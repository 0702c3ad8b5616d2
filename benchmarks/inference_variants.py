"""Inference variants of one adapted model per case: how outward walks stop and what segments the slices between
painted ones (a script, not a test; needs ../shared/data).

Each (case, k, placement) is adapted once with the default LoRA (seeded) and cached (adapter, intensity window,
frozen slice embeddings, Fill's result) under ``--cache``; every variant then re-segments the volume from the
same model, so variants differ only in inference and cost seconds, not minutes. Placement ``centre`` paints
the centres of k equal bins of the structure's extent (the few-shot benchmark's protocol); ``random`` paints a
random slice inside each bin (seeded per case), as users do.

    OMP_NUM_THREADS=1 python benchmarks/inference_variants.py --k 1 3 5 --placement centre random \\
        --out benchmarks/results/inference_variants.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fewshot import DATA, all_cases, bin_centre_slices, cases  # noqa: E402

VARIANTS = {
    "baseline": {"stop": {"reach": None, "taper_growth": None}},
    "reach0.5": {"stop": {"reach": 0.5, "taper_growth": None}},
    "reach0.75": {"stop": {"reach": 0.75, "taper_growth": None}},
    "reach1": {"stop": {"reach": 1.0, "taper_growth": None}},
    "grow1.1": {"stop": {"reach": 0.5, "taper_growth": 1.1}},
    "grow1.25": {"stop": {"reach": 0.5, "taper_growth": 1.25}},
}
"""Variant name -> changes to the default :class:`AdaptConfig` (``stop``: :class:`StopRule` fields). Also
measured and dropped (BENCHMARKS.md): comparing an outward walk's first step with the model's own mask of the
painted slice (commit e151465's ``StopRule.first_iou_to_model``), and a reach from the cross-section's
equivalent diameter for one painted slice, and the previous slice's probability as a dense mask prompt in every walk
(commit a5e344b's variant ``shape``), and each outward slice's mask kept inside the previous one carried by
registration (commit 690c4e4's variants ``contain0`` / ``contain1``), and, where the painting narrows or the mask shrinks,
containment in place of IoU (commit d100c98's ``taper1.0`` / ``taper1.1`` / ``contain`` / ``shrink``). ``grow1.1``
is the default (``StopRule.taper_growth``)."""

BETWEEN = ("auto", "model", "fill", "envelope", "fuse", "fuse_auto", "warp")
"""What segments the slices between painted ones, scored for every variant."""


def painted_slices(target: np.ndarray, k: int, placement: str, case: str) -> list[int]:
    """k painted slices: bin centres, or one random slice per bin (seeded by case and k)."""
    if placement == "centre":
        return bin_centre_slices(target, k)
    present = np.flatnonzero(target.any(axis=(1, 2)))
    edges = np.linspace(present.min(), present.max() + 1, k + 1)
    rng = np.random.default_rng(zlib.crc32(f"{case}/{k}".encode()))
    return sorted({int(rng.integers(int(np.ceil(edges[i])), max(int(np.ceil(edges[i])) + 1, int(edges[i + 1]))))
                   for i in range(k)})


def painted_case(case: str, k: int, placement: str):
    """(image, target mask, painted slices, exemplars) of ``case`` painted on k slices at ``placement``."""
    from medadapt.io.exemplars import find_exemplars
    from medadapt.io.volume import read_volume

    image_path, label_path, label = all_cases()[case]
    image = read_volume(DATA / image_path)
    reference = read_volume(DATA / label_path, label=True)
    target = (reference.array == label).astype(np.int16)
    slices = painted_slices(target, k, placement, case)
    return image, target, slices, find_exemplars(image, reference.with_array(target), axis=0, slices=slices)


def adapted(case: str, k: int, placement: str, cache_dir: Path):
    """(image, exemplars, target, slices, backend, window, embeddings, Fill's labels, baseline facts, cache
    path) of the model adapted on the k ``placement`` slices, adapting and caching on the first call."""
    import torch

    from medadapt.methods.lora import add_lora
    from medadapt.backends import load_backend
    from medadapt.slices.fill import fill_between_slices
    from medadapt.config import AdaptConfig
    from medadapt.options import AdaptOptions, build_config
    from medadapt.evaluation.metrics import evaluate
    from medadapt.pipeline import EmbeddingCache, adapt

    image, target, slices, exemplars = painted_case(case, k, placement)
    path = cache_dir / f"{case.replace('/', '_')}_k{k}_{placement}.pt"
    if path.exists():
        saved = torch.load(path, weights_only=True)
        backend = load_backend("litemedsam", "cpu")
        add_lora(backend, AdaptConfig().adapter)
        backend.load_state_dict(saved["adapter"], strict=False)
        backend.eval()
        embeddings = {int(i): e.float() for i, e in saved["embeddings"].items()}
        return (image, exemplars, target, slices, backend, tuple(saved["window"].tolist()), embeddings,
                saved["fill"].numpy() if saved["fill"] is not None else None, saved["facts"], path)
    cache = EmbeddingCache()
    started = time.monotonic()
    result = adapt(image, exemplars, build_config(AdaptOptions()), cache=cache)
    seconds = time.monotonic() - started
    score = evaluate(result.segmentation.array, target, [1], 0, slices, tuple(reversed(image.geometry.spacing)))[1]
    embeddings = cache.slices(result.backend, 0, result.window)
    fill = fill_between_slices(exemplars) if len(slices) > 1 else None
    from medadapt.methods.lora import adapter_state
    facts = {"lora_dice": score["dice"], "lora_seconds": round(seconds, 1)}
    save(path, adapter_state(result.backend), result.window, embeddings, fill, facts)
    return image, exemplars, target, slices, result.backend, result.window, embeddings, fill, facts, path


def save(path: Path, adapter, window, embeddings, fill, facts) -> None:
    """Write one case's cache file."""
    import torch
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"adapter": adapter, "window": torch.tensor(window), "facts": facts,
                "embeddings": {str(i): e.half() for i, e in embeddings.items()},
                "fill": None if fill is None else torch.as_tensor(fill)}, path)


def envelope(probability: np.ndarray, filled: np.ndarray, gaps, spacing_rc) -> np.ndarray:
    """Between painted slices: the model decides only in a band around Fill's contour, half the equivalent
    radius of Fill's mask wide on each side (inside it Fill's core stays, outside nothing is added)."""
    from scipy import ndimage
    out = probability.copy()
    for low, high in gaps:
        for s in range(low + 1, high):
            f = filled[s]
            if not f.any():
                continue
            radius_mm = np.sqrt(np.count_nonzero(f) * spacing_rc[0] * spacing_rc[1] / np.pi)
            inside = ndimage.distance_transform_edt(f, sampling=spacing_rc)
            outside = ndimage.distance_transform_edt(~f, sampling=spacing_rc)
            band = 0.5 * radius_mm
            model = probability[s] > 0.5
            out[s] = ((model & (outside <= band)) | (inside > band)).astype(np.float32)
    return out


def signed_distance(mask: np.ndarray, spacing_rc) -> np.ndarray:
    """Signed distance (mm) to the boundary of a 2D mask: negative inside, positive outside."""
    from scipy import ndimage
    if not mask.any():
        return np.full(mask.shape, 1e3, np.float32)
    return (ndimage.distance_transform_edt(~mask, sampling=spacing_rc)
            - ndimage.distance_transform_edt(mask, sampling=spacing_rc)).astype(np.float32)


def fuse(probability: np.ndarray, painted: np.ndarray, gaps, spacing_rc) -> np.ndarray:
    """Between painted slices: the mean of the model's probability and a soft Fill, the signed distances of
    the two neighbouring painted masks interpolated linearly, through a logistic whose width is the
    interpolation's uncertainty (sqrt(t (1 - t)) times how far the two contours differ there, at least a
    pixel)."""
    out = probability.copy()
    pixel = float(min(spacing_rc))
    for low, high in gaps:
        d_low, d_high = signed_distance(painted[low] > 0, spacing_rc), signed_distance(painted[high] > 0, spacing_rc)
        for s in range(low + 1, high):
            t = (s - low) / (high - low)
            d = (1 - t) * d_low + t * d_high
            width = np.maximum(pixel, np.sqrt(t * (1 - t)) * np.abs(d_high - d_low))
            soft = 1 / (1 + np.exp(np.clip(d / width, -50, 50)))
            out[s] = 0.5 * (probability[s] + soft)
    return out


DEFAULT_VARIANT = "grow1.1"
"""The variant that is today's default (with ``warp`` between painted slices)."""


def _slice_seeds(shape: tuple[int, ...], slices: list[int]) -> np.ndarray:
    """Every voxel of the painted slices set: the seeds' extent Grow from seeds crops to (the painted structure and
    the background fill each painted slice)."""
    seeds = np.zeros(shape, np.int8)
    seeds[slices] = 1
    return seeds


def shipped_rules(default: np.ndarray, grow: np.ndarray, slices: list[int], between: bool) -> np.ndarray:
    """``default`` (a binary mask, slice axis first) under the default's own Grow rules
    (:mod:`medadapt.slices.grow_referee`): Grow's mask between the outermost painted slices when ``between`` (the
    referee's pick), then Grow after the walks (beyond them, past the last slice a walk segments)."""
    from medadapt.slices.grow_referee import continue_with_grow, grow_between

    labels, grown = default.astype(np.int16), grow.astype(np.int16)
    if between:
        grow_between(labels, grown, 1, min(slices), max(slices))
    continue_with_grow(labels, grown, 1, min(slices), max(slices))
    return labels > 0


def walk_then_tapering_grow(default: np.ndarray, grow: np.ndarray, slices: list[int], growth: float = 1.1
                            ) -> np.ndarray:
    """Grow after the walks (:func:`shipped_rules`), but Grow's mask continues the structure only slice by slice
    while it overlaps the previous slice's mask and is at most ``growth`` times its area (the outward walks' own
    taper rule; measured and dropped)."""
    out = default.copy()
    for start, step in ((max(slices), +1), (min(slices), -1)):
        s = start + step
        while 0 <= s < len(default) and default[s].any():
            s += step
        previous = out[s - step]
        while 0 <= s < len(default):
            candidate = grow[s]
            area = np.count_nonzero(candidate)
            if not area or not np.any(candidate & previous) or area > growth * np.count_nonzero(previous):
                break
            out[s] = candidate
            previous = candidate
            s += step
    return out


def grow_candidates(image, target: np.ndarray, slices: list[int], model, exemplars, default: np.ndarray,
                    fill: np.ndarray | None, default_labels: np.ndarray | None = None) -> dict:
    """Issue 30's "grow-cut as a candidate": Dice on the hidden slices of the default (``default``: its
    probability, slice axis first), Fill, Grow from seeds (the effect's crop, and the whole volume), and grow-cut
    seeded by the default's confident interior and exterior (:func:`model_seed_labels`), and ``grow_then_model``:
    Grow on the slices its crop reaches, the default beyond (``in_reach``: both scored on those slices alone), and
    ``walk_then_grow`` / ``grow_inside_walk_then_grow`` (:func:`shipped_rules` without / with Grow between); at k >= 2 each painted
    slice is hidden in turn and predicted by each candidate from the others (the default: registration between
    two others, its walk beyond the outer ones; Fill: 0 beyond them), and the candidate with the best mean held-out
    Dice is chosen (the default on a tie). At k = 1 the rule is the seeded grow-cut."""
    from medadapt.config import AdaptConfig
    from medadapt.evaluation.metrics import hidden_slices_only, mask_dice
    from medadapt.io.exemplars import find_exemplars
    from medadapt.slices.grow import grow_cut, grow_from_seeds, model_seed_labels, seed_crop
    from medadapt.slices.leave_one_out import GAP_FILLERS, fill_held_slice, leave_one_out

    truth = hidden_slices_only(target > 0, 0, slices)
    score = lambda mask: round(mask_dice(hidden_slices_only(mask, 0, slices), truth), 4)  # noqa: E731
    painted = np.zeros(target.shape, np.int16)
    painted[slices] = target[slices]

    def grown(others, ratio):
        ex = find_exemplars(image, image.with_array(painted), axis=0, slices=others)
        return grow_from_seeds(image.array, ex, ratio) == 1

    masks = {"medadapt": default > 0.5 if default_labels is None else default_labels > 0, "fill": fill > 0 if fill is not None else painted > 0,
             "grow": grown(slices, 0.2), "grow_full": grown(slices, None)}
    spacing_zyx = tuple(reversed(image.geometry.spacing))
    masks["seeded"] = grow_cut(image.array, model_seed_labels(default, painted, slices), spacing_zyx, ratio=None) == 1
    reach = seed_crop(_slice_seeds(target.shape, slices))[0]  # the slices Slicer's Grow reaches
    masks["grow_then_model"] = masks["medadapt"].copy()
    masks["grow_then_model"][reach] = masks["grow"][reach]
    masks["walk_then_grow"] = shipped_rules(masks["medadapt"], masks["grow"], slices, between=False)
    masks["walk_then_tapering_grow"] = walk_then_tapering_grow(masks["medadapt"], masks["grow"], slices)
    masks["grow_inside"] = masks["medadapt"].copy()  # Grow between the outer painted slices, the default beyond
    masks["grow_inside"][min(slices):max(slices) + 1] = masks["grow"][min(slices):max(slices) + 1]
    masks["grow_inside_walk_then_grow"] = shipped_rules(masks["medadapt"], masks["grow"], slices, between=True)
    masks["grow_inside_tapering"] = walk_then_tapering_grow(masks["grow_inside"], masks["grow"], slices)
    out = {name: score(mask) for name, mask in masks.items()}
    inside = np.zeros(target.shape, bool)
    inside[reach] = True
    out["in_reach"] = {name: round(mask_dice(hidden_slices_only(masks[name] & inside, 0, slices), truth & inside), 4)
                       for name in ("medadapt", "grow")}
    out["reach"] = [reach.start, reach.stop]
    if len(slices) < 2:
        out["chosen"] = "seeded"
        out["chosen_dice"] = out["seeded"]
        return out
    seeds = {s: target[s] > 0 for s in slices}
    checks = leave_one_out(model, {1: seeds}, AdaptConfig().stop, {1: GAP_FILLERS})
    loo = {name: {} for name in ("medadapt", "fill", "grow", "grow_full")}
    for held in slices:
        others = [s for s in slices if s != held]
        inner = min(others) < held < max(others)
        loo["medadapt"][held] = checks.warp[1][held] if inner else checks.model[1][held]
        loo["fill"][held] = mask_dice(fill_held_slice({s: seeds[s] for s in others}, held), seeds[held]) \
            if inner else 0.0
        loo["grow"][held] = mask_dice(grown(others, 0.2)[held], seeds[held])
        loo["grow_full"][held] = mask_dice(grown(others, None)[held], seeds[held])
    means = {name: round(float(np.mean(list(v.values()))), 4) for name, v in loo.items()}
    order = list(means)
    out["loo"] = means
    out["loo_held"] = {name: {str(held): round(float(d), 4) for held, d in v.items()} for name, v in loo.items()}
    out["chosen"] = max(order, key=lambda name: (means[name], -order.index(name)))
    out["chosen_dice"] = out[out["chosen"]]
    return out


def run_case(case: str, k: int, placement: str, cache_dir: Path, variants: list[str], train_k: int,
             betweens: tuple[str, ...] = BETWEEN, candidates: bool = False) -> dict:
    """Dice on the hidden slices of every variant x between-choice for one case painted on k slices at
    ``placement``, segmented by the model adapted on ``train_k`` bin-centre slices (the variants compare
    inference rules; a model adapted on other slices of the same structure is a shared, slightly optimistic
    stand-in)."""
    from medadapt.slices.fill import fill_between_slices
    from medadapt.io.exemplars import find_exemplars
    from medadapt.slices.between import check_exemplars, fill_gaps, fill_max_gap, fillable_gaps
    from medadapt.config import AdaptConfig
    from medadapt.evaluation.metrics import hidden_slices_only, mask_dice
    from medadapt.slices.labels import assign_labels, label_probabilities
    from medadapt.slices.stack import slice_stack
    from medadapt.slices.seeds import exemplar_seeds
    from medadapt.slices.frame import in_plane_spacing
    from medadapt.slices.model import SliceModel

    (image, trained_on, target, _, backend, window, embeddings, _, facts,
     path) = adapted(case, train_k, "centre", cache_dir)
    slices = painted_slices(target, k, placement, case)
    exemplars = find_exemplars(image, trained_on.labelmap.with_array(target), axis=0, slices=slices)
    fill = fill_between_slices(exemplars) if len(slices) > 1 else None
    known = len(embeddings)
    spacing_rc = in_plane_spacing(image.geometry.spacing, 0)
    model = SliceModel(backend, slice_stack(image, 0, window), spacing_rc, embeddings=embeddings)
    truth = hidden_slices_only(target > 0, 0, slices)
    row = {"case": case, "k": k, "placement": placement, "slices": slices, "train_k": train_k, **facts}
    if fill is not None:
        row["fill"] = round(mask_dice(hidden_slices_only(fill > 0, 0, slices), truth), 4)
    checks, fillers = check_exemplars(model, exemplars, AdaptConfig())
    painted = exemplars.label_slices[1]
    all_gaps = fillable_gaps(painted, None)
    short_gaps = fillable_gaps(painted, fill_max_gap(exemplars, AdaptConfig()))
    carried = None
    for name in variants:
        change = VARIANTS[name]
        config = replace(AdaptConfig(), stop=replace(AdaptConfig().stop, **change.get("stop", {})),
                         between="model")
        started = time.monotonic()
        probability = label_probabilities(model, exemplars, exemplar_seeds(exemplars), config, {})[1]
        scores = {}
        for between in betweens:
            if between == "model" or len(painted) < 2:
                p = probability
            elif between == "warp":  # registration does not depend on the variant: carried once per case
                if carried is None:
                    carried = fill_gaps(np.zeros_like(probability), model, exemplars, 1, "warp", None)
                p = probability.copy()
                for low, high in all_gaps:
                    p[low + 1:high] = carried[low + 1:high]
            elif between == "fill":
                p = fill_gaps(probability, model, exemplars, 1, between, None)
            elif between == "auto":
                p = fill_gaps(probability, model, exemplars, 1, fillers[1], fill_max_gap(exemplars, AdaptConfig())) \
                    if 1 in fillers else probability
            elif between == "fuse":
                p = fuse(probability, target, all_gaps, spacing_rc)
            elif between == "fuse_auto":
                p = fuse(probability, target, short_gaps, spacing_rc)
            else:
                p = envelope(probability, fill > 0, all_gaps, spacing_rc)
            labels = assign_labels({1: p}, exemplars, AdaptConfig())
            scores[between] = round(mask_dice(hidden_slices_only(labels > 0, 0, slices), truth), 4)
            if name == DEFAULT_VARIANT and between == "warp":
                default, default_labels = p, labels
        scores["seconds"] = round(time.monotonic() - started, 1)
        row[name] = scores
    if candidates:
        row["candidates"] = grow_candidates(image, target, slices, model, exemplars, default, fill, default_labels)
    row["gap_filler"] = fillers.get(1, "model")
    row["short_gaps"] = len(short_gaps)
    if len(embeddings) > known:
        import torch
        saved = torch.load(path, weights_only=True)
        save(path, saved["adapter"], window, embeddings, saved["fill"], facts)
    return row


def table(paths: list[Path], between: str = "auto") -> None:
    """Print a markdown table of every variant's Dice (``between`` choice) per row of the results files, with
    Fill and the means."""
    rows = [json.loads(line) for path in paths for line in path.read_text().splitlines() if line.strip()]
    names = [name for name in VARIANTS if any(name in row for row in rows)]
    print("| case | k | placement | slices | fill | " + " | ".join(names) + " |")
    print("|---" * (5 + len(names)) + "|")
    for row in sorted(rows, key=lambda r: (r["k"], r["placement"], r["case"])):
        cells = [f"{row[n][between]:.3f}" if n in row else "–" for n in names]
        fill = f"{row['fill']:.3f}" if row.get("fill") is not None else "–"
        print(f"| {row['case']} | {row['k']} | {row['placement']} | {row['slices']} | {fill} | " + " | ".join(cells)
              + " |")
    for k, placement in sorted({(r["k"], r["placement"]) for r in rows}):
        group = [r for r in rows if (r["k"], r["placement"]) == (k, placement)]
        fills = [r["fill"] for r in group if r.get("fill") is not None]
        cells = []
        for name in names:
            scored = [r for r in group if name in r]
            below = sum(r[name][between] < r["fill"] - 0.01 for r in scored if r.get("fill") is not None)
            cells.append(f"{np.mean([r[name][between] for r in scored]):.3f} ({len(scored)} cases, {below} below "
                         "Fill by > 0.01)" if scored else "–")
        print(f"| **mean** | {k} | {placement} | | {np.mean(fills) if fills else float('nan'):.3f} | "
              + " | ".join(cells) + " |")


def candidates_table(paths: list[Path]) -> None:
    """Print a markdown table of issue 30's candidates per row of the results files (rows run with
    ``--candidates``): the default, Fill, Grow, the whole-volume Grow, the model-seeded grow-cut, the
    leave-one-out pick, and the pick against the targets (the better of Fill and Grow at k >= 2, Grow at k = 1)
    and against the default."""
    rows = [json.loads(line) for path in paths for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "candidates" in r]
    print("| case | k | placement | default | Fill | Grow | target | Grow, whole volume | model-seeded grow-cut "
          "| held-out pick | pick − target | pick − default | seeded − target | pick, grow-cut as Grow "
          "| − target | − default |")
    print("|---" * 16 + "|")
    for row in sorted(rows, key=lambda r: (r["k"], r["placement"], r["case"])):
        c = row["candidates"]
        target = c["grow"] if row["k"] < 2 else max(c["fill"], c["grow"])
        pick = f"{c['chosen']} {c['chosen_dice']:.3f}"
        print(f"| {row['case']} | {row['k']} | {row['placement']} | {c['medadapt']:.3f} | "
              f"{c['fill']:.3f} | {c['grow']:.3f} | {target:.3f} | {c['grow_full']:.3f} | {c['seeded']:.3f} | "
              f"{pick} | {c['chosen_dice'] - target:+.3f} | {c['chosen_dice'] - c['medadapt']:+.3f} | "
              f"{c['seeded'] - target:+.3f} | " + (
                  f"{as_grow(c)} {c[as_grow(c)]:.3f} | {c[as_grow(c)] - target:+.3f} | "
                  f"{c[as_grow(c)] - c['medadapt']:+.3f} |" if "loo" in c else "– | – | – |"))


def as_grow(candidates: dict) -> str:
    """The held-out pick with grow-cut output as Slicer's Grow: the whole-volume grow referees for grow-cut
    (the crop cannot reach a held outer slice), but a pick of either grow-cut yields the effect's crop."""
    return "grow" if candidates["chosen"] in ("grow", "grow_full") else candidates["chosen"]


def main() -> None:
    """Run the variants on every (case, k, placement) and append one JSON line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--placement", nargs="+", default=["centre"], choices=["centre", "random"])
    parser.add_argument("--cases", nargs="*")
    parser.add_argument("--train-k", type=int, default=3, help="bin-centre slices the shared model adapts on")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--cache", type=Path, default=Path("/tmp/medadapt-variants"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/inference_variants.jsonl"))
    parser.add_argument("--table", type=Path, nargs="+", help="print the table of these results files and exit")
    parser.add_argument("--candidates-table", type=Path, nargs="+",
                        help="print the table of issue 30's candidates in these results files and exit")
    parser.add_argument("--between", default="auto", choices=BETWEEN, help="which between-choice --table shows")
    parser.add_argument("--score", nargs="+", default=list(BETWEEN), choices=BETWEEN,
                        help="the between-choices each variant is scored with (registration is slow on large structures)")
    parser.add_argument("--candidates", action="store_true",
                        help="also score issue 30's candidates (Fill, Grow from seeds, seeded grow-cut) and their "
                             "leave-one-out choice against the default (needs variant grow1.1 and score warp)")
    args = parser.parse_args()
    if args.table:
        table(args.table, args.between)
        return
    if args.candidates_table:
        candidates_table(args.candidates_table)
        return
    if not DATA.is_dir():
        sys.exit(f"development data not found at {DATA} (set MEDADAPT_DATA)")
    for case in args.cases or list(cases()):
        for placement in args.placement:
            for k in args.k:
                row = run_case(case, k, placement, args.cache, args.variants, args.train_k, tuple(args.score),
                               args.candidates)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                with args.out.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")
                print(f"{case:32s} k={k} {placement:6s} fill={row.get('fill')} " + " ".join(
                    f"{v}=" + "/".join(f"{row[v][b]:.3f}" for b in args.score) for v in args.variants), flush=True)


if __name__ == "__main__":
    main()
