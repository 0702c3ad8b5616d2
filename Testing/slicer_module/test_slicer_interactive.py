"""Interactive prompt mode on a real scan: segment one slice from a click + ROI, then propagate."""

import numpy as np

from slicer_fixtures import (add_roi, add_segmentation, crop_slices, dice, load_ct, needs_ct,  # noqa: F401
                             reference_labels, scene, segment_arrays)
from MedAdaptSlicerLib.conversion import volume_from_node
from medadapt.slices.session import SliceSession
from MedAdaptSlicerLib.jobs import SynchronousRunner
from MedAdaptSlicerLib.logic import MedAdaptLogic
from MedAdaptSlicerLib.results import preview_name
from medadapt.io.intensity import intensity_window
from medadapt.io.points import PointPrompt

START, STOP = 19, 22  # three slices of the liver


@needs_ct
def test_click_and_roi_segment_a_slice_then_propagate(scene):
    mrml, logics = scene
    volume = load_ct(logics)
    crop_slices(volume, START, STOP)
    liver = (reference_labels() == 5)[START:STOP]
    segmentation = add_segmentation(mrml, volume, {"liver": np.zeros_like(liver, np.uint8)})
    rows, cols = np.nonzero(liver[1])
    # LiteMedSAM is a box-prompted model: the ROI drives the slice; the slice index comes from the ROI.
    roi = add_roi(mrml, volume, (1, rows.min(), cols.min()), (1, rows.max(), cols.max()))
    logic = MedAdaptLogic(SynchronousRunner())
    index = logic.update_slice(volume, segmentation, "liver", None, None, roi, device="cpu")
    assert index == 1
    preview = segment_arrays(segmentation, volume)[preview_name("liver")]
    assert not preview[[0, 2]].any()
    assert dice(preview[1], liver[1]) > 0.8
    job = logic.start_propagate(volume, segmentation, "liver", index, device="cpu")
    assert job.state == "done", job.error
    preview = segment_arrays(segmentation, volume)[preview_name("liver")]
    assert preview[[0, 2]].any() and dice(preview, liver) > 0.7


@needs_ct
def test_slice_session_caches_embeddings(scene):
    mrml, logics = scene
    volume = load_ct(logics)
    crop_slices(volume, START, START + 1)
    image = volume_from_node(volume)
    session = SliceSession(MedAdaptLogic().base_backend("cpu"), image, 0, intensity_window(image.array))
    liver = (reference_labels() == 5)[START]
    rows, cols = np.nonzero(liver)
    box = ((0, rows.min(), cols.min()), (0, rows.max(), cols.max()))
    first = session.segment_slice(0, [], box)
    cached = session.model.embedding(0)
    second = session.segment_slice(0, [PointPrompt((0, int(rows.mean()), int(cols.mean())), True)], box)
    assert session.model.embedding(0) is cached and dice(first, liver) > 0.8 and second.any()
    assert session.matches(session.model.backend, image, 0) and not session.matches(session.model.backend, image, 1)
