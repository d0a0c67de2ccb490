"""The files of a run folder, read by the harness (resume) and the scorer:

    OUTPUT_DIR/run.json                           what produced the run (its identity), its id, every question id
    OUTPUT_DIR/{benchmark}_{i}_of_{N}.jsonl       records of shard i of N, one JSON object per line (UTF-8)
    OUTPUT_DIR/{benchmark}_{i}_of_{N}.rank{r}.jsonl  records of rank r > 0 when torchrun shares the shard out
    OUTPUT_DIR/<record file>.lock                 the writer lock of a record file: "pid P host H" of its holder
"""

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from llava.eval.benchmark import EvalError
from llava.files import atomic_write

MANIFEST = "run.json"


def shard_path(output_dir: Path, name: str, index: int, count: int, rank: int = 0) -> Path:
    """The record file of rank `rank` of shard `index` of `count` (rank 0's is the shard's own file)."""
    return Path(output_dir) / f"{name}_{index}_of_{count}{f'.rank{rank}' if rank else ''}.jsonl"


def rank_files(output_dir: Path, name: str, index: int, count: int) -> dict[int, Path]:
    """{rank: record file} of every rank that has written shard `index` of `count`, whatever the launch."""
    base = shard_path(output_dir, name, index, count)
    files = {0: base} if base.exists() else {}
    for path in Path(output_dir).glob(f"{name}_{index}_of_{count}.rank*.jsonl"):
        rank = path.name[len(base.stem) + len(".rank"):-len(".jsonl")]
        if rank.isdigit():
            files[int(rank)] = path
    return dict(sorted(files.items()))


def shard_files(output_dir) -> list[Path]:
    """Every shard file of a run folder, sorted (the hidden temporaries of atomic rewrites left out)."""
    return sorted(path for path in Path(output_dir).glob("*_of_*.jsonl") if not path.name.startswith("."))


def read_records(path) -> tuple[list[dict], int]:
    """Records of a shard file and the byte length of its complete records.

    The file is read as bytes. A last line that does not decode (cut by a kill mid-write, possibly inside a
    multi-byte UTF-8 character) is left out and not counted; any other bad line raises EvalError naming file and
    line.
    """
    path = Path(path)
    lines = path.read_bytes().split(b"\n")
    last = max((number for number, line in enumerate(lines) if line.strip()), default=-1)
    records, good, start = [], 0, 0
    for number, line in enumerate(lines):
        end = start + len(line) + (number < len(lines) - 1)  # with its newline
        if line.strip():
            try:
                record = json.loads(line.decode("utf-8"))
                if not isinstance(record, dict) or "qid" not in record:
                    raise ValueError("not a record (a JSON object with a qid)")
            except ValueError as error:  # UnicodeDecodeError and JSONDecodeError included
                if number == last:
                    break  # a write cut short: re-done on resume
                raise EvalError(f"{path}:{number + 1}: corrupt record ({error}); fix or remove the line") from error
            records.append(record)
            good = end
        start = end
    return records, good


@contextmanager
def shard_lock(path: Path) -> Iterator[None]:
    """Hold the writer lock of shard file `path` (flock on `path`.lock, which records "pid P host H") for the block.

    Another process holding it: EvalError at once, naming the holder. The OS drops the lock when its holder exits,
    however it ends.
    """
    lock_path = path.with_name(path.name + ".lock")
    descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 256, 0).decode("utf-8", "replace").strip() or "holder not written yet"
            raise EvalError(f"{path}: another process is writing this shard ({holder}, per {lock_path}); wait for "
                            "it or stop it") from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"pid {os.getpid()} host {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def read_manifest(output_dir) -> dict | None:
    """run.json of `output_dir`, or None when there is none."""
    path = Path(output_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except ValueError as error:
        raise EvalError(f"{path}: not valid JSON ({error}); --overwrite rewrites it") from error


def write_manifest(output_dir, manifest: dict) -> None:
    with atomic_write(Path(output_dir) / MANIFEST) as temporary:
        temporary.write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
