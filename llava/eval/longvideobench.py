"""LongVideoBench (validation). Two formats:
- the released JSON lines: video (an id, file {video}.mp4), question, options ("A.text"), answer (the full option),
  optional duration_group and question_category;
- the official `lvb_val.json` (a JSON array): video_id, video_path (the file under --video_dir), question,
  candidates (option texts), correct_choice (index of the right one; absent in the test file, whose questions are
  generated, not scored), duration_group (15, 60, 600, 3600 s), question_category (S2E, T3O, ...), id.

Score: overall, by duration group and by question category (when the rows carry them).
"""

from pathlib import Path

from llava.eval.benchmark import (Benchmark, EvalError, Item, multiple_choice_item, question_rows, read_rows,
                                  register)
from llava.eval.tables import table

MAX_NEW_TOKENS = 128
BREAKDOWNS = (("duration_group", "duration group"), ("question_category", "question category"))


def official_answer(where: str, r: dict):
    """The right candidate's text from `correct_choice`, None when the row has none (test set)."""
    choice = r.get("correct_choice")
    if choice is None:
        return None
    if isinstance(choice, bool) or not isinstance(choice, int) or not 0 <= choice < len(r["candidates"]):
        raise EvalError(f"{where}: correct_choice {choice!r} is not the index of one of its "
                        f"{len(r['candidates'])} candidates")
    return r["candidates"][choice]


def load(args) -> list[Item]:
    path = Path(args.dataset_path)
    rows = read_rows(path)
    official = bool(rows) and "candidates" in rows[0]
    required = (("video_path", "question", "candidates", "id") if official
                else ("video", "question", "options", "answer"))
    items = []
    for where, qid, r in question_rows(path, required, rows):
        fields = {key: r[key] for key, _ in BREAKDOWNS if key in r}
        if official:
            video = Path(str(r["video_path"]))
            items.append(multiple_choice_item(where, str(r["id"]), video.stem, (Path(args.video_dir) / video,),
                                              r["question"], r["candidates"], official_answer(where, r),
                                              MAX_NEW_TOKENS, fields))
        else:
            video = str(r["video"])
            items.append(multiple_choice_item(where, str(r.get("id", qid)), video,
                                              (Path(args.video_dir) / f"{video}.mp4",), r["question"], r["options"],
                                              r["answer"], MAX_NEW_TOKENS, fields))
    return items


def summarize(records: list[dict]) -> list[dict]:
    tables = [table("LongVideoBench accuracy", records)]
    tables += [table(f"LongVideoBench accuracy by {label}", records, by=key)
               for key, label in BREAKDOWNS if any(key in r for r in records)]
    return tables


BENCHMARK = register(Benchmark("longvideobench", "LongVideoBench", "dataset/LongVideoBench/longvideobench_val.json",
                               "dataset/LongVideoBench/videos", load, summarize))
