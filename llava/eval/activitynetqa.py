"""ActivityNet-QA (JSON-lines): rows videoID, question (no "?"), answer (short text). Prompt "{question}?".

Videos are `v_{id}` or `{id}` with .mp4, .mkv or .webm in --video_dir. Score: yes/no exact match, exact and relaxed
(gold phrase contained in the answer) match over all questions, and an LLM judge's verdict when one was asked
(`python -m llava.eval.score DIR --judge_url ...`).
"""

from pathlib import Path

from llava.eval.benchmark import Benchmark, Item, question_rows, register
from llava.eval.tables import table

MAX_NEW_TOKENS = 256
EXTENSIONS = (".mp4", ".mkv", ".webm")


def video_candidates(video_dir: Path, video_id: str) -> tuple[Path, ...]:
    names = [video_id] if video_id.startswith("v_") else [f"v_{video_id}", video_id]
    return tuple(video_dir / f"{name}{ext}" for name in names for ext in EXTENSIONS)


def load(args) -> list[Item]:
    items = []
    for _, qid, r in question_rows(args.dataset_path, ("videoID", "question", "answer")):
        video, answer = str(r["videoID"]), str(r["answer"])
        kind = "yes/no" if answer.strip().lower() in ("yes", "no") else "other"
        items.append(Item(str(r.get("question_id", qid)), video, video_candidates(Path(args.video_dir), video),
                          r["question"], f"{r['question']}?", MAX_NEW_TOKENS, answer, None, {"answer_type": kind}))
    return items


def summarize(records: list[dict]) -> list[dict]:
    tables = [
        table("ActivityNet-QA yes/no questions: exact match", [r for r in records if r["answer_type"] == "yes/no"]),
        table("ActivityNet-QA all questions: exact match", records, by="answer_type"),
        table("ActivityNet-QA all questions: relaxed match (gold contained)",
              [dict(r, correct=bool(r.get("relaxed"))) for r in records], by="answer_type"),
    ]
    judged = [dict(r, correct=r["judge"]) for r in records if r.get("judge") is not None]
    if judged:
        tables.append(table("ActivityNet-QA all questions: LLM judge", judged, by="answer_type"))
    return tables


BENCHMARK = register(Benchmark("activitynetqa", "ActivityNet-QA", "dataset/ActivityNet-QA/ActivityNetQA_val.json",
                               "dataset/ActivityNet-QA/videos", load, summarize))
