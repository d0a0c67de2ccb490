"""Any task as a JSON-lines file, no code: one row per question.

    python -m llava.eval.generic --dataset_path my_task.jsonl --video_dir videos/ --version NAME

Row fields: `video` (a path, relative to --video_dir), `question`; optional `options` (lettered "A. x" or plain
texts, lettered in order), `answer` (a letter or option text for multiple choice, short text otherwise), `id`,
`task` (a breakdown group). Multiple choice uses the released prompt; open questions the bare question, scored by
exact and relaxed match. Rows without `answer` are generated but not scored.
"""

from pathlib import Path

from llava.eval.benchmark import Benchmark, Item, multiple_choice_item, positive_int, question_rows, register
from llava.eval.tables import table


def load(args) -> list[Item]:
    items = []
    for where, qid, r in question_rows(args.dataset_path, ("video", "question")):
        qid, video = str(r.get("id", qid)), Path(args.video_dir) / str(r["video"])
        fields = {"task": str(r.get("task", "all"))}
        if r.get("options"):
            items.append(multiple_choice_item(where, qid, str(r["video"]), (video,), r["question"], r["options"],
                                              r.get("answer"), args.max_new_tokens, fields))
        else:
            answer = r.get("answer")
            items.append(Item(qid, str(r["video"]), (video,), r["question"], r["question"], args.max_new_tokens,
                              None if answer is None else str(answer), None, fields, scored=answer is not None))
    return items


def summarize(records: list[dict]) -> list[dict]:
    return [table("Accuracy by task", records, by="task")]


def add_arguments(parser) -> None:
    parser.add_argument("--max_new_tokens", type=positive_int, default=128, help="generation length")


BENCHMARK = register(Benchmark("generic", "JSON-lines task", "dataset/task.jsonl", "dataset/videos", load,
                               summarize, add_arguments))

if __name__ == "__main__":
    from llava.eval.harness import main

    main(BENCHMARK)
