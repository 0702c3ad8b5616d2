"""Sequential fine-tuning across tasks (issue 15): forgetting curves and forward transfer of model lineages
(a script, not a test; needs ../shared/data).

Methods, each on the same task sequence and per-task training budget:
- ``parallel``: each task's LoRA trained from the base model alone (a one-stage ``naive`` lineage per task).
- ``naive``: one lineage, each task's LoRA merged before the next, nothing retained or distilled.
- ``medseqft``: one lineage with MDS selection and K&G RFT (:mod:`medadapt.lineage`).
- ``multitask``: one stage on every task's slices at once, as many iterations as the sequence's stages.

Each task trains from its volume's reference labels (every slice holding the structure, thinned to the
lineage's ``max_slices``). After each stage every task learned so far is scored as at adaptation: its k = 3
bin-centre slices painted, the stage's model propagating from them everywhere else (``zero-shot``,
``--between model``, so that the model and not registration segments the unpainted slices); Dice on the other
slices. Forward transfer: default ``adapt`` (LoRA) at k = 1 and 3 on structures no stage saw, from the final
model against the base model.

    python benchmarks/lineage_sequence.py --methods parallel naive medseqft multitask \\
        --out benchmarks/results/lineage_sequence.jsonl
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fewshot import DATA, all_cases, load_case  # noqa: E402

SEQUENCE = ("ct_abdomen_ts/liver", "ct_abdomen_ts/spleen", "ct_abdomen_ts/kidney_right", "ct_abdomen_ts/stomach",
            "ct_lung1/lung_left", "ct_lung1/cord", "hippocampus/hippocampus_001", "brats/pat0006/edema_flair")
UNSEEN = ("ct_lung1/tumour", "brats/pat0005/enhancing_t1c", "mr_abdomen_ts/kidney_right")
METHODS = ("parallel", "naive", "medseqft", "multitask")


def task_volumes(case: str):
    """[(image, reference label map, its file name)] and the label value of a development case."""
    from medadapt.io.volume import read_volume
    image_path, label_path, label = all_cases()[case]
    return [(read_volume(DATA / image_path), read_volume(DATA / label_path, label=True), label_path)], label


def modality(case: str) -> str:
    """CT or MR, from the case's data folder."""
    return "CT" if case.startswith("ct_") else "MR"


def score(model, case: str, k: int, caches: dict) -> float:
    """Dice on the unpainted slices of ``case`` painted on k bin-centre slices, propagated by ``model``
    (zero-shot, the model between painted slices too)."""
    from medadapt.config import AdaptConfig
    from medadapt.evaluation.metrics import evaluate
    from medadapt.pipeline import EmbeddingCache, adapt
    image, target, slices, exemplars = load_case(case, k)
    config = AdaptConfig(method="zero-shot", device="cpu", between="model")
    result = adapt(image, exemplars, config, backend=model, cache=caches.setdefault(case, EmbeddingCache()))
    return evaluate(result.segmentation.array, target, [1], 0, slices, tuple(reversed(image.geometry.spacing)))[1][
        "dice"]


def new_lineage(folder: Path, method: str, iterations: int, max_slices: int):
    """A fresh lineage on the bundled LiteMedSAM."""
    from medadapt.backends import load_backend
    from medadapt.lineage.folder import BaseFacts, StageSettings, new_record, write_lineage
    sha = load_backend("litemedsam", "cpu").checkpoint_sha256
    settings = StageSettings(iterations=iterations, max_slices=max_slices)
    return write_lineage(folder, new_record(BaseFacts(name="litemedsam", sha256=sha), method, True, settings))


def emit(row: dict, out: Path) -> None:
    """Print ``row`` and append it to ``out``."""
    print(json.dumps(row), flush=True)
    with out.open("a") as handle:
        handle.write(json.dumps(row) + "\n")


def run_sequential(method: str, sequence, args, caches, work: Path) -> Path:
    """``naive`` / ``medseqft``: one lineage through the sequence, every learned task scored after each stage."""
    from medadapt.lineage.folder import read_lineage
    from medadapt.lineage.model import load_lineage_model
    from medadapt.lineage.stage import add_task
    folder = work / method
    new_lineage(folder, method, args.iterations, args.max_slices)
    for stage, case in enumerate(sequence, start=1):
        volumes, label = task_volumes(case)
        add_task(folder, volumes, label, case, modality(case))
        lineage = read_lineage(folder)
        facts = lineage.record.tasks[-1]
        if args.score_stages == "last" and stage < len(sequence):
            continue
        model = load_lineage_model(lineage, "cpu")
        for earlier in sequence[:stage]:
            emit({"method": method, "stage": stage, "trained": case, "task": earlier,
                  "dice": round(score(model, earlier, 3, caches), 4), "stage_seconds": facts.seconds,
                  "stage_peak_rss_gb": facts.peak_rss_gb}, args.out)
    return folder


def run_parallel(sequence, args, caches, work: Path) -> None:
    """``parallel``: each task alone from the base model."""
    from medadapt.lineage.folder import read_lineage
    from medadapt.lineage.model import load_lineage_model
    from medadapt.lineage.stage import add_task
    for stage, case in enumerate(sequence, start=1):
        folder = work / f"parallel-{stage}"
        new_lineage(folder, "naive", args.iterations, args.max_slices)
        volumes, label = task_volumes(case)
        add_task(folder, volumes, label, case, modality(case))
        lineage = read_lineage(folder)
        emit({"method": "parallel", "stage": stage, "trained": case, "task": case,
              "dice": round(score(load_lineage_model(lineage, "cpu"), case, 3, caches), 4),
              "stage_seconds": lineage.record.tasks[-1].seconds,
              "stage_peak_rss_gb": lineage.record.tasks[-1].peak_rss_gb}, args.out)


def run_multitask(sequence, args, caches, work: Path) -> Path:
    """``multitask``: one stage on all tasks' slices, the sequence's total iterations."""
    from medadapt.lineage.folder import TaskFacts, read_lineage
    from medadapt.lineage.model import load_lineage_model
    from medadapt.lineage.samples import FrameSet, task_slices
    from medadapt.lineage.stage import learn_task
    folder = work / "multitask"
    lineage = new_lineage(folder, "naive", args.iterations, args.max_slices)
    student, started = load_lineage_model(lineage, "cpu"), time.monotonic()
    parts = []
    for case in sequence:
        volumes, label = task_volumes(case)
        parts.append(task_slices(student, volumes, label, args.max_slices))
    task = FrameSet.joined(parts)
    facts = TaskFacts(stage=1, name="all", label=0, label_maps=list(sequence), slices=len(task), retained=0,
                      seconds=0, peak_rss_gb=0)
    learn_task(lineage, student, task, facts, "cpu", iterations=args.iterations * len(sequence), started=started)
    lineage = read_lineage(folder)
    model = load_lineage_model(lineage, "cpu")
    for case in sequence:
        emit({"method": "multitask", "stage": len(sequence), "trained": "all", "task": case,
              "dice": round(score(model, case, 3, caches), 4), "stage_seconds": lineage.record.tasks[-1].seconds,
              "stage_peak_rss_gb": lineage.record.tasks[-1].peak_rss_gb}, args.out)
    return folder


def transfer(method: str, folder: Path | None, unseen, ks, args) -> None:
    """Default ``adapt`` on each unseen structure at each k, from ``folder``'s final model (``None``: the base)."""
    from medadapt.evaluation.metrics import evaluate
    from medadapt.options import AdaptOptions, build_config
    from medadapt.pipeline import adapt
    for case in unseen:
        for k in ks:
            image, target, slices, exemplars = load_case(case, k)
            options = AdaptOptions(device="cpu", base_model=str(folder) if folder else "litemedsam")
            started = time.monotonic()
            result = adapt(image, exemplars, build_config(options))
            dice = evaluate(result.segmentation.array, target, [1], 0, slices,
                            tuple(reversed(image.geometry.spacing)))[1]["dice"]
            emit({"method": method, "transfer": case, "k": k, "dice": round(dice, 4),
                  "seconds": round(time.monotonic() - started, 1)}, args.out)


def main() -> None:
    """Run the chosen methods on the sequence, then forward transfer from each final model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--sequence", nargs="+", default=list(SEQUENCE))
    parser.add_argument("--unseen", nargs="*", default=list(UNSEEN))
    parser.add_argument("--transfer-k", type=int, nargs="*", default=[1, 3])
    parser.add_argument("--transfer-from-base", action=argparse.BooleanOptionalAction, default=True,
                        help="also adapt the unseen structures from the base model (the reference)")
    parser.add_argument("--iterations", type=int, default=100, help="training iterations per task")
    parser.add_argument("--max-slices", type=int, default=24, help="training slices per task at most")
    parser.add_argument("--transfer-from", nargs="*", metavar="NAME=FOLDER",
                        help="only forward transfer: from the base model (unless --no-transfer-from-base) and from "
                        "these existing lineages, e.g. medseqft=/tmp/x/medseqft (none: the base model alone)")
    parser.add_argument("--score-stages", choices=("each", "last"), default="each",
                        help="score the learned tasks after each stage (the forgetting curve) or after the last only")
    parser.add_argument("--keep", type=Path, metavar="FOLDER",
                        help="keep the lineages in this new folder (default: a temporary one, removed at the end), "
                        "e.g. to run --transfer-from on them later")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/lineage_sequence.jsonl"))
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"development data not found at {DATA} (set MEDADAPT_DATA)")
    unknown = [case for case in args.sequence + args.unseen if case not in all_cases()]
    if unknown:
        sys.exit(f"unknown case(s) {unknown}; see benchmarks/fewshot.py --list")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.transfer_from is not None:
        if args.transfer_from_base:
            transfer("base", None, args.unseen, args.transfer_k, args)
        for pair in args.transfer_from:
            name, _, folder = pair.partition("=")
            transfer(name, Path(folder), args.unseen, args.transfer_k, args)
        return
    if args.keep and args.keep.exists():
        sys.exit(f"--keep: {args.keep} exists; give a new folder")
    caches: dict = {}
    with tempfile.TemporaryDirectory(prefix="medadapt-lineages-") as temporary:
        work = args.keep or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        finals = {}
        for method in args.methods:
            if method == "parallel":
                run_parallel(args.sequence, args, caches, work)
            elif method == "multitask":
                finals[method] = run_multitask(args.sequence, args, caches, work)
            else:
                finals[method] = run_sequential(method, args.sequence, args, caches, work)
        if args.unseen and args.transfer_k and args.transfer_from_base:
            transfer("base", None, args.unseen, args.transfer_k, args)
        if args.unseen and args.transfer_k:
            for method, folder in finals.items():
                transfer(method, folder, args.unseen, args.transfer_k, args)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB", file=sys.stderr)


if __name__ == "__main__":
    main()
