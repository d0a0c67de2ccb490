"""ActivityNet-QA. Two formats:
- the released JSON lines: videoID, question (no "?"), answer (short text);
- the official split files: `{split}_q.json` (a JSON array of video_name, question, question_id) as --dataset_path,
  with `{split}_a.json` (answer, type, question_id; `--answers_path`, default: beside it). `type` is the question
  type: 0 motion, 1 spatial relation, 2 temporal relation, 3 yes/no, 4 color, 5 object, 6 location, 7 number,
  8 other.

Prompt "{question}?"; `--short_answer` appends the short-answer instruction of the published GPT-judge protocol.
Videos are `v_{id}` or `{id}` with .mp4, .mkv or .webm in --video_dir. Score (ours): yes/no exact match, exact and
relaxed (gold phrase contained in the answer) match, by question type when the file gives it. Published protocol:
`python -m llava.eval.score DIR --judge_url ... --judge_model ...` adds the GPT judge's accuracy and mean score
(`llava.eval.judge`).
"""

from pathlib import Path

from llava.eval.benchmark import Benchmark, EvalError, Item, question_rows, read_json, read_rows, register
from llava.eval.tables import table

MAX_NEW_TOKENS = 256
EXTENSIONS = (".mp4", ".mkv", ".webm")
QUESTION_TYPES = ("motion", "spatial relation", "temporal relation", "yes/no", "color", "object", "location",
                  "number", "other")
SHORT_ANSWER = " Answer the question using a single word or phrase."


def video_candidates(video_dir: Path, video_id: str) -> tuple[Path, ...]:
    names = [video_id] if video_id.startswith("v_") else [f"v_{video_id}", video_id]
    return tuple(video_dir / f"{name}{ext}" for name in names for ext in EXTENSIONS)


def official_answers(path: Path) -> dict[str, dict]:
    """question_id -> {"answer", "type"} of a `*_a.json`; a type that is not 0-8 is an EvalError naming the row."""
    rows = read_json(path)
    if not isinstance(rows, list):
        raise EvalError(f"{path}: expected a JSON array of answers")
    answers = {}
    for where, _, r in question_rows(path, ("question_id", "answer", "type"), rows):
        if isinstance(r["type"], bool) or r["type"] not in range(len(QUESTION_TYPES)):
            raise EvalError(f"{where}: type {r['type']!r} is not a question type 0-8")
        answers[str(r["question_id"])] = r
    return answers


def official_rows(path: Path, answers_path: Path, rows: list[dict]) -> list[tuple[str, str, str, str, dict]]:
    """(qid, video, question, answer, fields) of the official question and answer files."""
    answers = official_answers(answers_path)
    result = []
    for where, _, r in question_rows(path, ("video_name", "question", "question_id"), rows):
        qid = str(r["question_id"])
        if qid not in answers:
            raise EvalError(f"{where}: question {qid!r} has no answer in {answers_path}")
        answer, kind = str(answers[qid]["answer"]), answers[qid]["type"]
        fields = {"answer_type": "yes/no" if kind == 3 else "other", "question_type": QUESTION_TYPES[kind]}
        result.append((qid, str(r["video_name"]), r["question"], answer, fields))
    return result


def load(args) -> list[Item]:
    path = Path(args.dataset_path)
    rows = read_rows(path)
    if rows and "video_name" in rows[0]:
        default = path.with_name(path.name.replace("_q.json", "_a.json"))
        questions = official_rows(path, Path(args.answers_path) if args.answers_path else default, rows)
    else:
        questions = []
        for _, qid, r in question_rows(path, ("videoID", "question", "answer"), rows):
            answer = str(r["answer"])
            kind = "yes/no" if answer.strip().lower() in ("yes", "no") else "other"
            questions.append((str(r.get("question_id", qid)), str(r["videoID"]), r["question"], answer,
                              {"answer_type": kind}))
    suffix = SHORT_ANSWER if args.short_answer else ""
    return [Item(qid, video, video_candidates(Path(args.video_dir), video), question,
                 f"{question.rstrip('?')}?{suffix}", MAX_NEW_TOKENS, answer, None, fields)
            for qid, video, question, answer, fields in questions]


def summarize(records: list[dict]) -> list[dict]:
    by = "question_type" if any("question_type" in r for r in records) else "answer_type"
    tables = [
        table("ActivityNet-QA yes/no questions: exact match (ours)",
              [r for r in records if r["answer_type"] == "yes/no"]),
        table("ActivityNet-QA all questions: exact match (ours)", records, by=by),
        table("ActivityNet-QA all questions: relaxed match, gold contained (ours)",
              [dict(r, correct=r.get("relaxed", False)) for r in records], by=by),
    ]
    judged = [dict(r, correct=r["judge"]) for r in records if r.get("judge") is not None]
    if judged:
        tables.append(table("ActivityNet-QA GPT judge, published protocol: accuracy (share judged yes), mean score",
                            judged, by=by, score="judge_score"))
    return tables


def add_arguments(parser) -> None:
    parser.add_argument("--answers_path", default=None,
                        help="the official {split}_a.json of a {split}_q.json --dataset_path (default: beside it)")
    parser.add_argument("--short_answer", action="store_true",
                        help="append the published protocol's instruction to answer with a single word or phrase")


BENCHMARK = register(Benchmark("activitynetqa", "ActivityNet-QA", "dataset/ActivityNet-QA/ActivityNetQA_val.json",
                               "dataset/ActivityNet-QA/videos", load, summarize, add_arguments))
