"""Video-MME (the official parquet): columns video_id, duration (short/medium/long), domain, sub_category, videoID,
question_id, task_type, question, options ("A. text"), answer (a letter); videos `{videoID}.mp4`.

`--subtitle_dir DIR` runs the with-subtitles variant: `{videoID}.srt` (a video without one gets an empty subtitle).
Score: overall, by duration and by task type.
"""

import re
from pathlib import Path

from llava.eval.benchmark import Benchmark, EvalError, Item, multiple_choice_item, register
from llava.eval.tables import table

MAX_NEW_TOKENS = 1
COLUMNS = ("videoID", "question_id", "question", "options", "answer", "duration", "domain", "sub_category",
           "task_type")
SUBTITLE_PROMPT = (
    "This video's subtitles are listed below:\n{subtitle}.\nBased on this video, please answer the following "
    "question:\n{question}.\nPlease think carefully and choose the best answer from the following options:\n"
    "{options}\nThe answer is: "
)


def read_subtitle(path: Path) -> str:
    """Text between a `>` and the next `<` on one line (the font-tagged lines of the .srt), joined by newlines."""
    if not path.is_file():
        return ""
    return "\n".join(re.findall(r">(.*?)<", path.read_text(encoding="utf-8", errors="replace")))


def load(args) -> list[Item]:
    import pandas as pd

    path = Path(args.dataset_path)
    if not path.is_file():
        raise EvalError(f"dataset file not found: {path}")
    frame = pd.read_parquet(path)
    missing = [column for column in COLUMNS if column not in frame.columns]
    if missing:
        raise EvalError(f"{path}: missing column(s) {missing}")
    items = []
    for number, r in enumerate(frame.to_dict("records"), 1):
        video = str(r["videoID"])
        fields = {key: str(r[key]) for key in ("duration", "domain", "sub_category", "task_type")}
        item = multiple_choice_item(f"{path} row {number}", str(r["question_id"]), video,
                                    (Path(args.video_dir) / f"{video}.mp4",), str(r["question"]),
                                    [str(option) for option in r["options"]], str(r["answer"]), MAX_NEW_TOKENS, fields)
        if args.subtitle_dir:
            subtitle = read_subtitle(Path(args.subtitle_dir) / f"{video}.srt")
            item.prompt = SUBTITLE_PROMPT.format(subtitle=subtitle, question=item.question, options=item.options)
        items.append(item)
    return items


def summarize(records: list[dict]) -> list[dict]:
    return [table("Video-MME accuracy by duration", records, by="duration"),
            table("Video-MME accuracy by task type", records, by="task_type")]


def add_arguments(parser) -> None:
    parser.add_argument("--subtitle_dir", default=None, help="folder of {videoID}.srt: run the with-subtitles variant")


BENCHMARK = register(Benchmark("videomme", "Video-MME", "dataset/Video-MME/videomme/test-00000-of-00001.parquet",
                               "dataset/Video-MME/data", load, summarize, add_arguments))
