"""Slicer terminology (SNOMED CT codes) and colours for segments named after a task of a universal model.

Rule: a task name is split into words at '_', '-' and spaces and lower-cased; of the table's entries whose words
all occur among the name's words, the most specific (the most words; the first listed on a tie) wins:
"kidney_right" is the right kidney, "lung_left" the left lung, "hippocampus_anterior" the hippocampus, "GTV"
a neoplasm. A name no entry matches gets no terminology tag of ours (the segment keeps the generic one Slicer gives
every new segment) and a colour of its own: the hue steps by the golden ratio with the task's position, so
neighbouring tasks differ clearly.
"""

from __future__ import annotations

import colorsys
import re
from dataclasses import dataclass

CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
SCHEME = "SCT"
ANATOMY = ("123037004", "Anatomical Structure")
ALTERED = ("49755003", "Morphologically Altered Structure")


@dataclass(frozen=True)
class Term:
    """A table entry: the words a task name must hold, the SNOMED CT category and type (code, meaning) and the
    colour (0-255 RGB)."""

    words: tuple[str, ...]
    category: tuple[str, str]
    type: tuple[str, str]
    colour: tuple[int, int, int]


NEOPLASM, NEOPLASM_COLOUR = ("108369006", "Neoplasm"), (144, 238, 144)
EDEMA, EDEMA_COLOUR = ("267038008", "Edema"), (250, 200, 80)

TABLE = (
    Term(("liver",), ANATOMY, ("10200004", "Liver"), (221, 130, 101)),
    Term(("spleen",), ANATOMY, ("78961009", "Spleen"), (157, 108, 162)),
    Term(("kidney",), ANATOMY, ("64033007", "Kidney"), (185, 102, 83)),
    Term(("kidney", "right"), ANATOMY, ("9846003", "Right kidney"), (185, 102, 83)),
    Term(("kidney", "left"), ANATOMY, ("18639004", "Left kidney"), (212, 126, 104)),
    Term(("stomach",), ANATOMY, ("69695003", "Stomach"), (216, 132, 105)),
    Term(("lung",), ANATOMY, ("39607008", "Lung"), (197, 165, 145)),
    Term(("lung", "left"), ANATOMY, ("44029006", "Left lung"), (172, 138, 118)),
    Term(("lung", "right"), ANATOMY, ("3341006", "Right lung"), (197, 165, 145)),
    Term(("spinal", "cord"), ANATOMY, ("2748008", "Spinal cord"), (244, 214, 49)),
    Term(("hippocampus",), ANATOMY, ("5300000", "Hippocampus"), (220, 216, 20)),
    *(Term((word,), ALTERED, NEOPLASM, NEOPLASM_COLOUR) for word in ("tumour", "tumor", "enhancing", "gtv")),
    *(Term((word,), ALTERED, EDEMA, EDEMA_COLOUR) for word in ("edema", "oedema")),
)
"""Task-name words -> terminology; more specific entries (more words) win over their general ones."""

GOLDEN = 0.618033988749895


def words_of(name: str) -> set[str]:
    """The lower-cased words of a task name, split at '_', '-' and spaces."""
    return {word for word in re.split(r"[_\-\s]+", name.lower()) if word}


def term_for(name: str) -> Term | None:
    """The most specific table entry whose words all occur in ``name``, or ``None``."""
    words = words_of(name)
    matches = [term for term in TABLE if set(term.words) <= words]
    return max(matches, key=lambda term: len(term.words), default=None)


def colour_for(name: str, position: int) -> tuple[float, float, float]:
    """Segment colour (0-1 RGB) of task ``name``, the ``position``-th task segmented: the table's colour, else a
    golden-ratio hue step per position."""
    term = term_for(name)
    if term is not None:
        return tuple(channel / 255 for channel in term.colour)
    return colorsys.hsv_to_rgb((0.1 + position * GOLDEN) % 1.0, 0.65, 0.9)


def terminology_text(term: Term) -> str:
    """``term`` serialized as Slicer's segment terminology tag value."""
    import slicer
    entry = slicer.vtkSlicerTerminologyEntry()
    entry.SetTerminologyContextName(CONTEXT)
    for code, (value, meaning) in ((entry.GetCategoryObject(), term.category), (entry.GetTypeObject(), term.type)):
        code.SetCodingSchemeDesignator(SCHEME)
        code.SetCodeValue(value)
        code.SetCodeMeaning(meaning)
    return slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(entry)


def describe_segment(segment, name: str, position: int) -> None:
    """Give ``segment`` (a ``vtkSegment`` for task ``name``, the ``position``-th segmented) its colour and, when
    the table knows the name, its terminology tag (otherwise its tag is left as it is)."""
    import slicer
    segment.SetColor(*colour_for(name, position))
    term = term_for(name)
    if term is not None:
        segment.SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), terminology_text(term))
