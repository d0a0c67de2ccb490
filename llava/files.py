"""Writing files: all at once (`atomic_write`) and H.264 videos from frames (`write_video`). No torch import."""

import itertools
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import numpy as np


@contextmanager
def atomic_write(path) -> Iterator[Path]:
    """Give a temporary path beside `path` to write; when the block ends without error it replaces `path` in one step,
    so no reader (another worker, rank or run) ever sees a partial file. The temporary name keeps the suffix, from
    which numpy and PyAV take the format."""
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_video(path, frames: Iterable[np.ndarray], fps: int, crf: int | None = None, preset: str | None = None,
                times_ms: list[int] | None = None, keyframe_interval: int | None = None) -> Path:
    """Encode (H, W, 3) uint8 RGB frames (an (N, H, W, 3) array or any iterable of them) as an H.264 (libx264,
    yuv420p) .mp4 at `fps` frames a second: the one writer of the generated test, demo and benchmark videos.

    crf, preset, keyframe_interval (frames between keyframes): libx264 settings (its defaults when None). times_ms: the
    time of each frame in milliseconds, for a variable frame rate.
    """
    import av

    millisecond = Fraction(1, 1000)
    images = iter(frames)
    first = next(images)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = first.shape[:2]
        stream.pix_fmt = "yuv420p"
        settings = (("preset", preset), ("crf", crf), ("g", keyframe_interval))
        stream.options = {name: str(value) for name, value in settings if value is not None}
        if times_ms is not None:
            stream.codec_context.time_base = millisecond
        for index, image in enumerate(itertools.chain([first], images)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if times_ms is not None:
                frame.pts, frame.time_base = times_ms[index], millisecond
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return Path(path)
