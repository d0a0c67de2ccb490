"""One evaluation harness for every benchmark: arguments, run identity, sharding, safe resume, the answer loop.

A benchmark (`llava.eval.benchmark.Benchmark`) reads its question file into `Item`s; the harness does the rest:

- the run folder records what produced it (run.json, `llava.eval.identity`); a resume with other settings is refused
  with the settings that differ (`--overwrite` starts the shard over);
- `--split i_N` deals whole videos round-robin in order of first appearance (all questions of a video in one shard);
- one JSON-lines file per shard, `{output_dir}/{benchmark}_{i}_of_{N}.jsonl`, written by one process at a time (a
  lock file beside it), one record appended and flushed per item; a re-run skips recorded items and cuts a
  half-written last record; `--retry_errors` redoes failed items;
- questions of one video run together: the video is decoded once per shard and its query-independent features
  (CLIP frame embeddings, SigLIP outputs within `--feature_cache_gb`) are computed once;
- an unusable video (VideoDecodeError) or a prompt over the model's length (PromptTooLongError) becomes a record with
  `error` and the run goes on; anything else (out of memory, a bug) stops the shard, every record written so far kept.
"""

import argparse
import json
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from llava.errors import command
from llava.eval.answers import grade_record
from llava.eval.benchmark import Benchmark, EvalError, Item, non_negative_float, positive_int
from llava.eval.identity import differences, run_id, run_identity
from llava.eval.distributed import Launch
from llava.eval.records import rank_files, read_manifest, read_records, shard_lock, shard_path, write_manifest
from llava.eval.score import format_summary, score_run
from llava.files import atomic_write
from llava.model.builder import find_checkpoint, resolve_device, resolve_dtype

DTYPES = ("bf16", "fp16", "fp32", "bfloat16", "float16", "float32")  # choices of --dtype


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
    parser.add_argument("--output_dir", default=None,
                        help=f"where the run's files go (default outputs/{benchmark.name}/<checkpoint name>)")
    parser.add_argument("--version", default="ViLAMP-llava-qwen", help="checkpoint folder, or a name under models/")
    parser.add_argument("--split", default="1_1", help="shard i of N (1-based), e.g. 2_4")
    parser.add_argument("--max_frames", "--max_frame_num", dest="max_frames", type=positive_int, default=600,
                        help="most frames sampled per video (1 fps first; --max_frame_num is the released scripts' "
                             "spelling); the keyframes among them are the checkpoint's max_frame_num")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--dtype", default=None, choices=DTYPES, help="default: bf16 on cuda, fp32 on cpu")
    parser.add_argument("--attn_implementation", default=None, choices=["flash_attention_2", "sdpa", "eager"])
    parser.add_argument("--limit", type=positive_int, default=None, help="only the first LIMIT questions of the file")
    parser.add_argument("--overwrite", action="store_true",
                        help="start this shard over: discard its records, record this run's settings")
    parser.add_argument("--retry_errors", action="store_true", help="redo the items recorded with an error")
    parser.add_argument("--decode_workers", type=positive_int, default=None,
                        help="processes decoding the next videos while one is answered (default: one per 4 cores of "
                             "this process's share of the machine, at most 4)")
    parser.add_argument("--decode_timeout", type=non_negative_float, default=1800.0,
                        help="seconds one video may take to decode before its worker is stopped and the video "
                             "recorded as failed (0: no limit)")
    parser.add_argument("--decode_memory_gb", type=non_negative_float, default=4.0,
                        help="memory for decoded videos waiting to be answered (each counted at --max_frames "
                             "frames); 0: each video decodes when its turn comes")
    parser.add_argument("--feature_cache_gb", type=non_negative_float, default=4.0,
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


def clean_shard(path: Path, run: str, overwrite: bool, retry_errors: bool) -> None:
    """Make record file `path` ready to be appended to; the caller holds its lock.

    `overwrite` empties it. Otherwise records of another run than `run` are refused, a half-written last record is
    cut away, and with `retry_errors` the failed records are dropped (the file rewritten in one step), so that their
    items are asked again.
    """
    if overwrite or not path.exists():
        path.write_bytes(b"")
        return
    records, good = read_records(path)
    foreign = next((record for record in records if record.get("run") != run), None)
    if foreign is not None:
        raise EvalError(f"{path}: record {foreign['qid']!r} is of another run ({foreign.get('run')}; this run is "
                        f"{run}); --overwrite starts this shard over")
    if retry_errors:
        records = [record for record in records if not record["error"]]
        with atomic_write(path) as temporary:
            temporary.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
        return
    with path.open("r+b") as handle:
        handle.truncate(good)
        if good:
            handle.seek(good - 1)
            if handle.read(1) != b"\n":
                handle.write(b"\n")


def make_record(benchmark: Benchmark, run: str, item: Item, response: str | None, error: str | None, frames: int,
                keyframes: list[int], seconds: float) -> dict:
    """One record: the item (with what a re-scorer needs: prompt, options, gold, settings), the outcome, its grade."""
    record = {"benchmark": benchmark.name, "run": run, "qid": item.qid, "video_id": item.video_id, **item.fields,
              "question": item.question, "prompt": item.prompt, "options": item.options, "answer": item.answer,
              "scored": item.scored, "max_new_tokens": item.max_new_tokens, "response": response, "error": error,
              "frames": frames, "keyframes": keyframes, "seconds": round(seconds, 3)}
    return record | grade_record(record)


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


def decode_ahead(args, pool) -> int:
    """How many videos may decode while one is answered: one per worker, fewer when the decoded videos held would
    not fit in --decode_memory_gb. (More would not decode faster, and under torchrun would claim videos that another
    rank could take.)"""
    from llava.decode_pool import video_bytes

    fit = int(args.decode_memory_gb * 2**30) // video_bytes(pool.processor, args.max_frames)
    return max(0, min(pool.workers, fit - 1))


def evaluate(benchmark: Benchmark, run: str, groups: Iterable[list[Item]], handle, model_bundle, args,
             total: int | None = None) -> tuple[int, int]:
    """Answer the questions of each video of `groups` (a list of questions per video, consumed lazily), appending
    one record per question to `handle`. Returns (done, errors).

    Videos decode in worker processes (`llava.decode_pool`), the next ones while this one is answered. Only an
    unusable video (a decoding timeout included) and a too-long prompt become error records; out of memory stops
    with an EvalError, any other exception propagates with a note; the records written before stay valid either way.
    """
    import torch
    from tqdm import tqdm

    from llava.decode_pool import DecodePool, prefetch
    from llava.inference import answer_video
    from llava.model import VideoFeatureCache
    from llava.model.modeling_llava_qwen import PromptTooLongError
    from llava.video import VideoDecodeError

    model, processor = model_bundle
    done = errors = 0
    videos = ((group, find_video(group[0])) for group in groups)
    with (DecodePool(processor.video_processor, args.decode_workers, args.decode_timeout or None) as pool,
          tqdm(total=total, desc=benchmark.name, unit="q", dynamic_ncols=True) as bar):
        for group, decoding in prefetch(pool, videos, args.max_frames, decode_ahead(args, pool)):
            started = time.perf_counter()
            try:
                video, video_error = decoding.result().frames, None
            except VideoDecodeError as error:
                video, video_error = None, f"{type(error).__name__}: {error}"
            wait_seconds = time.perf_counter() - started
            cache = VideoFeatureCache(int(args.feature_cache_gb * 2**30))
            for item in group:
                started = time.perf_counter()
                response, error_text, frames, keyframes = None, video_error, 0, []
                if video is not None:
                    try:
                        answer = answer_video(model, processor, video, item.question, item.prompt,
                                              item.max_new_tokens, cache)
                        response, frames, keyframes = answer.text, answer.num_frames, answer.keyframes
                    except PromptTooLongError as error:
                        error_text = f"{type(error).__name__}: {error}"
                    except torch.OutOfMemoryError as error:
                        raise EvalError(f"{handle.name}: out of memory answering {item.qid!r} (video {item.video_id}, "
                                        f"{len(video)} frames); lower --max_frames or use a larger device. "
                                        f"The {done} records written now are kept; re-run to resume") from error
                    except Exception as error:
                        error.add_note(f"{handle.name}: stopped at {item.qid!r} (video {item.video_id}); the {done} "
                                       "records written now are kept; re-run to resume")
                        raise
                errors += error_text is not None
                seconds = time.perf_counter() - started + (wait_seconds if item is group[0] else 0.0)
                record = make_record(benchmark, run, item, response, error_text, frames, keyframes, seconds)
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


def check_identity(output_dir: Path, run: str, identity: dict) -> None:
    """Refuse to add to a run folder whose run.json records another identity, naming the settings that differ."""
    recorded = read_manifest(output_dir)
    if recorded is None or recorded.get("run") == run:
        return
    changed = differences(recorded.get("identity") or {}, identity)
    shown = "; ".join(changed[:6]) + (f"; and {len(changed) - 6} more" if len(changed) > 6 else "")
    raise EvalError(f"{output_dir}: its run was made with other settings ({shown or 'run id differs'}); resuming "
                    "would mix two runs. Use another --output_dir, or --overwrite to start this shard over")


def plan_videos(items: list[Item], files: list[Path], longest_first: bool) -> list[list[str]]:
    """The question ids still to answer, one list per video: in the order of `items`, or the longest video first
    (duration read from the container; a video that cannot be read counts as 0 s and fails when decoded)."""
    from llava.video import probe_duration

    recorded = {record["qid"] for path in files for record in read_records(path)[0]}
    groups = group_by_video([item for item in items if item.qid not in recorded])
    if longest_first:
        groups.sort(key=lambda group: -probe_duration(find_video(group[0])))
    return [[item.qid for item in group] for group in groups]


def run(benchmark: Benchmark, argv=None) -> Path:
    """Parse arguments, evaluate this shard (resuming), print the scores of everything recorded so far.

    Every setting is checked, and the identity compared with the folder's, before the model loads. Under torchrun
    the ranks share the shard's videos (`llava.eval.distributed`), each writing its own record file; rank 0 prints
    the scores once all are done.
    """
    args = build_parser(benchmark).parse_args(argv)
    index, count = parse_split(args.split)
    checkpoint = find_checkpoint(args.version, flag="--version")
    dataset = Path(args.dataset_path)
    if not dataset.exists():
        raise EvalError(f"--dataset_path {dataset}: dataset file not found")
    if not Path(args.video_dir).is_dir():
        raise EvalError(f"--video_dir {args.video_dir}: no such folder")
    dtype = str(resolve_dtype(args.dtype, resolve_device(args.device)))
    items = benchmark.load(args)
    duplicate = next((qid for qid, n in Counter(item.qid for item in items).items() if n > 1), None)
    if duplicate is not None:
        raise EvalError(f"{dataset}: question id {duplicate!r} appears more than once")
    identity = run_identity(benchmark.name, checkpoint, dataset, args.max_frames, dtype, items)
    run_key = run_id(identity)
    items = items[: args.limit] if args.limit else items
    checkpoint_name = checkpoint.resolve().name
    output_dir = Path(args.output_dir or Path("outputs") / benchmark.name / checkpoint_name)
    output_dir.mkdir(parents=True, exist_ok=True)
    launch = Launch.from_environment(f"{benchmark.name}/{run_key}/{index}_of_{count}")
    path = shard_path(output_dir, benchmark.name, index, count, launch.rank)
    with shard_lock(path):
        if not args.overwrite:
            check_identity(output_dir, run_key, identity)
        clean_shard(path, run_key, args.overwrite, args.retry_errors)
        if launch.rank == 0:
            write_manifest(output_dir, {"benchmark": benchmark.name, "adapter": benchmark.module, "run": run_key,
                                        "identity": identity, "checkpoint": checkpoint_name,
                                        "checkpoint_path": str(checkpoint), "dataset_path": str(dataset),
                                        "items": [item.qid for item in items]})
            for rank, orphan in rank_files(output_dir, benchmark.name, index, count).items():
                if rank >= launch.world_size:  # left by a launch with more ranks: made ready here, answered by any
                    with shard_lock(orphan):
                        clean_shard(orphan, run_key, args.overwrite, args.retry_errors)
        launch.barrier("ready")
        mine = shard(items, index, count)
        plan = launch.share_plan(lambda: plan_videos(
            mine, list(rank_files(output_dir, benchmark.name, index, count).values()), launch.world_size > 1))
        todo = sum(len(qids) for qids in plan)
        if launch.rank == 0:
            processes = f" shared by {launch.world_size} processes" if launch.world_size > 1 else ""
            print(f"{benchmark.title}: shard {index}/{count}, {len(mine) - todo} recorded, {todo} to do{processes} "
                  f"-> {output_dir}")
        if todo:
            by_qid = {item.qid: item for item in mine}
            groups = ([by_qid[qid] for qid in plan[claim]] for claim in launch.claims(len(plan)))
            with path.open("a", encoding="utf-8") as handle:
                done, errors = evaluate(benchmark, run_key, groups, handle, load_model(checkpoint, args), args,
                                        total=todo if launch.world_size == 1 else None)
            rank = f"rank {launch.rank}: " if launch.world_size > 1 else ""
            print(f"{rank}answered {done} questions, {errors} failed (recorded with 'error')")
        launch.finish()
    if launch.rank == 0:
        print(format_summary(score_run(output_dir)))
    return path


@command
def main(benchmark: Benchmark, argv=None) -> None:
    """Entry point of the exp_*.py scripts and `python -m llava.eval.generic`."""
    run(benchmark, argv)
