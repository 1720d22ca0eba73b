"""Answer normalisation, option extraction and box IoU, through the stable re-exports of cotrain.evaluation."""

import pytest

from cotrain.evaluation import box_iou, extract_choice, normalise_answer


@pytest.mark.parametrize("a, b", [
    ("Forest", "forest"), ("  bare soil. ", "bare soil"), ("bare_soil", "bare soil"), ("Parking-Lot", "parking lot"),
    ('"harbor"', "harbor"),
])
def test_normalise_equal(a, b):
    assert normalise_answer(a) == normalise_answer(b)


@pytest.mark.parametrize("a, b", [("forest", "forests"), ("", "forest"), ("forest area", "forest"),
                                  ("it is forest", "forest")])
def test_normalise_strict(a, b):
    # strict: no "contains" leniency, an empty answer never matches
    assert normalise_answer(a) != normalise_answer(b)


CHOICES = ["water", "forest", "urban", "bare soil"]


@pytest.mark.parametrize("text, idx", [
    ("B", 1), ("B.", 1), ("(C)", 2), ("C)", 2), ("D. bare soil", 3), ("D bare soil", 3), ("forest", 1),
    ("Bare soil", 3), ("", None), ("E", None), ("water or forest", None), ("Because", None),
    ("nonsense", None), ("C and D", None), ("A. forest", None), ("B:", 1),
])
def test_extract_choice(text, idx):
    assert extract_choice(text, CHOICES) == idx


def test_extract_choice_does_not_read_words_as_letters():
    choices = ["lake", "farm", "A river", "road", "x", "y", "z", "w", "I-beam"]
    assert extract_choice("A river", choices) == 2  # the option text, not letter A
    assert extract_choice("I am not sure", choices) is None  # not option I
    assert extract_choice("I", choices) == 8


def test_box_iou_hand_cases():
    a = {"hbb": [0, 0, 10, 10]}
    assert box_iou(a, a) == pytest.approx(1.0)
    # half overlap: inter 50, union 150
    assert box_iou(a, {"hbb": [5, 0, 15, 10]}) == pytest.approx(50 / 150)
    assert box_iou(a, {"hbb": [20, 20, 30, 30]}) == 0.0
    # a square rotated 45 degrees inside the 10x10 box: diamond area 50, all inside -> IoU 0.5
    diamond = {"quad": [5, 0, 10, 5, 5, 10, 0, 5]}
    assert box_iou(a, diamond) == pytest.approx(0.5)
    # vertex order does not matter: a bow-tie listing of the same square is the same box
    assert box_iou(a, {"quad": [0, 0, 10, 10, 10, 0, 0, 10]}) == pytest.approx(1.0)
    # degenerate boxes score 0 instead of raising
    assert box_iou(a, {"quad": [1, 1, 1, 1, 1, 1, 1, 1]}) == 0.0
