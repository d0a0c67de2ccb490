"""Small synthetic videos (PyAV, H.264) and sample benchmark files in the real formats, for tests and the demo."""

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def frame_image(index: int, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8: a colour that changes with `index` and a bar whose position encodes it."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:] = ((index * 37) % 256, (index * 91) % 256, (255 - index * 53) % 256)
    x = (index * 5) % max(width - 4, 1)
    image[:, x : x + 4] = 255
    return image


def write_video(path, seconds: float = 3, fps: int = 4, width: int = 64, height: int = 48,
                variable_rate: bool = False) -> Path:
    """Write an H.264 .mp4 of `seconds * fps` frames; `variable_rate` spaces frames irregularly (same count)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = int(seconds * fps)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        time_base = Fraction(1, 1000)
        if variable_rate:
            stream.codec_context.time_base = time_base
        pts = 0
        for index in range(count):
            frame = av.VideoFrame.from_ndarray(frame_image(index, width, height), format="rgb24")
            if variable_rate:
                frame.pts, frame.time_base = pts, time_base
                pts += int(1000 / fps * (0.5 if index % 2 else 1.5))  # alternating short and long gaps
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_jsonl(path, rows: list[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path
