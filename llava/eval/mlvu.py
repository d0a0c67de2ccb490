"""MLVU (dev set JSON-lines): seven multiple-choice tasks scored, open-ended `summary` / `subPlot` generated only.

Rows: video (a path; its file name is looked up in --video_dir), duration, question, question_type, answer (a letter
for multiple choice), options ("A. text"). Score: M-Avg (mean of the seven task accuracies) and the sample-weighted
mean, each labelled.
"""

from pathlib import Path

from llava.eval.benchmark import Benchmark, Item, multiple_choice_item, question_rows, register
from llava.eval.tables import row, table

MAX_NEW_TOKENS = 256


def load(args) -> list[Item]:
    items = []
    for where, qid, r in question_rows(args.dataset_path, ("video", "question", "question_type", "answer")):
        name = Path(r["video"]).name
        videos, fields = (Path(args.video_dir) / name,), {"question_type": r["question_type"],
                                                         "duration": r.get("duration")}
        if "options" in r:
            items.append(multiple_choice_item(where, qid, Path(name).stem, videos, r["question"], r["options"],
                                              r["answer"], MAX_NEW_TOKENS, fields))
        else:
            items.append(Item(qid, Path(name).stem, videos, r["question"], r["question"], MAX_NEW_TOKENS,
                              str(r["answer"]), None, fields, scored=False))
    return items


def summarize(records: list[dict]) -> list[dict]:
    by_task = table("MLVU multiple choice: accuracy by task", records, by="question_type")
    if records:
        by_task["rows"][0] = row("sample-weighted mean (all questions)", records)
        by_task["rows"].insert(0, row("M-Avg (mean of task accuracies)", records, lambda r: r["question_type"]))
    return [by_task]


BENCHMARK = register(Benchmark("mlvu", "MLVU", "dataset/MLVU/MLVU_val.json", "dataset/MLVU/video", load,
                               summarize))
