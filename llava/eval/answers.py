"""Options, gold answers and answer extraction: a model may answer with the letter or with the option text."""

import re
import string
import unicodedata

_OPTION = re.compile(r"^\s*\(?([A-Z])\s*[\.\):]\s*(.*)$", re.DOTALL)
_PUNCTUATION = str.maketrans({c: " " for c in string.punctuation})

# Reading a response (see `extract_choice`). Full-width forms are folded by NFKC; these CJK marks are not.
_FOLD = str.maketrans({"。": ".", "、": ",", "【": "[", "】": "]", "「": '"', "」": '"', "“": '"', "”": '"',
                       "‘": "'", "’": "'"})
# Markdown emphasis and code marks anywhere; headings, quotes, bullets and list numbers at the start of a line.
_MARKUP = re.compile(r"\*\*|__|`|^[^\S\n]*(?:#+|>|[-*•]|\d+[.)])[^\S\n]+", re.MULTILINE)
# Words after which the answer follows: "the answer is", "Answer:", "I would choose", "I'd say", "答案是", "选".
_CUE = re.compile(r"""
    (?:answer|option|choice)(?:\s+(?:is|would\s+be|should\s+be|will\s+be|must\s+be|seems\s+to\s+be))?\s*[:=]
  | (?:answer|option|choice)\s+(?:is|would\s+be|should\s+be|will\s+be|must\s+be|seems\s+to\s+be)\b
  | \b(?:correct|right|best)\s+\w+\s+(?:is|would\s+be)\b
  | \b(?:choose|chose|select|pick|go\s+with|opt\s+for|would\s+say|I'd\s+say|I\s+think|believe|guess(?:\s+is)?
       |probably|likely|looks\s+like|seems\s+(?:to\s+be|like)|it's|it\s+is|must\s+be|therefore|thus|hence|so)\b
  | 答案(?:应该)?(?:是|为)? | 选项 | 选择? | 应该是 | 认为是 | 是
""", re.IGNORECASE | re.VERBOSE)
_FILLER = re.compile(r"[\s:=,\"'(\[]*(?:(?:option|choice|letter)\b[\s:\"'(\[]*)?", re.IGNORECASE)
_THE = re.compile(r"the\s+", re.IGNORECASE)
# A verdict after a letter: "B is correct", "(B) would be the best", "B: correct", "B是正确的".
_VERDICT = re.compile(r"\s+(?:is|would\s+be|seems(?:\s+to\s+be)?|appears(?:\s+to\s+be)?|looks)\s+(?:the\s+)?"
                      r"(?:correct|right|best|most|true|accurate|answer)\b|\s*[:\-–]\s*(?:correct|right)\b"
                      r"|\s*(?:选项)?是?(?:正确|对)", re.IGNORECASE)
_REASON = re.compile(r"\s+(?:because|since|as|based|given|due)\b", re.IGNORECASE)
_LETTER = re.compile(r"([(\[])?([A-Za-z])(?![A-Za-z0-9])(?(1)[)\]]|)")
_LETTER_ANYWHERE = re.compile(r"(?<![A-Za-z0-9])(?<![A-Za-z]')" + _LETTER.pattern)  # not the s of "it's"
_HARD_END = re.compile(r"\s*$|\s*\(|[.,;:!?)\]'\"\n]|[^\x00-\x7f]")
_AFTER_LETTER = re.compile(r"[\s.:()\]\-–]*")
_PAREN_LETTER = re.compile(r"\s*[(\[]([A-Za-z])[)\]]")
_SECOND_LETTER = re.compile(r"\s*(?:,|/|&|\bor\b|\band\b|或|和)\s*(?:option\s+|choice\s+)?\(?([A-Za-z])(?![A-Za-z0-9])",
                            re.IGNORECASE)
_NEGATED = re.compile(r"(?:(?:\bnot|n't|\bnor|\bneither|不|非)\W*|\bno\s+)(?:\w+\W+)?$", re.IGNORECASE)
_NEGATED_CUE = re.compile(r"(?:\bnot|n't|不)\s*$", re.IGNORECASE)
_REFUSAL = re.compile(r"sorry|\bunable\b|\bcannot\b|can't|not (?:possible|clear|enough|shown|visible)|"
                      r"no (?:information|way)|impossible|无法|不能", re.IGNORECASE)
_WORD = re.compile(r"[^\W_]+")
_SENTENCE_START = re.compile(r"^|\n|[.!?]\s+")
_OPENING = re.compile(r"[\s\"'(\[]*(?:(?:option|choice)\s+)?", re.IGNORECASE)


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
    """The letter of the option a free-form response picks, read as a person reads it; None when it picks none.

    A pick is stated by a letter ("B", "(b)", "B. text", "**B**", "B。"), by an option's text ("green car"), after
    words that give the answer ("The answer is B", "Answer: A cup of tea", "I would choose B", "答案是B", "选B") or
    before a verdict ("B is correct", "B because ..."). The last statement wins, so a conclusion after a comparison
    or an elimination counts. A statement naming two options ("B or C"), a letter whose text is another option's
    ("B. blue" when blue is C), or a bare echo of the option list picks nothing. With no statement, an option text the
    response mentions (not negated) is its pick when it is the only one.
    """
    said = _Response(response, options)
    text = said.text
    stated = {}  # position -> letter ("": the statement there names no single option)
    for cue in _CUE.finditer(text):
        position = _FILLER.match(text, cue.end()).end()
        if not _NEGATED_CUE.search(text, max(0, cue.start() - 8), cue.start()) and (
                found := said.statement(position, after_cue=True)) is not None:
            stated[position] = found
    lettered = set()  # options written out as "B. text" (or "B) text", "B: text")
    for match in _LETTER_ANYWHERE.finditer(text):
        letter = match.group(2).upper()
        if letter in said.letters:
            own = said.text_at(_AFTER_LETTER.match(text, match.end()).end())
            own_end = own[1] if own and own[0] == letter else None
            if own_end and (match.group(1) or text.startswith((".", ")", ":"), match.end())):
                lettered.add(letter)
            if not said.negated(match.start()) and (
                    _VERDICT.match(text, match.end()) or (own_end and _VERDICT.match(text, own_end))):
                stated[match.start()] = letter
    labels = {}  # statements that open the response or a sentence: "B.", "(B) green car", "green car."
    for start in _SENTENCE_START.finditer(text):
        position = _OPENING.match(text, start.end()).end()
        if (found := said.statement(position, soft=start.end() == 0)) is not None:
            labels[position] = found
    if len(set(labels.values())) < 2 and len(lettered) < 2:  # otherwise the option list is echoed
        stated = {**labels, **stated}
    if stated:
        return stated[max(stated)] or None
    if _REFUSAL.search(text):
        return None
    mentioned = {letter for letter, position in said.mentions() if not said.negated(position)}
    return mentioned.pop() if len(mentioned) == 1 else None


class _Response:
    """A response folded for reading (NFKC, CJK marks, no markdown), its words and its options' words."""

    def __init__(self, response: str, options: list[str]):
        if not response.isascii():
            response = unicodedata.normalize("NFKC", response).translate(_FOLD)
        self.text = _MARKUP.sub("", response)
        letters = dict(split_option(option) for option in options)
        self.letters = set(letters)
        self.option_words = {letter: words for letter, option in letters.items()
                             if (words := tuple(_WORD.findall(option.lower())))}
        spans = [match.span() for match in _WORD.finditer(self.text)]
        self.words = [self.text[start:end].lower() for start, end in spans]
        self.word_at = {start: i for i, (start, _) in enumerate(spans)}
        self.spans = spans

    def text_at(self, position: int) -> tuple[str, int] | None:
        """(letter, end) of the longest option text whose words start at `position`, or None."""
        i = self.word_at.get(position)
        if i is None:
            return None
        found = [(len(words), letter) for letter, words in self.option_words.items()
                 if tuple(self.words[i:i + len(words)]) == words]
        if not found:
            return None
        length, letter = max(found)
        return letter, self.spans[i + length - 1][1]

    def mentions(self):
        """(letter, position) of every place an option's text occurs as whole words."""
        for i, word in enumerate(self.words):
            for letter, words in self.option_words.items():
                if word == words[0] and tuple(self.words[i:i + len(words)]) == words:
                    yield letter, self.spans[i][0]

    def negated(self, position: int) -> bool:
        """Whether a "not", "nor", "neither", "no" (or 不) stands at most one word before `position`."""
        return bool(_NEGATED.search(self.text, max(0, position - 24), position))

    def statement(self, position: int, after_cue=False, soft=False) -> str | None:
        """The letter stated at `position`, "" for a statement naming no single option, None for no statement.

        A letter closed by punctuation, a bracket or the end ("B.", "(b)", "B (green car)", "B。") states it. After a
        cue, or with `soft` (at the start of the response), so does an option's text (ending the sentence unless
        after a cue) and a letter followed by its text, a reason or a verdict ("B green car", "B because", "B is
        correct"). A statement followed by a second option ("B or C") or by another option's text or letter ("B.
        blue", "blue (B)") names no option.
        """
        text = self.text
        match = _LETTER.match(text, position)
        letter = match.group(2).upper() if match else None
        if letter in self.letters:
            second = _SECOND_LETTER.match(text, match.end())
            if second and second.group(1).upper() in self.letters and second.group(1).upper() != letter and (
                    second.group(1).isupper() or _HARD_END.match(text, second.end())):
                return ""
            named = self.text_at(_AFTER_LETTER.match(text, match.end()).end())
            if match.group(1) or _HARD_END.match(text, match.end()):
                return "" if named and named[0] != letter else letter
        if not (after_cue or soft):
            return None
        the = _THE.match(text, position)
        for start in (position, the.end()) if the else (position,):
            if said := self.text_at(start):
                paren = _PAREN_LETTER.match(text, said[1])
                if paren and paren.group(1).upper() in self.letters:
                    return said[0] if paren.group(1).upper() == said[0] else ""
                if after_cue or _HARD_END.match(text, said[1]):
                    return said[0]
        if letter in self.letters and (named and named[0] == letter or _REASON.match(text, match.end())
                                       or _VERDICT.match(text, match.end())):
            return letter
        return None


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

