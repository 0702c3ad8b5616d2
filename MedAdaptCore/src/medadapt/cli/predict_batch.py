"""``medadapt predict --batch``: one job applied to many images, one output each, and a summary CSV.

Rules (README: "Prompt-free FSEFT heads, prompt-free `predict`, `predict --batch`"):

- **Order and names**: the inputs are a folder's images sorted by name, or a CSV file's ``image`` rows in file order;
  every output name is decided from that whole list (:func:`output_paths`), so it does not depend on how many
  processes run.
- **Retry**: an input whose segmentation raises is tried once more at once; if the second try raises too it is
  marked ``failed`` with the message and the batch goes on. This holds for every ``Exception`` (bad inputs,
  :class:`InputError`, as well as e.g. a ``RuntimeError`` or running out of memory on one case): one bad case must
  not stop a cohort. Only a cancel (:class:`CancelledError`, Ctrl-C) stops the batch. ``attempts`` counts the tries.
- **Skip**: an output that already exists in the output folder is finished (``write_volume`` writes to a temporary
  file and renames it, so a present file is complete); it is not rewritten and its row says ``skipped`` with
  0 attempts. Delete an output to have it segmented again. A file the batch writes (an output, the summary or a
  part file) that would overwrite an input (an image or the CSV list, compared by resolved path and by inode, so a
  hard link counts) is refused (:func:`check_batch_outputs`) before anything runs, as is a CSV row that names a
  folder or a file that is not a NIfTI / NRRD / MetaImage image (:func:`batch_inputs`).
- **Several processes** (``torchrun``, ``WORLD_SIZE`` > 1; :func:`batch_group` joins the process group with
  ``backends.distributed.process_group``): input ``i`` (0-based, in the order above) is segmented by rank
  ``i % WORLD_SIZE``. Each rank writes its rows to ``summary.part-RANK.csv`` in the output folder; after a barrier
  rank 0 merges them into ``summary.csv`` in input order, removes the part files, prints the summary line and
  raises the failure error. The other ranks print nothing and exit 0 unless they themselves crashed.
"""

from __future__ import annotations

import csv
import time
from dataclasses import asdict, dataclass, fields
from datetime import timedelta
from pathlib import Path
from typing import Callable

from medadapt.errors import CancelledError, InputError

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
SUMMARY = "summary.csv"
ATTEMPTS = 2  # the first try and one retry
OK, FAILED, SKIPPED = "ok", "failed", "skipped"
# Ranks that finish their share early wait at the barrier for the others (a rank whose outputs were all done
# earlier may wait for a whole run), so the barrier may wait this long.
BARRIER_TIMEOUT = timedelta(days=7)


@dataclass
class BatchRow:
    """One line of the summary: input, output, ``ok`` / ``failed`` / ``skipped``, seconds taken (all tries),
    tries made and the last error message."""

    input: str
    output: str
    status: str
    seconds: float
    attempts: int = 1
    error: str = ""


class BatchInputs(list):
    """The images of a batch, in order (a list of paths), and the CSV file that listed them (``listing``; ``None``
    for a folder's images): an input too, which the batch must never overwrite."""

    def __init__(self, images: list[Path], listing: Path | None = None):
        super().__init__(images)
        self.listing = listing


def is_image(path: Path) -> bool:
    """Whether ``path`` names a NIfTI, NRRD or MetaImage file."""
    return path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES)


def batch_inputs(source: str | Path) -> BatchInputs:
    """The images of a folder (NIfTI / NRRD / MHA, sorted by name) or of a CSV file's ``image`` column
    (relative paths are taken from the CSV's folder; :func:`listed_image` checks each row)."""
    source = Path(source)
    if source.is_dir():
        images = BatchInputs(sorted(p for p in source.iterdir() if is_image(p)))
    elif source.is_file() and source.suffix.lower() == ".csv":
        with source.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if "image" not in (reader.fieldnames or []):
                raise InputError(f"--batch {source}: no 'image' column (columns: {reader.fieldnames or 'none'})")
            images = BatchInputs([listed_image(source, number, row["image"].strip())
                                  for number, row in enumerate(reader, start=2) if (row["image"] or "").strip()],
                                 source)
    else:
        raise InputError(f"--batch {source}: expected a folder of NIfTI/NRRD/MHA images or a CSV file with an "
                         "'image' column")
    if not images:
        raise InputError(f"--batch {source}: no NIfTI, NRRD or MHA image found")
    return images


def listed_image(listing: Path, row: int, cell: str) -> Path:
    """The image that row ``row`` of the CSV file ``listing`` names (``cell``, relative to the file's folder);
    :class:`InputError` when it is a folder or its name is not an image file's (a missing file is left to fail
    on its own row)."""
    path = listing.parent / cell
    expected = f"expected a NIfTI, NRRD or MetaImage image file ({', '.join(IMAGE_SUFFIXES)})"
    if path.is_dir():
        raise InputError(f"--batch {listing} row {row}: {path} is a folder; {expected} (predict a DICOM series "
                         "on its own: medadapt predict FOLDER -o OUTPUT)")
    if not path.name.lower().endswith(IMAGE_SUFFIXES):
        raise InputError(f"--batch {listing} row {row}: {path} is not an image file name; {expected}")
    return path


def output_paths(inputs: list[Path], out_dir: Path) -> list[Path]:
    """One output per input in ``out_dir`` named like the input; repeated names get ``_2``, ``_3``, ..."""
    used: set[str] = set()
    outputs = []
    for path in inputs:
        name = path.name
        suffix = next((s for s in IMAGE_SUFFIXES if name.lower().endswith(s)), path.suffix)
        stem, n = name[:len(name) - len(suffix)], 1
        while name in used:
            n += 1
            name = f"{stem}_{n}{suffix}"
        used.add(name)
        outputs.append(out_dir / name)
    return outputs


def check_batch_outputs(inputs: list[Path], out_dir: Path) -> list[Path]:
    """The output paths of ``inputs`` in ``out_dir`` (:func:`output_paths`), or :class:`InputError` when the
    folder cannot be written (:func:`medadapt.io.folders.check_output_folder`) or a file the batch writes would
    overwrite an input (an image or the CSV list)."""
    from medadapt.backends.distributed import launched_world_size
    from medadapt.io.folders import check_output_folder
    check_output_folder(out_dir, "-o")
    outputs = output_paths(inputs, out_dir)
    world = launched_world_size()
    written = {_identity(path): path for path in [*outputs, out_dir / SUMMARY,
                                                  *(out_dir / part_name(rank) for rank in range(world))]}
    listing = inputs.listing if isinstance(inputs, BatchInputs) else None
    for given in [*inputs, *([listing] if listing else [])]:
        clash = written.get(_identity(given))
        if clash:
            raise InputError(f"-o {out_dir}: {clash} would overwrite the input {given}; choose an output folder "
                             "other than the inputs' folder")
    return outputs


def _identity(path: Path) -> tuple[int, int] | str:
    """What makes two paths one file: device and inode of an existing file (so a hard link or symbolic link to it
    is the same, as :func:`os.path.samefile` compares), else the resolved path."""
    try:
        stat = path.stat()
    except OSError:
        return str(path.resolve())
    return stat.st_dev, stat.st_ino


def shard(count: int, rank: int, world: int) -> list[int]:
    """The indices of the ``count`` inputs that rank ``rank`` of ``world`` segments: ``i % world == rank``."""
    return list(range(rank, count, world))


def batch_group(device: str):
    """:func:`medadapt.backends.distributed.process_group` with the batch's :data:`BARRIER_TIMEOUT`: inside, this
    process is in the ``torchrun`` process group when launched so, left on exit. Enter it before loading the
    model."""
    from medadapt.backends.distributed import process_group
    return process_group(device, timeout=BARRIER_TIMEOUT)


def segment_with_retry(path: Path, output: Path, segment_one: Callable[[Path, Path], object]) -> BatchRow:
    """The summary row of one input: ``skipped`` when ``output`` exists, else ``segment_one(path, output)``
    tried up to :data:`ATTEMPTS` times (any ``Exception`` but a cancel counts as a failed try)."""
    if output.is_file():
        return BatchRow(str(path), str(output), SKIPPED, 0.0, 0)
    started, error = time.monotonic(), ""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            segment_one(path, output)
            return BatchRow(str(path), str(output), OK, round(time.monotonic() - started, 2), attempt)
        except CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad case must not stop a cohort (module docstring)
            error = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
    return BatchRow(str(path), "", FAILED, round(time.monotonic() - started, 2), ATTEMPTS, error)


def part_name(rank: int) -> str:
    """The file in the output folder holding rank ``rank``'s summary rows until rank 0 merges them."""
    return f"summary.part-{rank}.csv"


def _write_rows(path: Path, rows: list[BatchRow]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[f.name for f in fields(BatchRow)])
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)


def _read_rows(path: Path) -> list[BatchRow]:
    with path.open(newline="") as handle:
        return [BatchRow(row["input"], row["output"], row["status"], float(row["seconds"]), int(row["attempts"]),
                         row["error"]) for row in csv.DictReader(handle)]


def run_batch(inputs: list[Path], out_dir: Path, segment_one: Callable[[Path, Path], object],
              show_progress: bool = True) -> list[BatchRow]:
    """Segment this process's share of ``inputs`` (all of them outside a process group) with
    :func:`segment_with_retry` and a tqdm bar, and write ``out_dir/summary.csv``. Returns the summary's rows on
    rank 0 (every input, in input order) and this rank's own rows elsewhere."""
    from tqdm import tqdm

    from medadapt.backends.distributed import barrier, rank as process_rank, world_size
    outputs = check_batch_outputs(inputs, out_dir)
    out_dir.mkdir(exist_ok=True)
    rank, world = process_rank(), world_size()
    mine = shard(len(inputs), rank, world)
    desc = "predict" if world == 1 else f"predict (rank 0 of {world}: {len(mine)} of {len(inputs)} images)"
    rows = [segment_with_retry(inputs[i], outputs[i], segment_one)
            for i in tqdm(mine, desc=desc, unit="image", disable=not show_progress or rank != 0)]
    if world == 1:
        _write_rows(out_dir / SUMMARY, rows)
        return rows
    _write_rows(out_dir / part_name(rank), rows)
    barrier()
    if rank != 0:
        return rows
    parts = [_read_rows(out_dir / part_name(r)) for r in range(world)]
    for r, part in enumerate(parts):
        if len(part) != len(shard(len(inputs), r, world)):
            raise RuntimeError(f"{out_dir / part_name(r)}: {len(part)} rows, expected "
                               f"{len(shard(len(inputs), r, world))}; was another batch writing to {out_dir}?")
    merged = [parts[i % world][i // world] for i in range(len(inputs))]
    _write_rows(out_dir / SUMMARY, merged)
    for r in range(world):
        (out_dir / part_name(r)).unlink()
    return merged


def finish_batch(rows: list[BatchRow], out_dir: Path) -> None:
    """On rank 0 (or without a process group): print how many outputs were written and skipped;
    :class:`InputError` naming the first failure when any input failed. Other ranks do nothing."""
    from medadapt.backends.distributed import rank
    if rank() != 0:
        return
    failed = [row for row in rows if row.status == FAILED]
    skipped = sum(row.status == SKIPPED for row in rows)
    done = f" ({skipped} skipped: already in {out_dir})" if skipped else ""
    print(f"wrote {len(rows) - len(failed) - skipped} of {len(rows)} outputs and {out_dir / SUMMARY}{done}")
    if failed:
        raise InputError(f"--batch: {len(failed)} of {len(rows)} inputs failed (first: {failed[0].error}); "
                         f"see {out_dir / SUMMARY}")
