"""Run identity: everything that decides a run's answers, recorded in run.json and compared on resume.

{"benchmark", "checkpoint": {"config", "weights": [{"file", "bytes", "sample_sha256"}]},
 "dataset": {"file", "sha256"}, "max_frames", "generation": {"max_new_tokens", "dtype"},
 "prompts_sha256", "vilamp_version"}

Paths and the checkpoint's folder name are left out (a run may move between machines); contents are hashed. A weight file is identified by its size
and the SHA-256 of its first and last MiB, so a 15 GB checkpoint is identified without reading it.
"""

import hashlib
import json
from pathlib import Path

import llava

SAMPLE_BYTES = 2**20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(2**24):
            digest.update(block)
    return digest.hexdigest()


def sample_sha256(path: Path) -> str:
    """SHA-256 of the size, the first MiB and the last MiB of `path`."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(SAMPLE_BYTES))
        handle.seek(max(size - SAMPLE_BYTES, 0))
        digest.update(handle.read(SAMPLE_BYTES))
    return digest.hexdigest()


def checkpoint_identity(checkpoint: Path) -> dict:
    """Full config.json and weight files (name, size, sampled hash) of a checkpoint folder."""
    from llava.model.builder import weight_files

    weights = weight_files(checkpoint, allow_pickle=True)  # listed only, never loaded here
    return {
        "config": json.loads((checkpoint / "config.json").read_text(encoding="utf-8")),
        "weights": [{"file": path.name, "bytes": path.stat().st_size, "sample_sha256": sample_sha256(path)}
                    for path in weights],
    }


def dataset_sha256(dataset: Path) -> str:
    """SHA-256 of a question file, or of the names and contents of the *.json files of a folder of them."""
    if not dataset.is_dir():
        return file_sha256(dataset)
    listing = [[path.name, file_sha256(path)] for path in sorted(dataset.glob("*.json"))]
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def answers_sha256(items) -> str:
    """SHA-256 of every item's video, options and gold answer: covers answer files read beside the questions."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(json.dumps([item.qid, item.video_id, item.options, item.answer, item.scored]).encode())
    return digest.hexdigest()


def prompts_sha256(items) -> str:
    """SHA-256 of every item's id, CLIP query and prompt, in order: the prompt variant."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(json.dumps([item.qid, item.question, item.prompt]).encode())
    return digest.hexdigest()


def run_identity(benchmark: str, checkpoint: Path, dataset: Path, max_frames: int, dtype: str, items) -> dict:
    """The identity of a run of `benchmark` over all `items` of `dataset` (before --limit and sharding)."""
    return {
        "benchmark": benchmark,
        "checkpoint": checkpoint_identity(checkpoint),
        "dataset": {"file": dataset.name, "sha256": dataset_sha256(dataset), "answers_sha256": answers_sha256(items)},
        "max_frames": max_frames,
        "generation": {"max_new_tokens": sorted({item.max_new_tokens for item in items}), "dtype": dtype},
        "prompts_sha256": prompts_sha256(items),
        "vilamp_version": llava.__version__,
    }


def run_id(identity: dict) -> str:
    """16 hex digits naming an identity; every record carries the id of the run that wrote it."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def differences(recorded: dict, current: dict, prefix: str = "") -> list[str]:
    """"key.path: recorded -> current" for every setting that differs (nested dicts walked, long values cut)."""

    def show(value) -> str:
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 60 else text[:57] + "..."

    found = []
    for key in sorted(set(recorded) | set(current), key=str):
        old, new, name = recorded.get(key), current.get(key), f"{prefix}{key}"
        if isinstance(old, dict) and isinstance(new, dict):
            found += differences(old, new, f"{name}.")
        elif old != new:
            found.append(f"{name}: {show(old)} -> {show(new)}")
    return found
