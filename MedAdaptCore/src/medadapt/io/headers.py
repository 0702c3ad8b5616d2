"""What an image file's header declares, checked before any voxel is read.

A volume that crosses a trust boundary (an upload to ``medadapt serve``, a file handed to the command line) is
read only from the one file given: ITK would otherwise follow a MetaImage ``ElementDataFile``, a NRRD ``data
file`` or an Analyze / NIfTI ``.hdr`` + ``.img`` pair to any file the process can read, and hand its bytes back
as voxels. And its grid is checked against a voxel limit from the header alone, so that a small compressed file
declaring a huge grid is refused before anything is decompressed or allocated.

Which ITK reader reads a file is fixed here (:func:`image_io`), so the reader that reads it is the one whose
header was checked:

- NIfTI (``.nii``, ``.nii.gz``): a single file (magic ``n+1`` / ``n+2``); a header-only ``ni1`` / ``ni2`` or an
  Analyze header names a separate ``.img``.
- NRRD (``.nrrd``, ``.nhdr``): no ``data file`` field (its voxels follow the header in the same file).
- MetaImage (``.mha``, ``.mhd``): ``ElementDataFile = LOCAL``.
- DICOM, GIPL, VTK, TIFF, PNG, JPEG, BMP hold their voxels in the file by design and are read as they are.
- Any other ITK format may read further files (Analyze, Bruker, GE, Stimulate, ...) and, like a header naming
  another file, is read only when the caller says those files are its own (``allow_header_files``).
"""

from __future__ import annotations

import gzip
import math
import os
from pathlib import Path

import SimpleITK as sitk

from medadapt.errors import InputError

FORMAT_IO = {".nii": "NiftiImageIO", ".nii.gz": "NiftiImageIO", ".hdr": "NiftiImageIO", ".hdr.gz": "NiftiImageIO",
             ".img": "NiftiImageIO", ".img.gz": "NiftiImageIO", ".nrrd": "NrrdImageIO", ".nhdr": "NrrdImageIO",
             ".mha": "MetaImageIO", ".mhd": "MetaImageIO"}
"""The ITK reader of each file type whose header :func:`image_io` checks (chosen by name, not by ITK's guess)."""
SINGLE_FILE_IO = ("GDCMImageIO", "GiplImageIO", "VTKImageIO", "TIFFImageIO", "PNGImageIO", "JPEGImageIO",
                  "BMPImageIO")
"""ITK readers of formats that keep their voxels in the file itself."""
HEADER_BYTES = 256 * 1024
MAX_VOXELS = 512 * 512 * 2000
"""Default largest grid an untrusted upload (``medadapt serve``, ``medadapt web``) may declare: a whole-body CT
(512 x 512 in plane, 2000 slices: 1 m at 0.5 mm), beyond any single series the models segment; 1 GB as int16,
2 GB as float32 while it is read."""
"""Longest NRRD / MetaImage text header read (ITK writes a few hundred bytes plus any metadata)."""
TRUST_HINT = ("convert it to a single .nii.gz, .nrrd or .mha file, or, with medadapt adapt / predict, pass "
              "--allow-header-files if the files it names are yours")
NIFTI_SINGLE_FILE = (b"n+1\0", b"n+2\0")


def compound_suffix(path: Path) -> str:
    """``path``'s file type in lower case, with ``.gz`` kept together with the suffix before it."""
    suffixes = [s.lower() for s in path.suffixes]
    return "".join(suffixes[-2:]) if suffixes and suffixes[-1] == ".gz" else (suffixes[-1] if suffixes else "")


def image_io(path: Path, allow_header_files: bool = False) -> str:
    """The ITK reader to read ``path`` with (``""``: ITK's own choice), after :class:`InputError` naming the file
    when its header names another file or its format might; ``allow_header_files`` skips those checks."""
    if allow_header_files:
        return ""
    reader = FORMAT_IO.get(compound_suffix(path)) or sitk.ImageFileReader.GetImageIOFromFileName(str(path))
    if reader in HEADER_CHECKS:
        HEADER_CHECKS[reader](path)
    elif reader and reader not in SINGLE_FILE_IO:
        raise InputError(f"{path}: {reader.removesuffix('ImageIO')} files can read their voxels from other files; "
                         f"{TRUST_HINT}")
    return reader


def check_nifti(path: Path) -> None:
    """:class:`InputError` unless ``path`` is a single-file NIfTI-1 or NIfTI-2 image (gzipped or not); reads the
    first 540 bytes only."""
    try:
        with path.open("rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
        with (gzip.open(path, "rb") if gzipped else path.open("rb")) as stream:
            block = stream.read(540)
    except (OSError, EOFError) as exc:
        raise unreadable(path, str(exc)) from exc
    magic = _nifti_magic(block)
    if magic in NIFTI_SINGLE_FILE:
        return
    if magic in (b"ni1\0", b"ni2\0") or compound_suffix(path) in (".hdr", ".img", ".hdr.gz", ".img.gz"):
        raise InputError(f"{path}: a NIfTI / Analyze header whose voxels are in a separate .img file; {TRUST_HINT}")
    raise unreadable(path, "not a NIfTI file: no single-file NIfTI-1 or NIfTI-2 header, magic n+1 or n+2")


def _nifti_magic(block: bytes) -> bytes | None:
    """The 4-byte magic of a NIfTI-1 (348-byte) or NIfTI-2 (540-byte) header, ``None`` when ``block`` is
    neither (an Analyze 7.5 header gives an empty magic)."""
    for order in ("little", "big"):
        size = int.from_bytes(block[:4], order, signed=True) if len(block) >= 4 else 0
        if size == 348 and len(block) >= 348:
            return block[344:348]
        if size == 540 and len(block) >= 540:
            return block[4:8]
    return None


def check_nrrd(path: Path) -> None:
    """:class:`InputError` unless ``path`` is a NRRD file whose voxels follow its header (no ``data file`` field);
    every header line must be a comment or a field."""
    lines = _header_lines(path, lambda line: line == "")
    if not lines[0].startswith("NRRD000"):
        raise unreadable(path, "not a NRRD file: it does not start with NRRD000x")
    for number, line in enumerate(lines[1:], 2):
        _check_plain(path, number, line)
        if line == "" or line.startswith("#"):
            continue
        field, separator, value = line.partition(":")
        if not separator:
            raise unreadable(path, f"NRRD header line {number} is not 'field: value'")
        if "".join(field.split()).lower() == "datafile":
            raise InputError(f"{path}: a NRRD header whose voxels are in another file (data file:{value}); "
                             f"{TRUST_HINT}")


def check_metaimage(path: Path) -> None:
    """:class:`InputError` unless ``path`` is a MetaImage file with ``ElementDataFile = LOCAL`` (its voxels
    follow the header); every header line must be ``Key = Value``."""
    lines = _header_lines(path, lambda line: _meta_key(line) == "elementdatafile")
    for number, line in enumerate(lines, 1):
        _check_plain(path, number, line)
        if line.strip() and "=" not in line:
            raise unreadable(path, f"MetaImage header line {number} is not 'Key = Value'")
        declared = line.partition("=")[2].strip()
        if _meta_key(line) == "compresseddatasize" and declared.isdigit() and int(declared) > os.path.getsize(path):
            raise unreadable(path, f"CompressedDataSize {declared} is larger than the file")
    if _meta_key(lines[-1]) != "elementdatafile":
        raise unreadable(path, "not a MetaImage file: no ElementDataFile line")
    value = lines[-1].partition("=")[2].strip()
    if value.lower() != "local":
        raise InputError(f"{path}: a MetaImage header whose voxels are in another file (ElementDataFile = "
                         f"{value}); {TRUST_HINT}")


def _meta_key(line: str) -> str:
    """The key of a MetaImage header line, without white space and in lower case (``""`` without ``=``)."""
    key, separator, _ = line.partition("=")
    return "".join(key.split()).lower() if separator else ""


def _header_lines(path: Path, last) -> list[str]:
    """The ``\\n``-separated lines of ``path``'s text header up to the first for which ``last`` holds (all lines
    when the file ends first); :class:`InputError` when that line is not within :data:`HEADER_BYTES`."""
    try:
        with path.open("rb") as stream:
            head = stream.read(HEADER_BYTES + 1)
    except OSError as exc:
        raise unreadable(path, str(exc)) from exc
    lines = [line.removesuffix("\r") for line in head[:HEADER_BYTES].decode("latin-1").split("\n")]
    if len(head) > HEADER_BYTES:
        lines.pop()  # cut at the limit
    for number, line in enumerate(lines):
        if last(line):
            return lines[:number + 1]
    if len(head) > HEADER_BYTES:
        raise unreadable(path, f"header longer than {HEADER_BYTES // 1024} KB")
    return lines


def _check_plain(path: Path, number: int, line: str) -> None:
    """:class:`InputError` when header line ``number`` holds a carriage return or NUL byte, where a C reader
    might end or split it differently from this check."""
    if "\r" in line or "\0" in line:
        raise unreadable(path, f"header line {number} holds a carriage return or NUL byte")


def unreadable(path: Path, why: str) -> InputError:
    """The error for a file that is not the image its name says (the wording of :func:`read_volume`'s)."""
    return InputError(f"{path}: unreadable or truncated image file ({why})")


HEADER_CHECKS = {"NiftiImageIO": check_nifti, "NrrdImageIO": check_nrrd, "MetaImageIO": check_metaimage}


def check_shape(dimension: int, size: tuple, components: int, source: str) -> None:
    """:class:`InputError` naming ``source`` unless the grid is 3D (or 4D with one time point) with one
    component per voxel."""
    if dimension != 3 and not (dimension == 4 and size[3] == 1):
        raise InputError(f"{source}: expected a 3D image, got {dimension}D (size {tuple(size)})")
    if components != 1:
        raise InputError(f"{source}: expected one component per voxel, got {components} (a 4D or vector image)")


def check_declared(reader: sitk.ImageFileReader, source: str, max_voxels: int | None) -> None:
    """:class:`InputError` naming ``source`` when the grid that ``reader`` read from the header (after
    ``ReadImageInformation``, before any voxel) is not a 3D single-component grid or has more than
    ``max_voxels`` voxels."""
    size = tuple(int(s) for s in reader.GetSize())
    check_shape(reader.GetDimension(), size, reader.GetNumberOfComponents(), source)
    if min(size) < 1:
        raise InputError(f"{source}: the header declares an empty grid (size {size})")
    voxels = math.prod(size)
    if max_voxels is not None and voxels > max_voxels:
        raise InputError(f"{source}: the header declares {' x '.join(map(str, size))} = {voxels:,} voxels; the "
                         f"limit is {max_voxels:,} voxels (--max-voxels)")


def checked_reader(path: Path, allow_header_files: bool = False, max_voxels: int | None = None,
                   source: str | None = None) -> sitk.ImageFileReader:
    """A reader of the one image file ``path`` whose header has been read and checked (:func:`image_io`,
    :func:`check_declared`; errors name ``source``, default the path) and whose voxels are not read yet."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.SetImageIO(image_io(path, allow_header_files))
    reader.ReadImageInformation()
    check_declared(reader, source or str(path), max_voxels)
    return reader
