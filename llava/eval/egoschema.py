"""EgoSchema (the public 500-question subset with answers): rows videoID (a file name), question, options
("A. text"), answer (the full option). Score: subset accuracy."""

from pathlib import Path

from llava.eval.benchmark import Benchmark, Item, multiple_choice_item, question_rows, register
from llava.eval.tables import table

MAX_NEW_TOKENS = 256


def load(args) -> list[Item]:
    items = []
    for where, qid, r in question_rows(args.dataset_path, ("videoID", "question", "options", "answer")):
        name = str(r["videoID"])
        name = name if Path(name).suffix else f"{name}.mp4"
        items.append(multiple_choice_item(where, str(r.get("q_uid", qid)), Path(name).stem,
                                          (Path(args.video_dir) / name,), r["question"], r["options"], r["answer"],
                                          MAX_NEW_TOKENS))
    return items


def summarize(records: list[dict]) -> list[dict]:
    return [table("EgoSchema subset accuracy", records)]


BENCHMARK = register(Benchmark("egoschema", "EgoSchema", "dataset/EgoSchema/egoschema_val.json",
                               "dataset/EgoSchema/videos", load, summarize))
