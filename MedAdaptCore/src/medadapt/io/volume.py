"""Volumes on a physical grid: reading, writing (atomically) and grid checks with SimpleITK."""

from __future__ import annotations

import gzip
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medadapt.errors import InputError
from medadapt.io.headers import check_shape, checked_reader, compound_suffix


@dataclass(frozen=True)
class Geometry:
    """Physical grid of a volume in SimpleITK (LPS) conventions; ``size`` is (x, y, z)."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]

    def matches(self, other: "Geometry", tol: float = 1e-4) -> bool:
        """True when both grids have the same size and, within ``tol``, spacing, origin and direction."""
        return self.size == other.size and all(
            np.allclose(a, b, atol=tol * max(1.0, float(np.max(np.abs(a)))))
            for a, b in ((self.spacing, other.spacing), (self.origin, other.origin),
                         (self.direction, other.direction)))

    def describe_difference(self, other: "Geometry") -> str:
        """Name the first grid field that differs between ``self`` and ``other``."""
        for field in ("size", "spacing", "origin", "direction"):
            a, b = getattr(self, field), getattr(other, field)
            if not np.allclose(a, b, atol=1e-4 * max(1.0, float(np.max(np.abs(a))))):
                return f"{field} {tuple(round(float(v), 4) for v in b)} != {tuple(round(float(v), 4) for v in a)}"
        return "no difference"

    @property
    def direction_matrix(self) -> np.ndarray:
        """3x3 direction cosines (columns are the x, y, z index axes in LPS)."""
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    def index_to_world(self, ijk) -> np.ndarray:
        """Continuous (x, y, z) voxel index -> LPS world point in mm."""
        ijk = np.asarray(ijk, dtype=float)
        return np.asarray(self.origin) + self.direction_matrix @ (np.asarray(self.spacing) * ijk)

    def world_to_index(self, lps) -> np.ndarray:
        """LPS world point in mm -> continuous (x, y, z) voxel index."""
        offset = np.asarray(lps, dtype=float) - np.asarray(self.origin)
        return np.linalg.solve(self.direction_matrix, offset) / np.asarray(self.spacing)


@dataclass
class Volume:
    """A 3D image: ``array`` in SimpleITK's (z, y, x) order plus its geometry."""

    array: np.ndarray
    geometry: Geometry

    def __post_init__(self):
        expected = tuple(reversed(self.geometry.size))
        if self.array.shape != expected:
            raise InputError(f"array shape {self.array.shape} does not match grid size {expected} (z, y, x)")

    def with_array(self, array: np.ndarray) -> "Volume":
        """A new volume on the same grid holding ``array``."""
        return Volume(array, self.geometry)

    def to_sitk(self) -> sitk.Image:
        """SimpleITK image with this volume's voxels and geometry."""
        image = sitk.GetImageFromArray(self.array)
        image.SetSpacing(self.geometry.spacing)
        image.SetOrigin(self.geometry.origin)
        image.SetDirection(self.geometry.direction)
        return image

    @classmethod
    def from_sitk(cls, image: sitk.Image, source: str = "image") -> "Volume":
        """Volume from a 3D single-component SimpleITK image (else :class:`InputError` naming ``source``)."""
        if image.GetDimension() != 3:
            raise InputError(f"{source}: expected a 3D image, got {image.GetDimension()}D "
                             f"(size {image.GetSize()})")
        check_shape(3, image.GetSize(), image.GetNumberOfComponentsPerPixel(), source)
        geometry = Geometry(tuple(int(s) for s in image.GetSize()), tuple(image.GetSpacing()),
                            tuple(image.GetOrigin()), tuple(image.GetDirection()))
        return cls(sitk.GetArrayFromImage(image), geometry)


def _is_compressed_inside(path: Path) -> bool:
    """NRRD / MetaImage files whose header declares compressed voxel data."""
    with path.open("rb") as handle:
        header = handle.read(4096).decode("latin-1").lower()
    return ("encoding: gz" in header or "encoding: bz" in header or "compresseddata = true" in header)


def check_complete(path: Path, expected_bytes: int) -> None:
    """ITK reads some truncated files without complaint; verify the voxel data is all there."""
    if path.is_dir():
        return
    if path.name.endswith(".gz"):
        total = 0
        try:
            with gzip.open(path, "rb") as stream:
                for block in iter(lambda: stream.read(1 << 22), b""):
                    total += len(block)
                    if total >= expected_bytes:  # enough: trailing data would only cost time
                        break
        except (EOFError, OSError, gzip.BadGzipFile) as exc:
            raise InputError(f"{path}: unreadable or truncated image file (compressed stream: {exc})") from exc
        if total < expected_bytes:
            raise InputError(f"{path}: unreadable or truncated image file ({total} of {expected_bytes} bytes)")
    elif path.suffix.lower() in (".nii", ".nrrd", ".mha") and not _is_compressed_inside(path):
        if path.stat().st_size < expected_bytes:
            raise InputError(f"{path}: unreadable or truncated image file ({path.stat().st_size} bytes on disk, "
                             f"voxel data alone needs {expected_bytes})")


def check_even_spacing(folder: Path, names: list[str], tolerance: float = 0.01) -> None:
    """:class:`InputError` when the slices of a DICOM series are not evenly spaced along their normal (a
    missing or repeated slice): ITK would resample them onto one spacing with only a warning."""
    if len(names) < 3:
        return
    positions, normal = [], None
    for name in names:
        reader = sitk.ImageFileReader()
        reader.SetFileName(name)
        reader.ReadImageInformation()
        if not reader.HasMetaDataKey("0020|0032") or not reader.HasMetaDataKey("0020|0037"):
            return  # no geometry tags: nothing to compare
        if normal is None:
            row, col = np.split(np.array([float(v) for v in reader.GetMetaData("0020|0037").split("\\")]), 2)
            normal = np.cross(row, col)
        positions.append(float(np.dot(normal, [float(v) for v in reader.GetMetaData("0020|0032").split("\\")])))
    gaps = np.diff(np.sort(positions))
    typical = float(np.median(gaps))
    worst = gaps[np.argmax(np.abs(gaps - typical))]
    if typical <= 0 or abs(worst - typical) > tolerance * max(typical, 1.0):
        raise InputError(f"{folder}: DICOM slices are unevenly spaced (a gap of {worst:.3g} mm where {typical:.3g} "
                         "mm is typical): a slice is missing or repeated; export the complete series")


def read_volume(path: str | os.PathLike, label: bool = False, allow_header_files: bool = False,
                max_voxels: int | None = None) -> Volume:
    """Read NIfTI / NRRD / MHA or a DICOM series folder; labels are cast to integers, images checked for NaN/inf.

    A file is read only from itself unless ``allow_header_files`` (the caller owns whatever its header names),
    and its header must declare a 3D grid of at most ``max_voxels`` voxels (:mod:`medadapt.io.headers`)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            series = reader.GetGDCMSeriesIDs(str(path))
            if not series:
                raise InputError(f"{path}: folder holds no DICOM series")
            names = reader.GetGDCMSeriesFileNames(str(path), series[0])
            check_even_spacing(path, names)
            reader.SetFileNames(names)
            image = reader.Execute()
        else:
            image = _read_file(path, allow_header_files, max_voxels)
    except InputError:
        raise
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise InputError(f"{path}: unreadable or truncated image file ({first[-1] if first else exc})") from exc
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    volume = Volume.from_sitk(image, source=str(path))
    check_complete(path, volume.array.nbytes)
    if label:
        return volume.with_array(label_array(volume.array, path))
    raw = nifti_voxels(path)
    checked = raw if raw is not None else volume.array
    if np.issubdtype(checked.dtype, np.floating) and not np.all(np.isfinite(checked)):
        bad = int(np.size(checked) - np.count_nonzero(np.isfinite(checked)))
        raise InputError(f"{path}: image holds {bad} NaN or inf voxels; expected finite intensities")
    return volume


def _read_file(path: Path, allow_header_files: bool, max_voxels: int | None) -> sitk.Image:
    """One image file, its header checked (:func:`checked_reader`) before its voxels are read."""
    return checked_reader(path, allow_header_files, max_voxels).Execute()


def nifti_voxels(path: Path) -> np.ndarray | None:
    """The voxels of a floating-point NIfTI file exactly as stored (nibabel; ITK's reader turns NaN into 0,
    which would hide them), else ``None``."""
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        return None
    import nibabel
    try:
        image = nibabel.load(str(path))
        if not np.issubdtype(image.get_data_dtype(), np.floating):
            return None
        return np.asarray(image.dataobj.get_unscaled())
    except Exception as exc:  # noqa: BLE001 - SimpleITK read it already; report what nibabel found
        raise InputError(f"{path}: unreadable NIfTI voxel data ({exc})") from exc


MAX_LABEL = 65535
"""Largest label value kept (labels are held as int32 and written exactly)."""
MAX_LABEL_COUNT = 255
"""More distinct values than this in a label map means an image was given where labels were expected."""


def label_array(array: np.ndarray, path) -> np.ndarray:
    """``array`` as int32 labels, or :class:`InputError` naming ``path``: integer values 0..65535 (floats
    must be whole numbers), at most :data:`MAX_LABEL_COUNT` distinct labels."""
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise InputError(f"{path}: label map holds NaN or inf values")
        if not np.allclose(array, np.round(array)):
            raise InputError(f"{path}: label map holds non-integer values; expected integer labels")
        array = np.round(array)
    labels = np.unique(array)
    if len(labels) - 1 > MAX_LABEL_COUNT:
        raise InputError(f"{path}: {len(labels) - 1} distinct label values (at most {MAX_LABEL_COUNT} "
                         "expected); is this an image rather than a label map?")
    if len(labels) and labels[0] < 0:
        raise InputError(f"{path}: label map holds negative values (min {labels[0]:g}); expected labels "
                         f"0..{MAX_LABEL}")
    if len(labels) and labels[-1] > MAX_LABEL:
        raise InputError(f"{path}: label value {labels[-1]:g} above {MAX_LABEL}; expected labels 0..{MAX_LABEL}")
    return array.astype(np.int32)


WRITABLE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
"""Label-map file types written (NIfTI, NRRD, MetaImage)."""


def check_writable(path: str | os.PathLike, inputs: dict | None = None) -> Path:
    """Fail early with :class:`InputError` when ``path`` cannot be written as a label map: its folder is
    missing or not writable, it is a folder, its extension is not one of :data:`WRITABLE_SUFFIXES`, or it is
    the same file (hard links too) as one of ``inputs`` (option name -> path; never overwrite an input)."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise InputError(f"{path}: output is a folder; expected a file name such as {path / 'segmentation.nii.gz'}")
    if not path.name.lower().endswith(WRITABLE_SUFFIXES):
        raise InputError(f"{path}: unknown output file type; expected one of {', '.join(WRITABLE_SUFFIXES)}")
    if not parent.is_dir():
        raise InputError(f"{path}: output folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"{path}: output path is not writable")
    for option, given in (inputs or {}).items():
        if given and same_file(path, given):
            raise InputError(f"{path}: output would overwrite the input {given} ({option}); choose another output "
                             "name")
    return path


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same file or folder (links followed; a missing path matches nothing)."""
    a, b = Path(a), Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def write_volume(volume: Volume, path: str | os.PathLike) -> Path:
    """Write ``volume`` atomically: to a temporary file beside ``path``, then rename over it."""
    path = check_writable(path)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=compound_suffix(path), dir=path.parent)
    os.close(handle)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; the result should be like any new file
        sitk.WriteImage(volume.to_sitk(), tmp, useCompression=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def require_same_grid(image: Volume, other: Volume, what: str) -> None:
    """Raise :class:`InputError` naming ``what`` when ``other`` is not on ``image``'s grid."""
    if not image.geometry.matches(other.geometry):
        raise InputError(f"{what}: grid differs from the image grid "
                         f"({image.geometry.describe_difference(other.geometry)})")
