"""One evaluation harness for every benchmark: arguments, sharding, safe resume, the answer loop, records.

A benchmark is a `Benchmark`: its name, default paths, a `load(args) -> list[Item]` that reads the question file,
and a `summarize(records) -> tables` used by `llava.eval.score`. The harness does the rest:

- `--split i_N` deals whole videos round-robin in order of first appearance (all questions of a video in one shard);
- one JSON-lines file per shard, `{output_dir}/{benchmark}_{i}_of_{N}.jsonl`, one record appended and flushed per
  item; a re-run skips recorded items, cuts a truncated last line, never writes an item twice (`--overwrite` starts
  over);
- questions of one video run together: the video is decoded once per shard and its query-independent features
  (CLIP frame embeddings, SigLIP outputs within `--feature_cache_gb`) are computed once;
- a failed item (missing or corrupt video, model error) becomes a record with `error` and the run goes on.
"""

import argparse
import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from llava.conversation import multiple_choice_prompt
from llava.errors import VilampError, command
from llava.eval.answers import gold_letter, grade_multiple_choice, grade_open, letter_options
from llava.files import atomic_write
from llava.model.builder import find_checkpoint

MANIFEST = "run.json"


@dataclass
class Item:
    """One question of a benchmark, ready to ask."""

    qid: str  # unique within the benchmark file
    video_id: str
    videos: tuple[Path, ...]  # candidate files of the video; the first that exists is used
    question: str  # bare question: the CLIP query
    prompt: str  # user text after "<image>\n"
    max_new_tokens: int
    answer: str | None  # gold: a letter for multiple choice, text otherwise
    options: list[str] | None = None  # "A. text" strings for multiple choice
    fields: dict = field(default_factory=dict)  # breakdown fields (duration, task type, ...) copied to the record
    scored: bool = True  # False for open-ended rows that are generated but not scored


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    dataset_path: str  # default of --dataset_path
    video_dir: str  # default of --video_dir
    load: Callable[[argparse.Namespace], list[Item]]
    summarize: Callable[[list[dict]], list[dict]]  # records -> tables (see llava.eval.score)
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None


class EvalError(VilampError, RuntimeError):
    """A problem with the inputs of a run (dataset file, split, checkpoint, output file); the message names it."""


# ----- reading question files -----


def read_jsonl(path) -> list[dict]:
    """Rows of a JSON-lines file (blank lines skipped); a missing file or bad line raises EvalError naming it."""
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"dataset file not found: {path}")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise EvalError(f"{path}:{number}: not valid JSON ({error})") from error
            if not isinstance(row, dict):
                raise EvalError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


def question_rows(path, required: tuple[str, ...]) -> list[tuple[str, str, dict]]:
    """(where, stable id, row) for every row of a JSON-lines question file; `required[0]` is the video field.

    Every row is checked for the `required` fields first; a missing one raises EvalError naming file and row.
    """
    rows = read_jsonl(path)
    for number, row in enumerate(rows, 1):
        missing = [key for key in required if key not in row]
        if missing:
            raise EvalError(f"{path} row {number}: missing field(s) {missing}")
    return [(f"{path} row {number}", qid, row)
            for number, (qid, row) in enumerate(zip(row_ids(rows, required[0]), rows), 1)]


def row_ids(rows: list[dict], video_key: str) -> list[str]:
    """Stable ids for rows that carry none: "{video}:{hash of the row}", with "#2", "#3" for repeated rows."""
    seen: dict[str, int] = {}
    ids = []
    for row in rows:
        digest = hashlib.sha1(json.dumps(row, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:10]
        base = f"{Path(str(row[video_key])).stem}:{digest}"
        seen[base] = seen.get(base, 0) + 1
        ids.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return ids


def multiple_choice_item(where: str, qid: str, video_id: str, videos: tuple[Path, ...], question: str, options,
                         answer, max_new_tokens: int, fields: dict | None = None) -> Item:
    """An Item with the released multiple-choice prompt; `options` lettered if needed, gold turned into a letter.

    answer None: generated but not scored.
    """
    options = letter_options(options)
    try:
        gold = None if answer is None else gold_letter(answer, options)
    except ValueError as error:
        raise EvalError(f"{where}: {error}") from error
    return Item(qid, video_id, videos, question, multiple_choice_prompt(question, options), max_new_tokens, gold,
                options, fields or {}, scored=gold is not None)


# ----- arguments -----


def parse_split(text: str) -> tuple[int, int]:
    """"i_N" -> (i, N) with 1 <= i <= N."""
    parts = text.split("_")
    if len(parts) != 2 or not all(part.isdigit() for part in parts):
        raise EvalError(f"--split {text!r}: expected i_N, e.g. 1_4 for the first of four shards")
    index, count = int(parts[0]), int(parts[1])
    if not 1 <= index <= count:
        raise EvalError(f"--split {text!r}: shard index must be between 1 and {count}")
    return index, count


def build_parser(benchmark: Benchmark) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=f"Evaluate a ViLAMP checkpoint on {benchmark.title}.")
    parser.add_argument("--dataset_path", default=benchmark.dataset_path, help="question file")
    parser.add_argument("--video_dir", default=benchmark.video_dir, help="folder of the videos")
    parser.add_argument("--output_dir", default=f"outputs/{benchmark.name}", help="where shard records go")
    parser.add_argument("--version", default="ViLAMP-llava-qwen", help="checkpoint folder, or a name under models/")
    parser.add_argument("--split", default="1_1", help="shard i of N (1-based), e.g. 2_4")
    parser.add_argument("--max_frames", "--max_frame_num", dest="max_frames", type=int, default=600,
                        help="most frames sampled per video (1 fps first; --max_frame_num is the released scripts' "
                             "spelling); the keyframes among them are the checkpoint's max_frame_num")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--dtype", default=None, help="bf16, fp16 or fp32 (default: bf16 on cuda, fp32 on cpu)")
    parser.add_argument("--attn_implementation", default=None, choices=["flash_attention_2", "sdpa", "eager"])
    parser.add_argument("--limit", type=int, default=None, help="only the first LIMIT questions of the file")
    parser.add_argument("--overwrite", action="store_true", help="discard this shard's records instead of resuming")
    parser.add_argument("--feature_cache_gb", type=float, default=4.0,
                        help="memory for SigLIP features shared by the questions of one video (0: recompute)")
    if benchmark.add_arguments:
        benchmark.add_arguments(parser)
    return parser


# ----- sharding and records -----


def shard(items: list[Item], index: int, count: int) -> list[Item]:
    """Items of shard `index` (1-based) of `count`: video j (in order of first appearance) goes to shard j % count."""
    order: dict[str, int] = {}
    for item in items:
        order.setdefault(item.video_id, len(order))
    return [item for item in items if order[item.video_id] % count == index - 1]


def shard_path(output_dir: Path, name: str, index: int, count: int) -> Path:
    return output_dir / f"{name}_{index}_of_{count}.jsonl"


def read_records(path) -> tuple[list[dict], int]:
    """Records of a shard file and the byte length of its complete records.

    A last line without its newline that does not parse (a run killed while writing) is left out; any other bad
    line raises EvalError naming the file and line.
    """
    path = Path(path)
    data = path.read_bytes()
    body, newline, tail = data.rpartition(b"\n")
    records = []
    for number, line in enumerate(body.split(b"\n") if newline else [], 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise EvalError(f"{path}:{number}: corrupt record ({error}); fix or remove the line") from error
    good = len(body) + 1 if newline else 0
    if tail.strip():
        try:
            records.append(json.loads(tail))
            good = len(data)
        except json.JSONDecodeError:
            pass  # truncated: re-done on resume
    return records, good


def open_shard(path: Path, overwrite: bool) -> tuple[set[str], object]:
    """(qids already recorded, file handle open for appending); cuts a truncated last line first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if overwrite or not path.exists():
        return set(), path.open("w", encoding="utf-8")
    records, good = read_records(path)
    with path.open("r+b") as handle:
        handle.truncate(good)
        if good:
            handle.seek(good - 1)
            if handle.read(1) != b"\n":
                handle.write(b"\n")
    return {record["qid"] for record in records}, path.open("a", encoding="utf-8")


def write_manifest(output_dir: Path, benchmark: Benchmark, args, items: list[Item]) -> None:
    """`run.json`: the benchmark and the ids of every item the run covers (all shards), for the scorer."""
    manifest = {"benchmark": benchmark.name, "dataset_path": str(args.dataset_path), "limit": args.limit,
                "items": [item.qid for item in items]}
    with atomic_write(output_dir / MANIFEST) as temporary:
        temporary.write_text(json.dumps(manifest))


def grade(item: Item, response: str) -> dict:
    """choice / correct (and relaxed for open answers) of one response; None when the item is not scored."""
    if not item.scored:
        return {"choice": None, "correct": None}
    if item.options:
        return grade_multiple_choice(response, item.options, item.answer)
    return grade_open(response, item.answer)


def make_record(benchmark: Benchmark, item: Item, **outcome) -> dict:
    return {"benchmark": benchmark.name, "qid": item.qid, "video_id": item.video_id, **item.fields,
            "question": item.question, "answer": item.answer, **outcome}


# ----- the loop -----


def group_by_video(items: list[Item]) -> list[list[Item]]:
    groups: dict[str, list[Item]] = {}
    for item in items:
        groups.setdefault(item.video_id, []).append(item)
    return list(groups.values())


def find_video(item: Item) -> Path:
    for candidate in item.videos:
        if candidate.is_file():
            return candidate
    return item.videos[0]  # decoding it reports "video file not found" with its name


def evaluate(benchmark: Benchmark, items: list[Item], handle, model_bundle, max_frames: int,
             feature_cache_bytes: int = 0) -> tuple[int, int]:
    """Answer `items` video by video, appending one record per item to `handle`. Returns (done, errors)."""
    from tqdm import tqdm

    from llava.inference import answer_video
    from llava.model import VideoFeatureCache
    from llava.video import load_video

    model, processor = model_bundle
    done = errors = 0
    with tqdm(total=len(items), desc=benchmark.name, unit="q", dynamic_ncols=True) as bar:
        for group in group_by_video(items):
            started = time.perf_counter()
            try:
                video = load_video(find_video(group[0]), processor.video_processor, max_frames)
                video_error = None
            except Exception as error:
                video, video_error = None, f"{type(error).__name__}: {error}"
            decode_seconds = time.perf_counter() - started
            cache = VideoFeatureCache(feature_cache_bytes)
            for item in group:
                started = time.perf_counter()
                try:
                    if video_error:
                        raise RuntimeError(video_error)
                    answer = answer_video(model, processor, video.frames, item.question, item.prompt,
                                          item.max_new_tokens, cache)
                    outcome = {"response": answer.text, **grade(item, answer.text), "frames": answer.num_frames,
                               "keyframes": answer.keyframes, "error": None}
                except Exception as error:
                    errors += 1
                    message = video_error or f"{type(error).__name__}: {error}"
                    outcome = {"response": None, "choice": None, "correct": False if item.scored else None,
                               "frames": 0, "keyframes": [], "error": message}
                seconds = time.perf_counter() - started + (decode_seconds if item is group[0] else 0.0)
                record = make_record(benchmark, item, **outcome, seconds=round(seconds, 3))
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                handle.flush()
                done += 1
                bar.update(1)
                bar.set_postfix(errors=errors)
    return done, errors


def load_model(checkpoint: Path, args):
    from llava.model.builder import load_pretrained_model

    _, model, processor, _ = load_pretrained_model(
        checkpoint, device_map=args.device or "auto", dtype=args.dtype, attn_implementation=args.attn_implementation
    )
    return model, processor


def run(benchmark: Benchmark, argv=None) -> Path:
    """Parse arguments, evaluate this shard (resuming), print the scores of everything recorded so far."""
    from llava.eval.score import format_summary, score_run

    args = build_parser(benchmark).parse_args(argv)
    index, count = parse_split(args.split)
    checkpoint = find_checkpoint(args.version, flag="--version")
    if args.limit is not None and args.limit < 1:
        raise EvalError(f"--limit {args.limit}: must be at least 1")
    if args.max_frames < 1:
        raise EvalError(f"--max_frames {args.max_frames}: must be at least 1")
    items = benchmark.load(args)
    items = items[: args.limit] if args.limit else items
    duplicate = next((qid for qid, n in Counter(item.qid for item in items).items() if n > 1), None)
    if duplicate is not None:
        raise EvalError(f"{args.dataset_path}: question id {duplicate!r} appears more than once")
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(output_dir, benchmark, args, items)
    path = shard_path(output_dir, benchmark.name, index, count)
    recorded, handle = open_shard(path, args.overwrite)
    with handle:
        todo = [item for item in shard(items, index, count) if item.qid not in recorded]
        print(f"{benchmark.title}: shard {index}/{count}, {len(recorded)} recorded, {len(todo)} to do -> {path}")
        if todo:
            done, errors = evaluate(benchmark, todo, handle, load_model(checkpoint, args), args.max_frames,
                                    int(args.feature_cache_gb * 2**30))
            print(f"answered {done} questions, {errors} failed (recorded with 'error')")
    print(format_summary(score_run(output_dir)))
    return path


@command
def main(benchmark: Benchmark, argv=None) -> None:
    """Entry point of the exp_*.py scripts and `python -m llava.eval.generic`."""
    run(benchmark, argv)
