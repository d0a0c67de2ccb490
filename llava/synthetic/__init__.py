"""A synthetic long-video QA task that only the video can answer: "What colour is the background when the white
square appears?"

Every video (1 fps, H.264 via PyAV, `SIZE`x`SIZE` pixels, `MIN_SECONDS`-`MAX_SECONDS` s) is 2 to 4 scenes of
distinct colours of `COLOURS`, in a random order and of random lengths. A small white square (the needle) appears in
`NEEDLE_FRAMES` consecutive frames inside exactly one scene. The four options are always the four colours in the
fixed order of `COLOURS` (A. red, B. green, C. blue, D. yellow). Answers are balanced over the options; `position`
(early / middle / late: the needle's third of the video) is the breakdown field.

Several scenes per video keep the answer tied to the needle: a model that only knows which colours the video shows
scores the mean of 1 / scenes (`colour_prior`, about 0.36), not more. Fewer than four scenes in some videos is what
makes the task learnable by gradient descent at all: when every video shows every colour, a model that does not yet
look at the needle sees the same colours in every video, gets no gradient towards the needle, and sits on the
chance plateau (measured: the loss stayed at ln(4)/4 per answer token for 1300 steps; with 2-4 scenes it leaves it
after about 300).

    python -m llava.synthetic OUT_DIR --train 300 --test 60 --seed 0

writes OUT_DIR/videos/*.mp4, OUT_DIR/blank/*.mp4 (a uniform grey video of the same length for every test video:
the text-only control), OUT_DIR/train.json (records in the `example-10.json` format), OUT_DIR/training_data.yaml (a
registry entry for them) and OUT_DIR/test.jsonl (rows of `llava.eval.generic`: id, video, question, options,
answer, task = position, and needle_frames).
"""

import json
import random
from pathlib import Path

import numpy as np

from llava.constants import DEFAULT_IMAGE_TOKEN
from llava.conversation import multiple_choice_prompt
from llava.errors import VilampError
from llava.files import write_video

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40)}
QUESTION = "What colour is the background when the white square appears?"
OPTIONS = [f"{chr(ord('A') + i)}. {name}" for i, name in enumerate(COLOURS)]
SIZE = 32  # frame side in pixels
NEEDLE_SIDE = 8  # side of the white square in pixels
NEEDLE_FRAMES = 3  # consecutive frames showing the needle
MIN_SECONDS, MAX_SECONDS = 20, 60  # video length; 1 frame a second
MIN_SCENE = 4  # shortest scene in frames
MIN_SCENES = 2  # scenes per video: 2 to 4
GREY = (128, 128, 128)
CRF = 12  # libx264 quality of the videos; the shipped needle-vilamp was trained on exactly these files


def plan_video(rng: random.Random, answer: int) -> dict:
    """Layout of one video: 2-4 scenes of distinct colours, the needle in one of them, whose background is `answer`."""
    names = list(COLOURS)
    count = rng.randint(MIN_SCENES, len(COLOURS))
    others = [name for i, name in enumerate(names) if i != answer]
    rng.shuffle(others)
    slot = rng.randrange(count)
    scenes = others[:slot] + [names[answer]] + others[slot : count - 1]
    length = rng.randint(MIN_SECONDS, MAX_SECONDS)
    cuts = sorted(rng.sample(range(MIN_SCENE, length - MIN_SCENE + 1), count - 1))
    while min(b - a for a, b in zip([0, *cuts], [*cuts, length])) < MIN_SCENE:
        cuts = sorted(rng.sample(range(MIN_SCENE, length - MIN_SCENE + 1), count - 1))
    bounds = list(zip([0, *cuts], [*cuts, length]))
    start, end = bounds[slot]
    first = rng.randint(start, end - NEEDLE_FRAMES)
    return {
        "frames": length,
        "scenes": [{"colour": name, "start": a, "end": b} for name, (a, b) in zip(scenes, bounds)],
        "needle_frames": list(range(first, first + NEEDLE_FRAMES)),
        "needle_xy": (rng.randint(0, SIZE - NEEDLE_SIDE), rng.randint(0, SIZE - NEEDLE_SIDE)),
        "answer": names[answer],
    }


def render(plan: dict) -> np.ndarray:
    """(N, SIZE, SIZE, 3) uint8 frames of a planned video."""
    frames = np.zeros((plan["frames"], SIZE, SIZE, 3), dtype=np.uint8)
    for scene in plan["scenes"]:
        frames[scene["start"] : scene["end"]] = COLOURS[scene["colour"]]
    x, y = plan["needle_xy"]
    for f in plan["needle_frames"]:
        frames[f, y : y + NEEDLE_SIDE, x : x + NEEDLE_SIDE] = 255
    return frames


def colour_prior(rows: list[dict]) -> float:
    """Expected accuracy of guessing among the colours a video shows (knowing its scenes but not the needle)."""
    return sum(1 / len(row["scenes"]) for row in rows) / len(rows)


def position(plan: dict) -> str:
    """early / middle / late: the third of the video holding the needle's middle frame."""
    middle = plan["needle_frames"][NEEDLE_FRAMES // 2]
    return ("early", "middle", "late")[min(3 * middle // plan["frames"], 2)]


def generate(out_dir, train: int, test: int, seed: int = 0) -> Path:
    """Write the train and test splits (see the module docstring); returns `out_dir`."""
    if train < 0 or test < 1:
        raise VilampError(f"--train {train} / --test {test}: the test split needs a video, neither can be negative")
    out_dir = Path(out_dir)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    (out_dir / "blank").mkdir(exist_ok=True)
    rng = random.Random(seed)
    plans = []
    for split, count in (("train", train), ("test", test)):
        answers = [i % len(COLOURS) for i in range(count)]  # every option equally often, in shuffled order
        rng.shuffle(answers)
        plans += [(split, f"{split}_{i:04d}", plan_video(rng, answer)) for i, answer in enumerate(answers)]
    records, rows = [], []
    prompt = multiple_choice_prompt(QUESTION, OPTIONS)
    answer_option = {name: option for name, option in zip(COLOURS, OPTIONS)}
    for split, name, plan in plans:
        frames = render(plan)
        write_video(out_dir / "videos" / f"{name}.mp4", frames, fps=1, crf=CRF)
        if split == "train":
            records.append({
                "video": f"{name}.mp4", "query": QUESTION, "needle_frames": plan["needle_frames"],
                "conversations": [{"from": "human", "value": f"{DEFAULT_IMAGE_TOKEN}\n{prompt}"},
                                  {"from": "gpt", "value": answer_option[plan["answer"]]}],
            })  # fmt: skip
        else:
            write_video(out_dir / "blank" / f"{name}.mp4", np.full_like(frames, GREY), fps=1, crf=CRF)
            rows.append({"id": name, "video": f"{name}.mp4", "question": QUESTION, "options": OPTIONS,
                         "answer": answer_option[plan["answer"]], "task": position(plan),
                         "needle_frames": plan["needle_frames"], "scenes": plan["scenes"]})
    (out_dir / "train.json").write_text(json.dumps(records, indent=1))
    (out_dir / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (out_dir / "training_data.yaml").write_text(
        "# Synthetic needle-colour task (python -m llava.synthetic); paths relative to this file.\n"
        "datasets:\n  - json_path: train.json\n    sampling_strategy: all\n    video_folder: videos\n    fps: 1\n"
    )
    return out_dir
