"""Exemplars: painted slices, slice axis, overrides and bad annotations."""

import numpy as np
import pytest
from conftest import oblique_image

from medadapt.errors import InputError
from medadapt.io.exemplars import find_exemplars, parse_axis, parse_slices
from medadapt.io.points import read_points
from medadapt.io.volume import Volume


def _volumes(labels: np.ndarray):
    image = Volume.from_sitk(oblique_image(np.zeros(labels.shape, np.int16)))
    return image, image.with_array(labels.astype(np.int16))


def test_axis_is_the_one_with_fewest_painted_slices_and_background_there_is_known():
    labels = np.zeros((20, 30, 40), np.int16)
    labels[2:18, 7, 5:30] = 1      # painted in a coronal view (array axis 1)
    labels[2:18, 21, 10:20] = 2
    labels[2:10, 21, 25:30] = 1
    exemplars = find_exemplars(*_volumes(labels))
    assert exemplars.axis == 1
    assert exemplars.slices == [7, 21]
    assert exemplars.label_slices == {1: [7, 21], 2: [21]}
    assert exemplars.negative_slices(2) == [7]
    assert exemplars.slice_mask(2, 21).sum() == 16 * 10


def test_slices_and_axis_override_a_full_labelmap():
    labels = np.zeros((20, 30, 40), np.int16)
    labels[3:15, 10:20, 10:20] = 4
    exemplars = find_exemplars(*_volumes(labels), axis=parse_axis("z"), slices=parse_slices("4,9,16"))
    assert (exemplars.axis, exemplars.slices) == (0, [4, 9])
    kept = exemplars.labelmap.array
    assert kept[4].any() and not kept[5].any() and kept.sum() == 2 * 4 * 100


def test_bad_annotations_give_clear_errors():
    empty = np.zeros((5, 6, 7), np.int16)
    with pytest.raises(InputError, match="LABELS: no annotated slice"):
        find_exemplars(*_volumes(empty), source="LABELS")
    labels = empty.copy()
    labels[2, 2:4, 2:4] = 1
    with pytest.raises(InputError, match=r"label\(s\) \[3\] not found; labels present: \[1\]"):
        find_exemplars(*_volumes(labels), labels=[3])
    with pytest.raises(InputError, match="no annotated slice among \\[0, 1\\]"):
        find_exemplars(*_volumes(labels), axis=0, slices=[0, 1])
    with pytest.raises(InputError, match="--slices: \\[9\\] outside 0..4"):
        find_exemplars(*_volumes(labels), axis=0, slices=[9])
    with pytest.raises(InputError, match="--axis"):
        parse_axis("w")


def test_point_prompts_in_ras_lps_and_voxel_coordinates_land_on_the_same_voxel(tmp_path):
    image, _ = _volumes(np.zeros((10, 12, 14), np.int16))
    ijk = np.array([3, 5, 7])
    lps = image.geometry.index_to_world(ijk)
    for system, position in (("LPS", lps), ("RAS", lps * [-1, -1, 1]), ("voxel", ijk)):
        path = tmp_path / f"{system}.json"
        path.write_text('{"coordinates": "%s", "points": [{"position": %s, "positive": false, "label": 2}]}'
                        % (system, list(map(float, position))))
        (point,) = read_points(path, image.geometry)
        assert point.index_zyx == (7, 5, 3) and not point.positive and point.label == 2
    outside = tmp_path / "outside.json"
    outside.write_text('{"coordinates": "voxel", "points": [{"position": [30, 0, 0]}]}')
    with pytest.raises(InputError, match="outside.json: point 0 .* lies outside the image"):
        read_points(outside, image.geometry)
