"""Options, gold answers and answer extraction: a model may answer with the letter or with the option text."""

import re
import string

_OPTION = re.compile(r"^\s*\(?([A-Z])\s*[\.\):]\s*(.*)$", re.DOTALL)
_LEADING_LETTER = re.compile(r"^\s*[\(\[]?([A-Z])(?:[\)\]\.:,]|\s*$)")
_STATED_LETTER = re.compile(r"(?i:answer|option|choice)\s*(?i:is|:)?\s*[\(\[]?([A-Z])\b")
_PUNCTUATION = str.maketrans({c: " " for c in string.punctuation})


def letter_options(options) -> list[str]:
    """Option strings as "A. text": kept as they are when already lettered, lettered A, B, ... otherwise."""
    options = [str(option) for option in options]
    if all(_OPTION.match(option) for option in options):
        return options
    return [f"{chr(ord('A') + i)}. {option}" for i, option in enumerate(options)]


def split_option(option: str) -> tuple[str, str]:
    """"B. red" (or "B.red", "(B) red") -> ("B", "red")."""
    match = _OPTION.match(option)
    if not match:
        raise ValueError(f"option {option!r} does not start with a letter such as 'A.'")
    return match.group(1), match.group(2).strip()


def gold_letter(answer: str, options: list[str]) -> str:
    """The gold answer as a letter: given as a letter, as the full option ("D. text") or as the option text."""
    answer = str(answer).strip()
    letters = dict(split_option(option) for option in options)
    if answer in letters:
        return answer
    for letter, text in letters.items():
        if answer in (f"{letter}. {text}", f"{letter}.{text}") or normalize(answer) == normalize(text):
            return letter
    raise ValueError(f"answer {answer!r} is neither a letter nor the text of one of the options {options}")


def normalize(text: str) -> str:
    """Lower case, punctuation to spaces, single spaces."""
    return " ".join(str(text).lower().translate(_PUNCTUATION).split())


def extract_choice(response: str, options: list[str]) -> str | None:
    """The letter a free-form response picks, or None when it picks none (or several) of `options`.

    Accepts "B", "B.", "(B)", "B. red", "The answer is B", and the option text alone ("red").
    """
    letters = dict(split_option(option) for option in options)
    match = _LEADING_LETTER.match(response)
    if match and match.group(1) in letters:
        return match.group(1)
    match = _STATED_LETTER.search(response)
    if match and match.group(1) in letters:
        return match.group(1)
    said = f" {normalize(response)} "
    if not said.strip():
        return None
    exact = [letter for letter, text in letters.items() if normalize(text) == said.strip()]
    if exact:
        return exact[0]
    mentioned = [letter for letter, text in letters.items() if normalize(text) and f" {normalize(text)} " in said]
    return mentioned[0] if len(mentioned) == 1 else None


def grade_multiple_choice(response: str, options: list[str], gold: str) -> dict:
    """{"choice": letter or None, "correct": bool}; an unextractable answer is wrong."""
    choice = extract_choice(response, options)
    return {"choice": choice, "correct": choice == gold}


def grade_open(response: str, gold: str) -> dict:
    """Open-ended answer against a short gold answer.

    yes/no gold: the first word must be that yes/no (`choice` is None when the response starts with neither).
    Otherwise `correct` is exact match after `normalize`; `relaxed` is true when the gold phrase occurs as whole
    words in the response.
    """
    said, gold = normalize(response), normalize(gold)
    if gold in ("yes", "no"):
        first = said.split(" ", 1)[0]
        choice = first if first in ("yes", "no") else None
        return {"choice": choice, "correct": choice == gold, "relaxed": choice == gold}
    return {
        "choice": said or None,
        "correct": said == gold,
        "relaxed": bool(gold) and f" {gold} " in f" {said} ",
    }


def grade_record(record: dict) -> dict:
    """`choice` / `correct` (and `relaxed` for open answers) of a record, from its `response`, `options`, gold
    `answer`, `scored` and `error`: the harness grades with it when writing, the scorer re-grades with it."""
    if not record["scored"]:
        return {"choice": None, "correct": None}
    if record["error"]:
        return {"choice": None, "correct": False}
    if record["options"]:
        return grade_multiple_choice(record["response"], record["options"], record["answer"])
    return grade_open(record["response"], record["answer"])
