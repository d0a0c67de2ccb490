"""Answer extraction and grading: letters or option text, gold answers in every format the files use."""

import pytest

from llava.eval.answers import extract_choice, gold_letter, grade_open, letter_options

OPTIONS = ["A. red", "B. green car", "C. blue"]


@pytest.mark.parametrize("response, choice", [
    ("B", "B"), ("B.", "B"), ("(C)", "C"), ("A. red", "A"), ("The answer is C.", "C"), ("Answer: B", "B"),
    ("green car", "B"), ("Blue.", "C"), ("It is the green car.", "B"),
    ("", None), ("A man walks", None), ("red or blue", None), ("the answer is a dog", None), ("D", None),
])
def test_extract_choice(response, choice):
    assert extract_choice(response, OPTIONS) == choice


def test_gold_letter_and_lettering():
    assert gold_letter("B", OPTIONS) == "B"
    assert gold_letter("C. blue", OPTIONS) == "C"
    assert gold_letter("B.green car", ["A.red", "B.green car"]) == "B"
    assert gold_letter("red", OPTIONS) == "A"
    with pytest.raises(ValueError, match="neither a letter"):
        gold_letter("purple", OPTIONS)
    assert letter_options(["x", "y"]) == ["A. x", "B. y"]
    assert letter_options(OPTIONS) == OPTIONS


def test_grade_open():
    assert grade_open("Yes, indoors.", "yes") == {"choice": "yes", "correct": True, "relaxed": True}
    assert grade_open("Maybe", "no")["choice"] is None
    assert grade_open("Black.", "black")["correct"] is True
    outcome = grade_open("a black dog", "black")
    assert outcome["correct"] is False and outcome["relaxed"] is True
    assert grade_open("blackish", "black")["relaxed"] is False
