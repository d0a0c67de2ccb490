"""LVBench (the official `video_info.meta.jsonl`): one line per video, `key` (the YouTube id; file `{key}.mp4` in
--video_dir), `type` (the video's category), and `qa`, its questions:
uid, question (the question, then one option a line: "(A) text" ... "(D) text"), answer (a letter), question_type (a
list of the six abilities: entity recognition, event understanding, key information retrieval, temporal grounding,
reasoning, summarization), time_reference.

Prompt: the released multiple-choice prompt of the other benchmarks; at most 32 new tokens (the released code has no
LVBench script: enough for a letter and a short sentence such as "The answer is (B)."). Score: overall, by ability (a question counts
in each of its abilities) and by video category.
"""

import re
from pathlib import Path

from llava.eval.benchmark import Benchmark, EvalError, Item, multiple_choice_item, question_rows, register
from llava.eval.tables import table

MAX_NEW_TOKENS = 32
_OPTION_LINE = re.compile(r"\n\s*\(([A-Z])\)\s*")


def split_question(where: str, text: str) -> tuple[str, list[str]]:
    """("the question", ["A. text", ...]) from LVBench's "question\\n(A) text\\n(B) text ..."."""
    parts = _OPTION_LINE.split(text)
    if len(parts) < 5:
        raise EvalError(f"{where}: no '(A) ...' option lines in its question {text[:80]!r}")
    letters, texts = parts[1::2], parts[2::2]
    return parts[0].strip(), [f"{letter}. {option.strip()}" for letter, option in zip(letters, texts)]


def load(args) -> list[Item]:
    items = []
    for where, _, video in question_rows(args.dataset_path, ("key", "qa")):
        key = str(video["key"])
        for number, qa in enumerate(video["qa"], 1):
            at = f"{where}, question {number}"
            missing = [field for field in ("uid", "question", "answer", "question_type") if field not in qa]
            if missing:
                raise EvalError(f"{at}: missing field(s) {missing}")
            question, options = split_question(at, qa["question"])
            abilities = qa["question_type"] if isinstance(qa["question_type"], list) else [qa["question_type"]]
            fields = {"question_type": abilities, "video_type": video.get("type")}
            items.append(multiple_choice_item(at, str(qa["uid"]), key, (Path(args.video_dir) / f"{key}.mp4",),
                                              question, options, qa["answer"], MAX_NEW_TOKENS, fields))
    return items


def summarize(records: list[dict]) -> list[dict]:
    return [table("LVBench accuracy by ability", records, by="question_type"),
            table("LVBench accuracy by video category", records, by="video_type")]


BENCHMARK = register(Benchmark("lvbench", "LVBench", "dataset/LVBench/video_info.meta.jsonl", "dataset/LVBench/videos",
                               load, summarize))
