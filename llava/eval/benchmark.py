"""What a benchmark adapter is made of: `Item`, `Benchmark`, the registry, and the readers of question files.

An adapter module defines `BENCHMARK = register(Benchmark(...))`; its entry script calls `llava.eval.harness.main`.
The scorer finds the benchmark of a run folder through the registry (importing the adapter module that `run.json`
names), so a new benchmark is one adapter file plus its entry script.
"""

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from llava.conversation import multiple_choice_prompt
from llava.errors import VilampError
from llava.eval.answers import gold_letter, letter_options


class EvalError(VilampError, RuntimeError):
    """A problem with the inputs of a run (dataset file, split, checkpoint, output folder); the message names it."""


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
    summarize: Callable[[list[dict]], list[dict]]  # scored records -> tables (llava.eval.tables)
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    # all records of a run, run folder -> {"file", ...}: a file in the benchmark's official submission format
    export: Callable[[list[dict], Path], dict] | None = None

    @property
    def module(self) -> str:
        """Importable name of the adapter module (right under `python -m` too, where it runs as __main__)."""
        module = sys.modules[self.load.__module__]
        return module.__spec__.name if module.__spec__ else module.__name__


BENCHMARKS: dict[str, Benchmark] = {}


def register(benchmark: Benchmark) -> Benchmark:
    """Add `benchmark` to `BENCHMARKS` under its name (called once by its adapter module); returns it."""
    known = BENCHMARKS.get(benchmark.name)
    if known is not None and known.module != benchmark.module:
        raise ValueError(f"benchmark name {benchmark.name!r} is taken by {known.module}")
    BENCHMARKS[benchmark.name] = benchmark
    return benchmark


def registered(name: str, module: str) -> Benchmark:
    """The benchmark `name`, importing its adapter `module` first when it has not registered yet."""
    if name not in BENCHMARKS:
        import importlib

        try:
            importlib.import_module(module)
        except ImportError as error:
            raise EvalError(f"benchmark {name!r}: its adapter module {module} cannot be imported ({error})") from error
    if name not in BENCHMARKS:
        raise EvalError(f"benchmark {name!r}: module {module} does not register it")
    return BENCHMARKS[name]


def positive_int(text: str) -> int:
    """argparse type of counts (--max_frames, --limit, --max_new_tokens): an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be at least 1")
    return value


def non_negative_float(text: str) -> float:
    """argparse type of budgets and limits (--decode_timeout, --decode_memory_gb): a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{value}: must be a finite number of at least 0")
    return value


# ----- reading question files -----


def read_jsonl(path) -> list[dict]:
    """Rows of a JSON-lines file (blank lines skipped); a missing file or bad line raises EvalError naming it."""
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"dataset file not found: {path}")
    rows = []
    for number, line in enumerate(path.read_bytes().split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise EvalError(f"{path}:{number}: not valid JSON ({error})") from error
        if not isinstance(row, dict):
            raise EvalError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def read_json(path):
    """The value of a whole JSON file; a missing file or bad JSON raises EvalError naming it."""
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"dataset file not found: {path}")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EvalError(f"{path}: not valid JSON ({error})") from error


def read_rows(path) -> list[dict]:
    """Rows of a question file, either JSON lines (the released files) or one JSON array of objects (the official
    annotation files)."""
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"dataset file not found: {path}")
    with path.open("rb") as handle:
        is_array = handle.read(64).lstrip().startswith(b"[")
    if not is_array:
        return read_jsonl(path)
    rows = read_json(path)
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise EvalError(f"{path} row {number}: expected a JSON object, got {type(row).__name__}")
    return rows


def question_rows(path, required: tuple[str, ...], rows: list[dict] | None = None) -> list[tuple[str, str, dict]]:
    """(where, stable id, row) for every row of a question file (`read_rows`, or `rows` read from `path` by the
    caller); `required[0]` is the video field.

    Every row is checked for the `required` fields first; a missing one raises EvalError naming file and row.
    """
    rows = read_rows(path) if rows is None else rows
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
