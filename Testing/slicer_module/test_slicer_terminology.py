"""Tests of MedAdaptSlicerLib.terminology: task names to SNOMED CT terminology and colours (the most specific
table entry wins), unknown names left with Slicer's default terminology
and given colours of their own, and tags Slicer reads back."""

import pytest
import slicer

from slicer_fixtures import make_scene
from MedAdaptSlicerLib import terminology


@pytest.mark.parametrize("name, code", [("kidney_right", "9846003"), ("Kidney-Left", "18639004"),
                                        ("kidney", "64033007"), ("lung_left", "44029006"),
                                        ("right lung", "3341006"), ("hippocampus_anterior", "5300000"),
                                        ("spinal_cord", "2748008"), ("liver", "10200004"), ("GTV", "108369006"),
                                        ("enhancing_tumor", "108369006"), ("peritumoral_oedema", "267038008")])
def test_the_most_specific_entry_whose_words_all_occur_wins(name, code):
    assert terminology.term_for(name).type[0] == code


def test_unknown_names_get_no_term_and_distinct_colours():
    assert terminology.term_for("pancreas") is None and terminology.term_for("cord") is None
    colours = [terminology.colour_for(f"structure{n}", n) for n in range(8)]
    assert len({tuple(round(c, 3) for c in colour) for colour in colours}) == 8
    assert all(0 <= c <= 1 for colour in colours for c in colour)
    assert terminology.colour_for("liver", 3) == pytest.approx((221 / 255, 130 / 255, 101 / 255))


def test_segments_get_a_tag_slicer_reads_back_and_unknown_ones_keep_the_default():
    mrml, _, _ = make_scene()
    node = mrml.AddNewNodeByClass("vtkMRMLSegmentationNode")
    segmentation = node.GetSegmentation()
    kidney = segmentation.GetSegment(segmentation.AddEmptySegment("", "kidney_right"))
    terminology.describe_segment(kidney, "kidney_right", 0)
    entry = slicer.vtkSlicerTerminologyEntry()
    assert slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(kidney.GetTerminology(), entry)
    assert entry.GetTerminologyContextName() == terminology.CONTEXT
    assert (entry.GetCategoryObject().GetCodingSchemeDesignator(), entry.GetCategoryObject().GetCodeValue(),
            entry.GetCategoryObject().GetCodeMeaning()) == ("SCT", "123037004", "Anatomical Structure")
    assert (entry.GetTypeObject().GetCodeValue(), entry.GetTypeObject().GetCodeMeaning()) == ("9846003",
                                                                                              "Right kidney")
    assert kidney.GetColor() == pytest.approx((185 / 255, 102 / 255, 83 / 255))
    other = segmentation.GetSegment(segmentation.AddEmptySegment("", "pancreas"))
    default = other.GetTerminology()  # what Slicer gives every new segment (generic "Tissue")
    terminology.describe_segment(other, "pancreas", 1)
    assert other.GetTerminology() == default and "85756007" in default
    assert other.GetColor() == pytest.approx(terminology.colour_for("pancreas", 1))
    mrml.Clear(1)
