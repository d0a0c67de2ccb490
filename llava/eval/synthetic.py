"""Small synthetic videos (PyAV, H.264) and sample benchmark files in the real formats, for tests and the demo."""

import itertools
import json
from pathlib import Path

import numpy as np

from llava import files


def frame_image(index: int, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8: a colour that changes with `index` and a bar whose position encodes it."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:] = ((index * 37) % 256, (index * 91) % 256, (255 - index * 53) % 256)
    x = (index * 5) % max(width - 4, 1)
    image[:, x : x + 4] = 255
    return image


def write_video(path, seconds: float = 3, fps: int = 4, width: int = 64, height: int = 48,
                variable_rate: bool = False) -> Path:
    """Write an H.264 .mp4 of `seconds * fps` `frame_image` frames; `variable_rate` spaces frames irregularly (same
    count)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = int(seconds * fps)
    frames = (frame_image(index, width, height) for index in range(count))
    times_ms = None
    if variable_rate:  # alternating long and short gaps
        gaps = (int(1000 / fps * (0.5 if index % 2 else 1.5)) for index in range(count - 1))
        times_ms = list(itertools.accumulate(gaps, initial=0))
    return files.write_video(path, frames, fps, times_ms=times_ms)


def write_jsonl(path, rows: list[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path
