"""The training-data registry: which datasets to train on, where their videos are, how many records to take.

`--data_path` is either one JSON file of records or a YAML registry:

    datasets:
      - json_path: example-10.json          # .json (a list of records) or .jsonl (one record a line)
        sampling_strategy: all              # all | first:N | end:N | random:N | random:P%  (random: seeded)
        video_folder: dataset/example       # optional; default --video_folder
        max_frame_num: 16                   # optional frame cap for this dataset's videos
        fps: 1                              # optional sampling rate of video files (default 1 frame a second)
        frames: false                       # optional; true: `video` names a folder of frame images

Relative `json_path` / `video_folder` are resolved against the YAML file's folder. A record:

    {"video": "clip.mp4", "query": "what is in the video?", "max_frame_num": 32,
     "conversations": [{"from": "human", "value": "<image>\\nWhat is in the video?"}, {"from": "gpt", "value": "..."}]}

`conversations` is required; `video` is optional (text-only record), and then no turn may hold `<image>`; with a
video exactly one turn, a human one, holds `<image>`. `query` (the CLIP question) defaults to the first human turn
with `<image>` removed. Other keys are ignored. Every problem raises `RegistryError` naming the file and the record.
"""

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from llava.constants import DEFAULT_IMAGE_TOKEN
from llava.errors import VilampError

DATASET_KEYS = {"json_path", "sampling_strategy", "video_folder", "max_frame_num", "fps", "frames"}
ROLES = {"human": "user", "gpt": "assistant"}
DEFAULT_MAX_FRAMES = 600  # frame cap when neither the record, its dataset nor --frames_upbound sets one (eval's)
_STRATEGY = re.compile(r"^(all|first:(\d+)|end:(\d+)|random:(\d+)|random:(\d+(?:\.\d+)?)%)$")


class RegistryError(VilampError, ValueError):
    """A problem in the registry or a dataset file; the message names the file and the record."""


@dataclass(frozen=True)
class DatasetSpec:
    json_path: Path
    sampling_strategy: str = "all"
    video_folder: Path | None = None
    max_frame_num: int | None = None
    fps: float | None = None
    frames: bool = False


@dataclass(frozen=True)
class TrainRecord:
    """One training conversation, with everything resolved."""

    turns: tuple[tuple[str, str], ...]  # (role "user" | "assistant", text)
    video: Path | None  # a video file, a folder of frames (frames=True), or None for text only
    query: str  # CLIP question for DKS / DFM
    max_frame_num: int  # frame cap: the smallest of the record's, the dataset's and --frames_upbound
    fps: float  # frames sampled per second of a video file
    frames: bool
    source: str  # "file.json#index", for messages


def load_registry(data_path: str | Path, video_folder: str | Path | None = None) -> list[DatasetSpec]:
    """`--data_path` -> dataset specs. A .json/.jsonl path is one dataset taken whole from `video_folder`."""
    data_path = Path(data_path)
    if not data_path.is_file():
        raise RegistryError(f"--data_path {data_path}: file not found")
    default_folder = Path(video_folder) if video_folder else None
    if data_path.suffix in (".json", ".jsonl"):
        return [DatasetSpec(data_path, video_folder=default_folder)]
    if data_path.suffix not in (".yaml", ".yml"):
        raise RegistryError(f"--data_path {data_path}: expected a .yaml/.yml registry or a .json/.jsonl dataset")
    try:
        content = yaml.safe_load(data_path.read_text())
    except yaml.YAMLError as error:  # one line: where and what, without the excerpt PyYAML adds
        mark = getattr(error, "problem_mark", None)
        where = f"{data_path}, line {mark.line + 1}, column {mark.column + 1}" if mark else data_path
        raise RegistryError(f"{where}: not valid YAML: {getattr(error, 'problem', error)}") from error
    if not isinstance(content, dict) or not isinstance(content.get("datasets"), list) or not content["datasets"]:
        raise RegistryError(f"{data_path}: expected a top-level 'datasets:' list with at least one entry")
    return [_dataset_spec(entry, data_path, i, default_folder) for i, entry in enumerate(content["datasets"])]


def _dataset_spec(entry, registry: Path, index: int, default_folder: Path | None) -> DatasetSpec:
    where = f"{registry}: datasets[{index}]"
    if not isinstance(entry, dict):
        raise RegistryError(f"{where}: expected a mapping with json_path and sampling_strategy, got {entry!r}")
    unknown = set(entry) - DATASET_KEYS
    if unknown:
        raise RegistryError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(DATASET_KEYS)}")
    for key in ("json_path", "sampling_strategy"):
        if key not in entry:
            raise RegistryError(f"{where}: missing required key '{key}'")
    json_path = registry.parent / str(entry["json_path"])
    if not json_path.is_file():
        raise RegistryError(f"{where}: json_path {json_path} does not exist")
    strategy = str(entry["sampling_strategy"]).strip()
    if not _STRATEGY.match(strategy):
        raise RegistryError(
            f"{where}: unknown sampling_strategy {strategy!r}; expected all, first:N, end:N, random:N or random:P%"
        )
    folder = registry.parent / str(entry["video_folder"]) if entry.get("video_folder") else default_folder
    max_frames, fps, frames = entry.get("max_frame_num"), entry.get("fps"), entry.get("frames", False)
    if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 1):
        raise RegistryError(f"{where}: max_frame_num must be a positive integer, got {max_frames!r}")
    if fps is not None and (not isinstance(fps, (int, float)) or fps <= 0):
        raise RegistryError(f"{where}: fps must be a positive number, got {fps!r}")
    if not isinstance(frames, bool):
        raise RegistryError(f"{where}: frames must be true or false, got {frames!r}")
    if frames and fps is not None:
        raise RegistryError(f"{where}: fps applies to video files; a frames folder uses every image (drop fps)")
    return DatasetSpec(json_path, strategy, folder, max_frames, None if fps is None else float(fps), frames)


def sample_records(records: list, strategy: str, seed: int) -> list:
    """Subset of `records` by `strategy`; random:N / random:P% draw without replacement from `random.Random(seed)`."""
    match = _STRATEGY.match(strategy)
    if match is None:
        raise RegistryError(f"unknown sampling_strategy {strategy!r}")
    first, end, count, percent = match.group(2, 3, 4, 5)
    if first is not None:
        return records[: int(first)]
    if end is not None:
        return records[-int(end) :] if int(end) else []
    if count is not None or percent is not None:
        n = int(count) if count is not None else round(len(records) * float(percent) / 100)
        picked = sorted(random.Random(seed).sample(range(len(records)), min(n, len(records))))
        return [records[i] for i in picked]
    return list(records)


def read_dataset(spec: DatasetSpec, frames_upbound: int | None = None, seed: int = 0) -> list[TrainRecord]:
    """Read, sample and validate the records of one dataset."""
    raw = _read_json_records(spec.json_path)
    indexed = sample_records(list(enumerate(raw)), spec.sampling_strategy, seed)
    return [_record(item, spec, f"{spec.json_path}#{i}", frames_upbound) for i, item in indexed]


def load_training_records(
    data_path: str | Path, video_folder: str | Path | None = None, frames_upbound: int | None = None, seed: int = 0
) -> list[TrainRecord]:
    """Every record of every registered dataset, validated before training starts."""
    records = []
    for spec in load_registry(data_path, video_folder):
        records += read_dataset(spec, frames_upbound, seed)
    if not records:
        raise RegistryError(f"{data_path}: the registry selects no records")
    return records


def _read_json_records(path: Path) -> list:
    try:
        if path.suffix == ".jsonl":
            lines = path.read_text().splitlines()
            return [json.loads(line) for line in lines if line.strip()]
        content = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise RegistryError(f"{path}: not valid JSON: {error}") from error
    if not isinstance(content, list):
        raise RegistryError(f"{path}: expected a JSON list of records, got {type(content).__name__}")
    return content


def _record(item, spec: DatasetSpec, source: str, frames_upbound: int | None) -> TrainRecord:
    if not isinstance(item, dict):
        raise RegistryError(f"{source}: a record must be a JSON object")
    if "conversations" not in item:
        raise RegistryError(f"{source}: missing required key 'conversations'")
    conversations = item["conversations"]
    if not isinstance(conversations, list) or not conversations:
        raise RegistryError(f"{source}: 'conversations' must be a non-empty list of turns")
    turns = []
    for t, turn in enumerate(conversations):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise RegistryError(f"{source}: conversations[{t}] needs 'from' and 'value'")
        if turn["from"] not in ROLES or not isinstance(turn["value"], str):
            raise RegistryError(
                f"{source}: conversations[{t}]: 'from' must be human or gpt and 'value' a string, "
                f"got from={turn['from']!r}"
            )
        turns.append((ROLES[turn["from"]], turn["value"]))
    if all(role != "assistant" for role, _ in turns):
        raise RegistryError(f"{source}: no gpt turn, nothing to learn")
    placeholders = [(role, text.count(DEFAULT_IMAGE_TOKEN)) for role, text in turns]
    total = sum(count for _, count in placeholders)
    video = item.get("video")
    if video:
        if total != 1 or any(count and role != "user" for role, count in placeholders):
            raise RegistryError(
                f"{source}: a record with a video needs exactly one {DEFAULT_IMAGE_TOKEN} in a human turn, "
                f"found {total}"
            )
        video_path = Path(video)
        if not video_path.is_absolute() and spec.video_folder is not None:
            video_path = spec.video_folder / video_path
    else:
        if total:
            raise RegistryError(f"{source}: {DEFAULT_IMAGE_TOKEN} in the conversation but no 'video' key")
        video_path = None
    query = item.get("query")
    if query is None:
        first_human = next(text for role, text in turns if role == "user")
        query = first_human.replace(DEFAULT_IMAGE_TOKEN, "").strip()
    elif not isinstance(query, str):
        raise RegistryError(f"{source}: 'query' must be a string")
    own_cap = item.get("max_frame_num")
    if own_cap is not None and (not isinstance(own_cap, int) or own_cap < 1):
        raise RegistryError(f"{source}: max_frame_num must be a positive integer, got {own_cap!r}")
    caps = [cap for cap in (own_cap, spec.max_frame_num, frames_upbound) if cap is not None]
    return TrainRecord(
        turns=tuple(turns),
        video=video_path,
        query=query,
        max_frame_num=min(caps) if caps else DEFAULT_MAX_FRAMES,
        fps=spec.fps or 1.0,
        frames=spec.frames,
        source=source,
    )
