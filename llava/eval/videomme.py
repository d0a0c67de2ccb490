"""Video-MME (the official parquet): columns video_id ("001"), duration (short/medium/long), domain, sub_category,
videoID (the file name), question_id, task_type, question, options ("A. text"), answer (a letter); videos
`{videoID}.mp4`.

`--subtitle_dir DIR` runs the with-subtitles variant from `{videoID}.srt`. `--subtitle_rule all_lines` (default, as
released) puts every subtitle line in the prompt (a video without a file gets an empty subtitle);
`--subtitle_rule sampled_frames` is the official rule: only the lines shown at the sampled frames (the harness's
1 fps then `--max_frames` sampling), and "No subtitles available" for a video without a subtitle file.

Score: overall and by duration, domain, sub-category and task type (unextractable answers counted wrong), and, labelled,
what the official scorer reports (its own letter reading; answers it cannot read dropped). Export:
`videomme_results.json` in the official results template, for the official scorer.
"""

import json
import re
from pathlib import Path

from llava.eval.benchmark import Benchmark, EvalError, Item, multiple_choice_item, register
from llava.eval.tables import table
from llava.files import atomic_write

MAX_NEW_TOKENS = 1
COLUMNS = ("video_id", "videoID", "question_id", "question", "options", "answer", "duration", "domain",
           "sub_category", "task_type")
BREAKDOWNS = (("duration", "duration"), ("domain", "domain"), ("sub_category", "sub-category"),
              ("task_type", "task type"))
SUBTITLE_PROMPT = (
    "This video's subtitles are listed below:\n{subtitle}.\nBased on this video, please answer the following "
    "question:\n{question}.\nPlease think carefully and choose the best answer from the following options:\n"
    "{options}\nThe answer is: "
)
NO_SUBTITLES = "No subtitles available"
RESULTS_FILE = "videomme_results.json"


# ----- subtitles -----


def read_subtitle(path: Path) -> str:
    """Released rule: text between a `>` and the next `<` on one line (the font-tagged lines of the .srt), joined by
    newlines; "" without a file."""
    if not path.is_file():
        return ""
    return "\n".join(re.findall(r">(.*?)<", path.read_text(encoding="utf-8", errors="replace")))


_SRT_TIME = re.compile(r"(\d+):(\d+):(\d+)[,.](\d+)\s*-->\s*(\d+):(\d+):(\d+)[,.](\d+)")


def subtitle_spans(path: Path) -> list[tuple[float, float, str]]:
    """(start s, end s, text without tags) of every block of an .srt file, in file order."""
    spans = []
    for block in re.split(r"\n\s*\n", path.read_text(encoding="utf-8", errors="replace").replace("\r", "")):
        lines = block.strip().split("\n")
        timing = next((i for i, line in enumerate(lines) if _SRT_TIME.search(line)), None)
        if timing is None:
            continue
        h1, m1, s1, ms1, h2, m2, s2, ms2 = map(int, _SRT_TIME.search(lines[timing]).groups())
        text = " ".join(re.sub(r"<[^>]*>", "", line).strip() for line in lines[timing + 1:]).strip()
        if text:
            spans.append((h1 * 3600 + m1 * 60 + s1 + ms1 / 1000, h2 * 3600 + m2 * 60 + s2 + ms2 / 1000, text))
    return spans


def sampled_times(video: Path, max_frames: int) -> list[float] | None:
    """Seconds of the frames the harness samples from `video` (1 fps, then at most `max_frames`), read from its
    header; None when the file cannot be opened (its questions become error records in the run anyway)."""
    import av

    from llava.video import sample_indices

    if not video.is_file():
        return None
    try:
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            total = stream.frames or int((container.duration or 0) / av.time_base * fps)
    except (av.FFmpegError, IndexError):
        return None
    if fps <= 0 or total <= 0:
        return None
    return [index / fps for index in sample_indices(total, fps, max_frames)]


def subtitle_at_frames(path: Path, times: list[float] | None) -> str:
    """Official rule: the lines shown at any of `times` (each once, in file order), joined by newlines;
    NO_SUBTITLES without a subtitle file."""
    if not path.is_file():
        return NO_SUBTITLES
    return "\n".join(text for start, end, text in subtitle_spans(path)
                     if any(start <= t < end for t in times or ()))


# ----- questions -----


def load(args) -> list[Item]:
    import pandas as pd

    path = Path(args.dataset_path)
    if not path.is_file():
        raise EvalError(f"dataset file not found: {path}")
    frame = pd.read_parquet(path)
    missing = [column for column in COLUMNS if column not in frame.columns]
    if missing:
        raise EvalError(f"{path}: missing column(s) {missing}")
    subtitles: dict[str, str] = {}
    items = []
    for number, r in enumerate(frame.to_dict("records"), 1):
        video = str(r["videoID"])
        fields = {key: str(r[key]) for key in ("duration", "domain", "sub_category", "task_type")}
        fields["video_number"] = str(r["video_id"])
        videos = (Path(args.video_dir) / f"{video}.mp4",)
        item = multiple_choice_item(f"{path} row {number}", str(r["question_id"]), video, videos, str(r["question"]),
                                    [str(option) for option in r["options"]], str(r["answer"]), MAX_NEW_TOKENS, fields)
        if args.subtitle_dir:
            if video not in subtitles:
                srt = Path(args.subtitle_dir) / f"{video}.srt"
                subtitles[video] = (read_subtitle(srt) if args.subtitle_rule == "all_lines"
                                    else subtitle_at_frames(srt, sampled_times(videos[0], args.max_frames)))
            item.prompt = SUBTITLE_PROMPT.format(subtitle=subtitles[video], question=item.question,
                                                 options=item.options)
        items.append(item)
    return items


# ----- scores -----

# What the official scorer removes before it looks for a letter. Its list lacks two commas, so "The best option is"
# + "The correct option is" and "Best answer:" + "Best option:" are removed only as those concatenated strings
# (so "Best answer: C" reads as B, the B of "Best"); kept that way to report what it reports.
OFFICIAL_PREFIXES = ("The best answer is", "The correct answer is", "The answer is", "The answer",
                     "The best option isThe correct option is", "Best answer:Best option:")


def official_letter(response: str | None) -> str | None:
    """The letter the official Video-MME scorer reads: the prefixes removed, then the first capital A-D anywhere;
    None (dropped from its count) for no response or no such capital."""
    if response is None:
        return None
    text = response.strip()
    for prefix in OFFICIAL_PREFIXES:
        text = text.replace(prefix, "")
    match = re.search("[ABCD]", text)
    return match.group(0) if match else None


def summarize(records: list[dict]) -> list[dict]:
    tables = [table(f"Video-MME accuracy by {label}", records, by=key) for key, label in BREAKDOWNS]
    official = [dict(r, correct=letter == r["answer"]) for r in records
                if (letter := official_letter(r["response"])) is not None]
    tables.append(table("Video-MME as the official scorer reports it (unreadable answers dropped)", official,
                        by="duration"))
    return tables


def export(records: list[dict], output_dir: Path) -> dict:
    """`videomme_results.json` in the official results template: one entry per video (video_id, duration, domain,
    sub_category, questions: [{question_id, task_type, question, options, answer, response}]); a failed item's
    response is ""."""
    videos: dict[str, dict] = {}
    for r in sorted(records, key=lambda r: r["qid"]):
        entry = videos.setdefault(r["video_number"], {"video_id": r["video_number"], "duration": r["duration"],
                                                      "domain": r["domain"], "sub_category": r["sub_category"],
                                                      "questions": []})
        entry["questions"].append({"question_id": r["qid"], "task_type": r["task_type"], "question": r["question"],
                                   "options": r["options"], "answer": r["answer"], "response": r["response"] or ""})
    path = Path(output_dir) / RESULTS_FILE
    with atomic_write(path) as temporary:
        temporary.write_text(json.dumps(list(videos.values()), ensure_ascii=False, indent=1), encoding="utf-8")
    return {"file": path.name, "format": "Video-MME official results template", "questions": len(records)}


def add_arguments(parser) -> None:
    parser.add_argument("--subtitle_dir", default=None, help="folder of {videoID}.srt: run the with-subtitles variant")
    parser.add_argument("--subtitle_rule", choices=("all_lines", "sampled_frames"), default="all_lines",
                        help="all_lines: every subtitle line (as released); sampled_frames: the official rule, only "
                             "the lines at the sampled frames")


BENCHMARK = register(Benchmark("videomme", "Video-MME", "dataset/Video-MME/videomme/test-00000-of-00001.parquet",
                               "dataset/Video-MME/data", load, summarize, add_arguments, export))
