"""EgoSchema (the public 500-question subset with answers): rows videoID (a file name), question, options
("A. text"), answer (the full option). Score: subset accuracy."""

from pathlib import Path

from llava.eval.harness import Benchmark, Item, multiple_choice_item, read_jsonl, require, row_ids
from llava.eval.score import table

MAX_NEW_TOKENS = 256


def load(args) -> list[Item]:
    rows = read_jsonl(args.dataset_path)
    items = []
    for number, (qid, r) in enumerate(zip(row_ids(rows, "videoID"), rows), 1):
        where = f"{args.dataset_path} row {number}"
        require(r, ("videoID", "question", "options", "answer"), where)
        name = str(r["videoID"])
        name = name if Path(name).suffix else f"{name}.mp4"
        items.append(multiple_choice_item(where, str(r.get("q_uid", qid)), Path(name).stem,
                                          (Path(args.video_dir) / name,), r["question"], r["options"], r["answer"],
                                          MAX_NEW_TOKENS))
    return items


def summarize(records: list[dict]) -> list[dict]:
    return [table("EgoSchema subset accuracy", records)]


BENCHMARK = Benchmark("egoschema", "EgoSchema", "dataset/EgoSchema/egoschema_val.json", "dataset/EgoSchema/videos",
                      load, summarize)
