"""The small videos `example-10.json` refers to, generated with PyAV (H.264) when missing.

    python -m llava.train.example_data dataset/example

Each video is a coloured background with a white square moving left to right, 4 frames a second, 96x64 pixels.
"""

import argparse
from pathlib import Path

import numpy as np

from llava.errors import command
from llava.files import write_video

# file name -> (background RGB, seconds)
EXAMPLE_VIDEOS = {
    "red.mp4": ((200, 30, 30), 6),
    "green.mp4": ((30, 170, 60), 8),
    "blue.mp4": ((30, 60, 200), 10),
    "yellow.mp4": ((230, 210, 40), 12),
    "purple.mp4": ((120, 40, 160), 7),
}
FPS, WIDTH, HEIGHT, SQUARE = 4, 96, 64, 16


def example_frames(background: tuple[int, int, int], seconds: int) -> np.ndarray:
    """(FPS * seconds, HEIGHT, WIDTH, 3) uint8: the background with the white square moving left to right."""
    count = FPS * seconds
    frames = np.empty((count, HEIGHT, WIDTH, 3), dtype=np.uint8)
    frames[:] = background
    for i in range(count):
        x = (WIDTH - SQUARE) * i // max(count - 1, 1)
        frames[i, (HEIGHT - SQUARE) // 2 : (HEIGHT + SQUARE) // 2, x : x + SQUARE] = 255
    return frames


def write_example_videos(folder: str | Path) -> list[Path]:
    """Write the example videos missing from `folder`; returns the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (background, seconds) in EXAMPLE_VIDEOS.items():
        path = folder / name
        if not path.exists():
            write_video(path, example_frames(background, seconds), FPS)
            written.append(path)
    return written


@command
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Generate the example videos of example-10.json when missing.")
    parser.add_argument("folder", type=Path, nargs="?", default=Path("dataset/example"))
    args = parser.parse_args(argv)
    written = write_example_videos(args.folder)
    print(f"{args.folder}: wrote {len(written)} example video(s), {len(EXAMPLE_VIDEOS) - len(written)} already there")


if __name__ == "__main__":
    main()
