"""Answer metrics: hand-derived readings of model text and hand-computed summaries."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cotrain.metrics.answers import (classification_match, counting_summary, extract_choice, mcq_summary,
                                     normalise_answer, parse_count, vqa_match, yes_no_of, yes_no_summary)

CLASSES = ["forest", "river", "river bank", "bare soil", "parking lot", "industrial area"]


@pytest.mark.parametrize("a, b", [("Forest", "forest"), ("  bare soil. ", "bare soil"), ("bare_soil", "bare soil"),
                                  ("Parking-Lot", "parking lot"), ('"harbor"', "harbor"), ("a\t\n b", "a b")])
def test_normalise_answer_equal(a, b):
    assert normalise_answer(a) == b


@pytest.mark.parametrize("response, label, ok", [
    ("Forest.", "forest", True), ("bare_soil", "bare soil", True), ("Parking-Lot", "parking lot", True),
    ("forests", "forest", False), ("it is forest", "forest", False), ("", "forest", False),
    ("", "", False),  # an empty label never credits an empty response
])
def test_classification_strict(response, label, ok):
    assert classification_match(response, label) is ok
    assert classification_match(response, label, lenient=False, classes=CLASSES) is ok


@pytest.mark.parametrize("response, label, ok", [
    ("It is a forest.", "forest", True),
    ("This image shows a Parking-Lot with cars", "parking lot", True),
    ("forest or river", "forest", False),           # hedging between two classes is not credited
    ("forest or river", "river", False),
    ("forests", "forest", False),                   # whole words only, no stemming
    ("rainforest", "forest", False),
    ("a river bank", "river bank", True),            # "river" inside the label's own phrase is fine
    ("a river bank", "river", False),                # the response names the other class "river bank"
    ("the river, next to a river bank", "river bank", False),  # "river" outside the label phrase
    ("bare, soil", "bare soil", True),               # punctuation between words is not a word
    ("industrial areas", "industrial area", False),
    ("", "forest", False),
    ("FOREST!!!", "forest", True),
])
def test_classification_lenient(response, label, ok):
    assert classification_match(response, label, lenient=True, classes=CLASSES) is ok


def test_classification_lenient_without_classes_only_checks_the_label():
    assert classification_match("forest or river", "forest", lenient=True)
    assert not classification_match("forestry", "forest", lenient=True)


@pytest.mark.parametrize("response, answer, ok", [
    ("Yes", "yes", True), ("yes.", "yes", True), ("Yes, there is.", "yes", False), ("12", "12", True),
    ("12 ", 12, True), ("", "", False), ("residential", "Residential.", True),
])
def test_vqa_match_is_strict(response, answer, ok):
    assert vqa_match(response, answer) is ok


@pytest.mark.parametrize("text, out", [
    ("Yes", "yes"), ("yes.", "yes"), ("NO", "no"), ("Yes, there is one building.", "yes"),
    ("no, there are none", "no"), ("Yes, there is no building.", "yes"), ("yes!", "yes"), ("  No\n", "no"),
    ("I think yes", None), ("yes/no", None), ("Yes or no", None), ("no and yes", None), ("", None),
    ("yesterday", None), ("nope", None), ("Yes。", "yes"), ("«Yes»", "yes"), ("Not sure", None),
])
def test_yes_no_of(text, out):
    assert yes_no_of(text) == out


CHOICES = ["water", "forest", "urban", "bare soil"]


@pytest.mark.parametrize("text, idx", [
    ("B", 1), ("B.", 1), ("(C)", 2), ("C)", 2), ("D. bare soil", 3), ("D bare soil", 3), ("forest", 1),
    ("Bare soil", 3), ("", None), ("E", None), ("water or forest", None), ("Because", None),
    ("C and D", None), ("A. forest", None), ("B:", 1), ("b", None), ("nonsense", None),
])
def test_extract_choice(text, idx):
    assert extract_choice(text, CHOICES) == idx


def test_extract_choice_does_not_read_words_as_letters():
    choices = ["lake", "farm", "A river", "road", "x", "y", "z", "w", "I-beam"]
    assert extract_choice("A river", choices) == 2
    assert extract_choice("I am not sure", choices) is None
    assert extract_choice("I", choices) == 8


@pytest.mark.parametrize("text, n", [
    ("3", 3), ("3.", 3), ("three", 3), ("There are 3 planes.", 3), ("Three.", 3), ("none", 0), ("No", 0),
    ("zero", 0), ("There are no planes.", 0), ("nothing", 0), ("twenty-one", 21), ("twenty one ships", 21),
    ("twenty", 20), ("1,200 cars", 1200), ("3.0", 3), ("3 planes, 3 in total", 3), ("eleven", 11),
    ("(4)", 4), ("Answer: 7", 7), ("٣", None),  # non-ASCII digits are not read (Python's \d would)
])
def test_parse_count(text, n):
    assert parse_count(text) == n


@pytest.mark.parametrize("text", [
    "", "many", "2 or 3", "No, there are 3.", "-3", "There are -2 planes", "2.5", "a few", "1, 2", "3-4",
    "9" * 50, "b52", "one or two",
])
def test_parse_count_refuses(text):
    assert parse_count(text) is None


def test_counting_summary_hand_case():
    # truths 3, 0, 5, 2; answers 3 (exact), unparsed (truth 0), 4 (off by 1), unparsed (truth 2)
    out = counting_summary([3, None, 4, None], [3, 0, 5, 2])
    assert out["n"] == 4 and out["n_unparsed"] == 2 and out["parse_rate"] == 0.5
    assert out["exact"] == 0.25                              # unparsed answers are wrong, even on truth 0
    assert out["mae"] == pytest.approx((0 + 0 + 1 + 2) / 4)  # unparsed scored as the count 0
    assert out["rmse"] == pytest.approx(math.sqrt((0 + 0 + 1 + 4) / 4))
    assert out["mae_parsed"] == pytest.approx(0.5)
    assert out["rmse_parsed"] == pytest.approx(math.sqrt(0.5))


def test_counting_summary_edges():
    empty = counting_summary([], [])
    assert empty["n"] == 0 and empty["mae"] is None and empty["parse_rate"] is None
    none_parsed = counting_summary([None], [4])
    assert none_parsed["mae"] == 4.0 and none_parsed["mae_parsed"] is None and none_parsed["exact"] == 0.0
    with pytest.raises(ValueError, match="one entry per sample"):
        counting_summary([1, 2], [1])


def test_mcq_summary_hand_case():
    out = mcq_summary([1, None, 0, 2], [1, 1, 2, 2], [4, 4, 2, 5])
    assert out == {"accuracy": 0.5, "instruction_following": 0.75,
                   "chance": pytest.approx((0.25 + 0.25 + 0.5 + 0.2) / 4), "n": 4}
    assert mcq_summary([], [], [])["accuracy"] is None
    with pytest.raises(ValueError):
        mcq_summary([0], [0], [0])


def test_yes_no_summary_hand_case():
    out = yes_no_summary(["Yes.", "no", "maybe", "Yes, one", "No"], ["yes", "yes", "no", "Yes", "no"])
    assert out["accuracy"] == pytest.approx(3 / 5)
    assert out["neither"] == pytest.approx(1 / 5)
    assert out["majority_baseline"] == pytest.approx(3 / 5)
    assert out["n"] == 5
    with pytest.raises(ValueError, match="vqa_match"):
        yes_no_summary(["yes"], ["3"])


_TEXT = st.one_of(st.text(max_size=200), st.text(alphabet="0123456789,.- abcnoyesABCD()", max_size=200),
                  st.binary(max_size=100).map(lambda b: b.decode("utf-8", "replace")))


@settings(max_examples=300, deadline=None)
@given(_TEXT, st.lists(st.text(max_size=12), min_size=1, max_size=6))
def test_text_functions_never_raise(text, classes):
    normalise_answer(text)
    classification_match(text, classes[0])
    classification_match(text, classes[0], lenient=True, classes=classes)
    vqa_match(text, classes[0])
    assert yes_no_of(text) in (None, "yes", "no")
    idx = extract_choice(text, classes)
    assert idx is None or 0 <= idx < len(classes)
    n = parse_count(text)
    assert n is None or (isinstance(n, int) and n >= 0)


def test_very_long_responses_are_fast_and_do_not_raise():
    import time

    long_texts = ["9" * 100_000, "yes " * 50_000, "forest, " * 30_000, "1,000," * 20_000, "- " * 100_000,
                  "\u202e\u0000" * 50_000]
    start = time.perf_counter()
    for t in long_texts:
        normalise_answer(t)
        classification_match(t, "forest", lenient=True, classes=CLASSES)
        yes_no_of(t)
        extract_choice(t, CHOICES)
        parse_count(t)
    assert time.perf_counter() - start < 10
    assert parse_count("9" * 100_000) is None  # beyond any count (and Python's int() digit limit)


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
