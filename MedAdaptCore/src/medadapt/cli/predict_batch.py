"""``medadapt predict --batch``: one job applied to many images, one output each, and a summary CSV.

Bad inputs (unreadable, truncated, wrong dimension, ...) are skipped and reported in the summary; the others
go on.
"""

from __future__ import annotations

import csv
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from medadapt.errors import InputError
from medadapt.io.volume import same_file

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
SUMMARY = "summary.csv"


@dataclass
class BatchRow:
    """One line of the summary: input, output, ``ok`` or ``failed``, seconds taken and the error message."""

    input: str
    output: str
    status: str
    seconds: float
    error: str = ""


def is_image(path: Path) -> bool:
    """Whether ``path`` names a NIfTI, NRRD or MetaImage file."""
    return path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES)


def batch_inputs(source: str | Path) -> list[Path]:
    """The images of a folder (NIfTI / NRRD / MHA, sorted by name) or of a CSV file's ``image`` column
    (relative paths are taken from the CSV's folder)."""
    source = Path(source)
    if source.is_dir():
        images = sorted(p for p in source.iterdir() if is_image(p))
    elif source.is_file() and source.suffix.lower() == ".csv":
        with source.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if "image" not in (reader.fieldnames or []):
                raise InputError(f"--batch {source}: no 'image' column (columns: {reader.fieldnames or 'none'})")
            images = [source.parent / row["image"].strip() for row in reader if (row["image"] or "").strip()]
    else:
        raise InputError(f"--batch {source}: expected a folder of NIfTI/NRRD/MHA images or a CSV file with an "
                         "'image' column")
    if not images:
        raise InputError(f"--batch {source}: no NIfTI, NRRD or MHA image found")
    return images


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
    folder cannot be made or an output would overwrite an input."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"-o {out_dir}: exists and is not a folder")
    if not out_dir.parent.is_dir():
        raise InputError(f"-o {out_dir}: parent folder {out_dir.parent} does not exist")
    outputs = output_paths(inputs, out_dir)
    clash = next(((i, o) for o in outputs for i in inputs if same_file(i, o)), None)
    if clash:
        raise InputError(f"-o {out_dir}: output {clash[1]} would overwrite the input {clash[0]}; choose an output "
                         "folder other than the inputs' folder")
    return outputs


def run_batch(inputs: list[Path], out_dir: Path, segment_one: Callable[[Path, Path], None],
              show_progress: bool = True) -> list[BatchRow]:
    """Call ``segment_one(input, output)`` for every input with a tqdm bar, write ``out_dir/summary.csv``
    and return its rows; an :class:`InputError` marks that input ``failed`` and the batch goes on."""
    from tqdm import tqdm
    outputs = check_batch_outputs(inputs, out_dir)
    out_dir.mkdir(exist_ok=True)
    rows = []
    for path, output in tqdm(list(zip(inputs, outputs)), desc="predict", unit="image",
                             disable=not show_progress):
        started = time.monotonic()
        try:
            segment_one(path, output)
            rows.append(BatchRow(str(path), str(output), "ok", round(time.monotonic() - started, 2)))
        except InputError as exc:
            rows.append(BatchRow(str(path), "", "failed", round(time.monotonic() - started, 2), str(exc)))
    with (out_dir / SUMMARY).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(BatchRow.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)
    return rows


def finish_batch(rows: list[BatchRow], out_dir: Path) -> None:
    """Print how many outputs were written; :class:`InputError` naming the first failure when any input failed."""
    failed = [row for row in rows if row.status != "ok"]
    print(f"wrote {len(rows) - len(failed)} of {len(rows)} outputs and {out_dir / SUMMARY}")
    if failed:
        raise InputError(f"--batch: {len(failed)} of {len(rows)} inputs failed (first: {failed[0].error}); "
                         f"see {out_dir / SUMMARY}")
