"""LongVideoBench (validation JSON-lines): rows video (an id, file {video}.mp4), question, options ("A.text"),
answer (the full option). Score: overall, and by `duration_group` when the rows carry one."""

from pathlib import Path

from llava.eval.benchmark import Benchmark, Item, multiple_choice_item, question_rows, register
from llava.eval.tables import table

MAX_NEW_TOKENS = 128


def load(args) -> list[Item]:
    items = []
    for where, qid, r in question_rows(args.dataset_path, ("video", "question", "options", "answer")):
        fields = {"duration_group": r["duration_group"]} if "duration_group" in r else {}
        video = str(r["video"])
        items.append(multiple_choice_item(where, str(r.get("id", qid)), video, (Path(args.video_dir) / f"{video}.mp4",),
                                          r["question"], r["options"], r["answer"], MAX_NEW_TOKENS, fields))
    return items


def summarize(records: list[dict]) -> list[dict]:
    by = "duration_group" if any("duration_group" in r for r in records) else None
    return [table("LongVideoBench accuracy" + (" by duration group" if by else ""), records, by)]


BENCHMARK = register(Benchmark("longvideobench", "LongVideoBench", "dataset/LongVideoBench/longvideobench_val.json",
                               "dataset/LongVideoBench/videos", load, summarize))
