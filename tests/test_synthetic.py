"""The synthetic needle-colour task: well-formed, balanced, answerable only from the video; the learning run
executes end to end (a short run: the 10-minute goal is `python -m llava.synthetic.learn`, see the README)."""

import json
from collections import Counter

import numpy as np
import pytest

from llava.eval.answers import gold_letter, split_option
from llava.eval.harness import read_jsonl
from llava.processing import VideoProcessor
from llava.synthetic import COLOURS, GREY, NEEDLE_FRAMES, OPTIONS, SIZE, generate
from llava.synthetic.learn import main as learn
from llava.train.registry import load_training_records
from llava.video import load_video


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synthetic"), train=32, test=16, seed=0)


def _rows(task):
    train = [(r["video"], r["conversations"][1]["value"], r["needle_frames"]) for r in json.loads((task / "train.json").read_text())]
    test = [(r["video"], r["answer"], r["needle_frames"]) for r in read_jsonl(task / "test.jsonl")]
    return train, test


def test_files_load_through_the_real_readers(task):
    records = load_training_records(task / "training_data.yaml")
    assert len(records) == 32 and all(r.video.is_file() and r.fps == 1.0 for r in records)
    assert records[0].turns[0][1].startswith("<image>\n") and str(OPTIONS) in records[0].turns[0][1]
    for row in read_jsonl(task / "test.jsonl"):
        assert row["options"] == OPTIONS and gold_letter(row["answer"], OPTIONS) in "ABCD"
        assert (task / "videos" / row["video"]).is_file() and (task / "blank" / row["video"]).is_file()
        assert row["task"] in ("early", "middle", "late")


def test_answers_and_needle_scenes_are_balanced(task):
    train, test = _rows(task)
    for rows in (train, test):
        answers = Counter(answer for _, answer, _ in rows)
        assert set(answers) == set(OPTIONS) and len(set(answers.values())) == 1, answers
    slots = Counter()
    for row in read_jsonl(task / "test.jsonl"):
        slots[next(i for i, s in enumerate(row["scenes"]) if s["start"] <= row["needle_frames"][0] < s["end"])] += 1
    assert sorted(slots) == [0, 1, 2, 3] and len(set(slots.values())) == 1, slots


def _background(frame: np.ndarray) -> str:
    colour = np.median(frame.reshape(-1, 3), axis=0)
    return min(COLOURS, key=lambda name: np.abs(colour - COLOURS[name]).sum())


def test_decoded_videos_need_the_needle_scene(task):
    """Decoded with the real decoder: white pixels in exactly the needle frames, all inside one scene whose
    background is the answer, and every option is the background of some scene (the text alone cannot tell)."""
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
        assert set(backgrounds) == {split_option(option)[1] for option in OPTIONS}
        blank = load_video(task / "blank" / row["video"], processor).frames.siglip.numpy()
        assert len(blank) == len(frames) and np.abs(blank.astype(int) - GREY).max() <= 3


def test_short_learning_run_prints_a_learn_line(tmp_path, capsys):
    learn(["--train", "16", "--test", "8", "--epochs", "1", "--work", str(tmp_path)])
    line = [line for line in capsys.readouterr().out.splitlines() if line.startswith("LEARN ")][-1]
    result = json.loads(line[len("LEARN ") :])
    assert result["chance"] == 0.25 and result["option_order"] == "fixed"
    for key in ("before", "after", "text_only"):
        assert 0.0 <= result[key] <= 1.0
    assert result["train_seconds"] > 0 and 20 <= result["frames_per_video"] <= 60
