"""Tests of MedAdaptSlicerLib.regions."""

import numpy as np

import slicer_fixtures  # noqa: F401  (puts MedAdaptSlicer on sys.path)
from MedAdaptSlicerLib.regions import crop, paste
from medadapt.io.volume import Geometry, Volume


def test_crop_keeps_world_positions_and_paste_restores_placement():
    rotation = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    volume = Volume(np.arange(5 * 6 * 7).reshape(5, 6, 7), Geometry((7, 6, 5), (0.5, 1.0, 3.0), (1, 2, 3), rotation))
    part = crop(volume, (1, 2, 3), (3, 4, 6))
    assert part.array.shape == (3, 3, 4) and part.array[0, 0, 0] == volume.array[1, 2, 3]
    np.testing.assert_allclose(part.geometry.index_to_world((0, 0, 0)), volume.geometry.index_to_world((3, 2, 1)))
    full = paste(volume.array.shape, part.array, (1, 2, 3))
    np.testing.assert_array_equal(full[1:4, 2:5, 3:7], part.array)
    assert full.sum() == part.array.sum()


def test_crop_grid_moves_a_remote_grid_as_crop_moves_the_core_geometry():
    from MedAdaptSlicerLib.conversion import Grid
    from MedAdaptSlicerLib.regions import box, crop_grid
    rotation = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    geometry = Geometry((7, 6, 5), (0.5, 1.0, 3.0), (1, 2, 3), rotation)
    part = crop(Volume(np.zeros((5, 6, 7)), geometry), (1, 2, 3), (3, 4, 6))
    grid = crop_grid(Grid(geometry.size, geometry.spacing, geometry.origin, geometry.direction), (1, 2, 3), (3, 4, 6))
    assert isinstance(grid, Grid) and (grid.size, grid.origin) == (part.geometry.size, part.geometry.origin)
    assert box((1, 2, 3), (3, 3, 4)) == (slice(1, 4), slice(2, 5), slice(3, 7))
