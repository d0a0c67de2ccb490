"""Two CPU ranks under torchrun share one shard's videos: every question is recorded once, each video's questions in
one file, each rank takes the longest video left, rank 0 scores, and a relaunch adds nothing."""

import json
import os
import subprocess
import sys

from llava.eval.harness import read_records
from llava.eval.synthetic import write_jsonl, write_video
from tests.conftest import REPO

SECONDS = {"a": 2, "b": 5, "c": 1, "d": 4, "e": 3}  # unequal lengths, not in file order


def torchrun(argv):
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "llava.eval.generic", *argv]
    done = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_two_ranks_share_the_videos_longest_first_and_a_relaunch_adds_nothing(tmp_path, tiny_checkpoint):
    rows = [{"video": f"{name}.mp4", "question": f"What is shown {q}?", "options": ["red", "green", "blue"],
             "answer": "A", "id": f"{name}-{q}"} for name in SECONDS for q in range(2)]
    data = write_jsonl(tmp_path / "task.jsonl", rows)
    for name, seconds in SECONDS.items():
        write_video(tmp_path / "v" / f"{name}.mp4", seconds=seconds, fps=2)
    out = tmp_path / "out"
    argv = ["--dataset_path", str(data), "--video_dir", str(tmp_path / "v"), "--output_dir", str(out),
            "--version", str(tiny_checkpoint), "--max_frames", "4", "--max_new_tokens", "2"]
    first = torchrun(argv)
    assert "10 to do shared by 2 processes" in first and "Accuracy by task" in first  # rank 0 scored
    files = sorted(out.glob("*.jsonl"))
    assert {f.name for f in files} <= {"generic_1_of_1.jsonl", "generic_1_of_1.rank1.jsonl"}
    records = {f.name: read_records(f)[0] for f in files}
    qids = [r["qid"] for file_records in records.values() for r in file_records]
    assert sorted(qids) == sorted(row["id"] for row in rows)  # every question once
    for file_records in records.values():
        videos = list(dict.fromkeys(r["video_id"] for r in file_records))
        assert [SECONDS[v[0]] for v in videos] == sorted((SECONDS[v[0]] for v in videos), reverse=True)
        assert all(r["error"] is None for r in file_records)
    owners = {r["video_id"]: name for name, file_records in records.items() for r in file_records}
    assert all(sum(r["video_id"] == video for rs in records.values() for r in rs) == 2 for video in owners)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["records"], summary["missing"], summary["duplicates"]) == (10, 0, 0)

    again = torchrun(argv)
    assert "10 recorded, 0 to do" in again
    assert {f.name: read_records(f)[0] for f in sorted(out.glob("*.jsonl"))} == records
