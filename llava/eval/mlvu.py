"""MLVU (dev set): seven multiple-choice tasks scored, open-ended `summary` / `subPlot` generated only.

Two formats:
- the released JSON lines: video (a path; its file name is looked up in --video_dir), duration, question,
  question_type, answer (a letter), options ("A. text") and candidates;
- the official per-task files (`1_plotQA.json`, ... `9_summary.json`, each a JSON array), one file or their folder:
  video (a file name, looked up in --video_dir and in its task's sub-folder `--video_dir/<file stem>/`), duration,
  question, question_type, candidates (option texts) and answer (the text of the right candidate).

A row with `options` or `candidates` is multiple choice (`options` lettered from `candidates` when absent); a row of
a multiple-choice task with neither is an error naming it. Score: M-Avg (mean of the seven task accuracies) and the
sample-weighted mean, each labelled, then each task.
"""

from pathlib import Path

from llava.eval.benchmark import (Benchmark, EvalError, Item, multiple_choice_item, question_rows, read_rows,
                                  register)
from llava.eval.tables import row, table

MAX_NEW_TOKENS = 256
CHOICE_TASKS = ("plotQA", "findNeedle", "ego", "count", "order", "anomaly_reco", "topic_reasoning")


def question_files(path: Path) -> list[Path]:
    """The question file, or every *.json of a folder of per-task files (in name order)."""
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise EvalError(f"{path}: a folder without any *.json question file")
        return files
    return [path]


def load(args) -> list[Item]:
    items = []
    for path in question_files(Path(args.dataset_path)):
        rows = read_rows(path)
        for where, qid, r in question_rows(path, ("video", "question", "question_type", "answer"), rows):
            name = Path(r["video"]).name
            videos = (Path(args.video_dir) / name, Path(args.video_dir) / path.stem / name)
            fields = {"question_type": r["question_type"], "duration": r.get("duration")}
            options = r.get("options") or r.get("candidates")
            if options:
                items.append(multiple_choice_item(where, qid, Path(name).stem, videos, r["question"], options,
                                                  r["answer"], MAX_NEW_TOKENS, fields))
            elif r["question_type"] in CHOICE_TASKS:
                raise EvalError(f"{where}: a {r['question_type']} question without options or candidates cannot be "
                                "scored")
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
