"""Answer extraction and grading: letters or option text, gold answers in every format the files use; agreement of
the extractor with a person's reading on the corpus of model responses."""

import json
from pathlib import Path

import pytest

from llava.eval.agreement import agreement, format_table, main, read_corpus
from llava.eval.answers import extract_choice, gold_letter, grade_open, letter_options

OPTIONS = ["A. red", "B. green car", "C. blue"]
CORPUS = Path(__file__).parent / "data" / "extraction_corpus.jsonl"
STANDARD_CLASSES = ("plain_letter", "letter_period", "letter_paren", "letter_text", "answer_is", "option_text",
                    "explanation_then_choice", "refusal", "empty")


@pytest.mark.parametrize("response, choice", [
    ("B", "B"), ("B.", "B"), ("(C)", "C"), ("A. red", "A"), ("The answer is C.", "C"), ("Answer: B", "B"),
    ("green car", "B"), ("Blue.", "C"), ("It is the green car.", "B"),
    ("", None), ("A man walks", None), ("red or blue", None), ("the answer is a dog", None), ("D", None),
])
def test_extract_choice(response, choice):
    assert extract_choice(response, OPTIONS) == choice


@pytest.mark.parametrize("response, choice", [
    ("b", "B"), ("(b)", "B"), ("the answer is b", "B"), ("答案是B", "B"), ("选B", "B"), ("B。", "B"), ("（Ｂ）", "B"),
    ("**B**", "B"), ("B is correct.", "B"), ("B because the car is green.", "B"), ("I would say B.", "B"),
    ("Option C is incorrect because nothing is blue, so the answer is B.", "B"),
    ("Between C and B, I would choose B.", "B"), ("Neither A nor C is correct.", None), ("B is incorrect.", None),
    ("B or C", None), ("Both A and C", None), ("A. red\nB. green car\nC. blue", None), ("B. blue", None),
    ("The answer is C. Wait, no, it's B.", "B"), ("It is not red, it is the green car.", "B"),
])
def test_extract_choice_reads_as_a_person_reads(response, choice):
    assert extract_choice(response, OPTIONS) == choice


def test_an_option_text_that_starts_like_a_letter_is_that_option():
    options = ["A. A glass of water", "B. A bowl of soup", "C. A cup of tea"]
    assert extract_choice("Answer: A cup of tea", options) == "C"
    assert extract_choice("A.", options) == "A"
    garden = ["A. C is cutting the grass.", "B. C is watering the plants.", "C. C is sweeping the path."]
    assert extract_choice("C is watering the plants.", garden) == "B"
    assert extract_choice("C.", garden) == "C"


def test_the_corpus_reads_every_standard_format_right_and_agrees_overall():
    by_class, disagreements = agreement(read_corpus(CORPUS))
    assert sum(count for _, count in by_class.values()) >= 300
    assert set(STANDARD_CLASSES) <= set(by_class)
    wrong = [(row["class"], row["response"], extracted) for row, extracted in disagreements
             if row["class"] in STANDARD_CLASSES]
    assert not wrong, wrong
    agree, total = map(sum, zip(*by_class.values()))
    assert agree / total >= 0.95, format_table(by_class)


def test_the_agreement_command_prints_the_table_and_names_a_bad_row(tmp_path, capsys):
    corpus = tmp_path / "corpus.jsonl"
    rows = [{"class": "plain", "options": OPTIONS, "response": "B", "reading": "B"},
            {"class": "plain", "options": OPTIONS, "response": "B or C", "reading": "C"}]
    corpus.write_text("".join(json.dumps(row) + "\n" for row in rows))
    main([str(corpus)])
    out = capsys.readouterr().out
    assert "plain" in out and "50.0%" in out and "read C, extracted None: 'B or C'" in out
    corpus.write_text(json.dumps({**rows[0], "reading": "D"}) + "\n")
    with pytest.raises(SystemExit) as exit_:
        main([str(corpus)])
    assert exit_.value.code == 2
    assert f"{corpus}: row 1: reading 'D' is not one of the letters" in capsys.readouterr().err


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
