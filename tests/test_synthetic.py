"""The synthetic needle-colour task: well-formed, balanced, answerable only from the video; a short learning run
through the real train and eval entry points learns it (the full goal is `python -m llava.synthetic.learn`)."""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from llava.eval.answers import gold_letter, split_option
from llava.eval.benchmark import read_jsonl
from llava.processing import VideoProcessor
from llava.synthetic import COLOURS, GREY, NEEDLE_FRAMES, OPTIONS, SIZE, colour_prior, generate
from llava.train.registry import load_training_records
from llava.video import load_video

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synthetic"), train=32, test=16, seed=0)


def _answers(task) -> tuple[list[str], list[str]]:
    train = [record["conversations"][1]["value"] for record in json.loads((task / "train.json").read_text())]
    return train, [row["answer"] for row in read_jsonl(task / "test.jsonl")]


def test_files_load_through_the_real_readers(task):
    records = load_training_records(task / "training_data.yaml")
    assert len(records) == 32 and all(r.video.is_file() and r.fps == 1.0 for r in records)
    assert records[0].turns[0][1].startswith("<image>\n") and str(OPTIONS) in records[0].turns[0][1]
    for row in read_jsonl(task / "test.jsonl"):
        assert row["options"] == OPTIONS and gold_letter(row["answer"], OPTIONS) in "ABCD"
        assert (task / "videos" / row["video"]).is_file() and (task / "blank" / row["video"]).is_file()
        assert row["task"] in ("early", "middle", "late")


def test_answers_are_balanced_and_videos_mix_scene_counts_and_positions(task):
    for answers in map(Counter, _answers(task)):
        assert set(answers) == set(OPTIONS) and len(set(answers.values())) == 1, answers
    rows = read_jsonl(task / "test.jsonl")
    assert {len(row["scenes"]) for row in rows} == {2, 3, 4}
    assert {row["task"] for row in rows} == {"early", "middle", "late"}
    assert colour_prior(rows) == pytest.approx(sum(1 / len(row["scenes"]) for row in rows) / len(rows))
    assert 0.25 < colour_prior(rows) < 0.5


def _background(frame: np.ndarray) -> str:
    colour = np.median(frame.reshape(-1, 3), axis=0)
    return min(COLOURS, key=lambda name: np.abs(colour - COLOURS[name]).sum())


def test_decoded_videos_need_the_needle_scene(task):
    """Decoded with the real decoder: white pixels in exactly the needle frames, all inside one scene whose
    background is the answer; the other scenes show other options (the colours alone cannot tell)."""
    processor = VideoProcessor(SIZE, SIZE)
    for row in read_jsonl(task / "test.jsonl"):
        frames = load_video(task / "videos" / row["video"], processor).frames.siglip.numpy()
        assert len(frames) == row["scenes"][-1]["end"]
        white = [f for f, frame in enumerate(frames) if (frame.min(axis=-1) > 230).sum() >= 16]
        assert white == row["needle_frames"] and len(white) == NEEDLE_FRAMES
        scenes = [s for s in row["scenes"] if s["start"] <= white[0] and white[-1] < s["end"]]
        assert len(scenes) == 1 and split_option(row["answer"])[1] == scenes[0]["colour"]
        backgrounds = [_background(frame) for frame in frames]
        assert backgrounds == [s["colour"] for s in row["scenes"] for _ in range(s["end"] - s["start"])]
        colours = [s["colour"] for s in row["scenes"]]
        assert len(set(colours)) == len(colours) >= 2 and set(colours) <= {split_option(o)[1] for o in OPTIONS}
        blank = load_video(task / "blank" / row["video"], processor).frames.siglip.numpy()
        assert len(blank) == len(frames) and np.abs(blank.astype(int) - GREY).max() <= 3


SHORT_SEEDS = (0, 1)  # one process per core; seed 1 was the weakest of seeds 0-5 under the old recipe


@pytest.fixture(scope="module")
def short_runs(tmp_path_factory) -> dict[int, dict]:
    """`python -m llava.synthetic.learn` on 120 training and 24 test videos, 30 epochs (450 steps), for each seed of
    SHORT_SEEDS: one process per seed with one thread each, both at once (about 3 minutes on two cores; tiny models
    gain nothing from a second thread). Bounded by epochs, not time: the same on a loaded or an idle machine."""
    work = tmp_path_factory.mktemp("learn")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "llava.synthetic.learn", "--train", "120", "--test", "24", "--epochs", "30"]
    runs = {seed: subprocess.Popen([*command, "--seed", str(seed), "--work", str(work / f"seed{seed}")], cwd=REPO,
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for seed in SHORT_SEEDS}  # fmt: skip
    results = {}
    for seed, process in runs.items():
        output = process.communicate()[0]
        assert process.returncode == 0, output[-3000:]
        lines = [line for line in output.splitlines() if line.startswith("LEARN ")]
        assert len(lines) == 1, output[-3000:]
        results[seed] = json.loads(lines[0][len("LEARN ") :])
        assert results[seed] == json.loads((work / f"seed{seed}" / f"seed{seed}-dfm-k4" / "learn.json").read_text())
    return results


@pytest.mark.slow
@pytest.mark.parametrize("seed", SHORT_SEEDS)
def test_a_short_learning_run_learns_the_needle(short_runs, seed):
    """A lower bar than the full run's (>= 0.5 instead of 0.9)."""
    result = short_runs[seed]
    assert result["seed"] == seed and result["threads"] == 1
    assert result["chance"] == 0.25 and result["option_order"] == "fixed" and 20 <= result["frames_per_video"] <= 60
    assert result["train_steps"] == 30 * 120 // 8 and not result["stopped_by_time_cap"]
    assert result["after"] >= 0.5, result
    assert result["text_only"] <= 0.5, result  # blank videos: the prompt alone does not tell the answer
    assert result["after"] > max(result["before"], result["colour_prior"]) + 0.1, result
