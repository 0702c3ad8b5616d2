"""Volume I/O: formats, geometry round-trips, bad files, atomic writes."""

import os

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import ANISOTROPIC_SPACING, OBLIQUE_DIRECTION, oblique_image

from medadapt.errors import InputError
from medadapt.io.volume import Volume, read_volume, require_same_grid, write_volume


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_round_trip_keeps_voxels_and_oblique_anisotropic_geometry(tmp_path, suffix):
    array = np.random.default_rng(0).integers(-1000, 1000, (7, 9, 11)).astype(np.int16)
    path = tmp_path / f"image{suffix}"
    sitk.WriteImage(oblique_image(array), str(path))
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.array, array)
    np.testing.assert_allclose(volume.geometry.spacing, ANISOTROPIC_SPACING, atol=1e-5)
    np.testing.assert_allclose(volume.geometry.direction, OBLIQUE_DIRECTION, atol=1e-5)
    again = read_volume(write_volume(volume, tmp_path / f"copy{suffix}"))
    assert again.geometry.matches(volume.geometry)
    np.testing.assert_array_equal(again.array, array)


def test_world_index_mapping_matches_simpleitk():
    image = oblique_image(np.zeros((5, 6, 7), np.int16))
    volume = Volume.from_sitk(image)
    index = (2.0, 3.5, 1.0)
    world = volume.geometry.index_to_world(index)
    np.testing.assert_allclose(world, image.TransformContinuousIndexToPhysicalPoint(index), atol=1e-6)
    np.testing.assert_allclose(volume.geometry.world_to_index(world), index, atol=1e-6)


def test_dicom_series_folder_is_read_with_its_geometry(tmp_path):
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 0.9, 2.0))
    image.SetOrigin((10.0, -5.0, 3.0))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for z in range(array.shape[0]):
        slice_image = image[:, :, z]
        position = image.TransformIndexToPhysicalPoint((0, 0, z))
        for tag, value in (("0020|0032", "\\".join(map(str, position))),
                           ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0020|0013", str(z)),
                           ("0028|0030", "0.9\\0.7"), ("0020|000e", "1.2.3.4.5"), ("0008|0060", "CT")):
            slice_image.SetMetaData(tag, value)
        writer.SetFileName(str(tmp_path / f"slice{z:03d}.dcm"))
        writer.Execute(slice_image)
    volume = read_volume(tmp_path)
    np.testing.assert_array_equal(volume.array, array)
    np.testing.assert_allclose(volume.geometry.spacing, (0.7, 0.9, 2.0), atol=1e-4)
    np.testing.assert_allclose(volume.geometry.origin, (10.0, -5.0, 3.0), atol=1e-4)


def test_two_d_and_four_d_images_are_rejected_with_the_file_name(tmp_path):
    flat = tmp_path / "flat.nii.gz"
    sitk.WriteImage(sitk.Image(8, 8, sitk.sitkInt16), str(flat))
    with pytest.raises(InputError, match="flat.nii.gz: expected a 3D image, got 2D"):
        read_volume(flat)
    movie = tmp_path / "movie.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 4, 5), np.int16), isVector=False), str(movie))
    with pytest.raises(InputError, match="movie.nii.gz: expected a 3D image, got 4D"):
        read_volume(movie)


def test_nan_voxels_and_truncated_files_are_rejected(tmp_path):
    array = np.zeros((3, 4, 5), np.float32)
    array[1, 2, 3] = np.nan
    bad = tmp_path / "nan.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(bad))
    with pytest.raises(InputError, match="nan.nrrd: image holds 1 NaN or inf"):
        read_volume(bad)
    noise = np.random.default_rng(1).integers(0, 1000, (20, 20, 20)).astype(np.int16)
    for name in ("good.nii", "good.nii.gz", "good.nrrd"):
        sitk.WriteImage(sitk.GetImageFromArray(noise), str(tmp_path / name))
        data = (tmp_path / name).read_bytes()
        truncated = tmp_path / f"truncated_{name}"
        truncated.write_bytes(data[:len(data) * 2 // 3])
        with pytest.raises(InputError, match=f"truncated_{name}: unreadable or truncated"):
            read_volume(truncated)


def test_grid_mismatch_names_the_field():
    a = Volume.from_sitk(oblique_image(np.zeros((3, 4, 5), np.int16)))
    b = Volume.from_sitk(oblique_image(np.zeros((3, 4, 5), np.int16), spacing=(0.8, 1.1, 3.0)))
    with pytest.raises(InputError, match="labels.nii: grid differs from the image grid \\(spacing"):
        require_same_grid(a, b, "labels.nii")


def test_failed_write_leaves_no_partial_file_and_unwritable_path_is_an_input_error(tmp_path, monkeypatch):
    volume = Volume.from_sitk(oblique_image(np.zeros((3, 4, 5), np.int16)))
    with pytest.raises(InputError, match="unknown output file type"):
        write_volume(volume, tmp_path / "out.unknownformat")

    def broken_writer(image, name, **options):
        with open(name, "wb") as handle:
            handle.write(b"half a file")
        raise RuntimeError("disk full")
    monkeypatch.setattr(sitk, "WriteImage", broken_writer)
    with pytest.raises(RuntimeError, match="disk full"):
        write_volume(volume, tmp_path / "out.nii.gz")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []
    with pytest.raises(InputError, match="does not exist"):
        write_volume(volume, tmp_path / "missing" / "out.nii.gz")
