"""EgoSchema. Two formats:
- the released JSON lines of the public 500-question subset: videoID (a file name), question, options ("A. text"),
  answer (the full option);
- the official `questions.json` (a JSON array of q_uid, question, "option 0" ... "option 4"; videos `{q_uid}.mp4`)
  with `subset_answers.json` ({q_uid: index of the right option}; `--answers_path`, default: beside the questions).
  Every question is asked; those of the subset are scored.

Score: subset accuracy. Export: `egoschema_submission.json`, {q_uid: index of the chosen option} for every answered
question, the format the EgoSchema server accepts for the full set (questions without a readable choice are left out
and counted).
"""

import json
from pathlib import Path

from llava.eval.answers import extract_choice
from llava.eval.benchmark import (Benchmark, EvalError, Item, multiple_choice_item, question_rows, read_json,
                                  read_rows, register)
from llava.eval.tables import table
from llava.files import atomic_write

MAX_NEW_TOKENS = 256
OPTION_KEYS = tuple(f"option {i}" for i in range(5))
SUBMISSION_FILE = "egoschema_submission.json"


def subset_answers(path: Path) -> dict[str, int]:
    """{q_uid: right option index} of a subset_answers.json; a value that is not an index 0-4 is an EvalError."""
    answers = read_json(path)
    if not isinstance(answers, dict):
        raise EvalError(f"{path}: expected a JSON object {{q_uid: answer index}}")
    for uid, index in answers.items():
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(OPTION_KEYS):
            raise EvalError(f"{path}: answer of {uid!r} is {index!r}, not an option index 0-4")
    return answers


def load(args) -> list[Item]:
    path = Path(args.dataset_path)
    rows = read_rows(path)
    if rows and "q_uid" in rows[0] and OPTION_KEYS[0] in rows[0]:
        answers = subset_answers(Path(args.answers_path) if args.answers_path else path.with_name("subset_answers.json"))
        items = []
        for where, _, r in question_rows(path, ("q_uid", "question", *OPTION_KEYS), rows):
            uid = str(r["q_uid"])
            options = [r[key] for key in OPTION_KEYS]
            gold = options[answers[uid]] if uid in answers else None
            items.append(multiple_choice_item(where, uid, uid, (Path(args.video_dir) / f"{uid}.mp4",), r["question"],
                                              options, gold, MAX_NEW_TOKENS))
        return items
    items = []
    for where, qid, r in question_rows(path, ("videoID", "question", "options", "answer"), rows):
        name = str(r["videoID"])
        name = name if Path(name).suffix else f"{name}.mp4"
        items.append(multiple_choice_item(where, str(r.get("q_uid", qid)), Path(name).stem,
                                          (Path(args.video_dir) / name,), r["question"], r["options"], r["answer"],
                                          MAX_NEW_TOKENS))
    return items


def summarize(records: list[dict]) -> list[dict]:
    return [table("EgoSchema subset accuracy", records)]


def export(records: list[dict], output_dir: Path) -> dict:
    """egoschema_submission.json: {q_uid (the video's name): option index} of every record whose answer names an
    option, scored or not."""
    chosen = {}
    for r in records:
        choice = extract_choice(r["response"], r["options"]) if r["response"] is not None else None
        if choice is not None:
            chosen[r["video_id"]] = "ABCDE".index(choice)
    path = Path(output_dir) / SUBMISSION_FILE
    with atomic_write(path) as temporary:
        temporary.write_text(json.dumps(chosen, indent=1), encoding="utf-8")
    return {"file": path.name, "format": "EgoSchema server answers", "questions": len(chosen),
            "without_choice": len(records) - len(chosen)}


def add_arguments(parser) -> None:
    parser.add_argument("--answers_path", default=None,
                        help="subset_answers.json of the official questions.json (default: beside it)")


BENCHMARK = register(Benchmark("egoschema", "EgoSchema", "dataset/EgoSchema/egoschema_val.json",
                               "dataset/EgoSchema/videos", load, summarize, add_arguments, export))
