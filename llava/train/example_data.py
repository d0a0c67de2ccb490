"""The small videos `example-10.json` refers to, generated with PyAV (H.264) when missing.

    python -m llava.train.example_data dataset/example

Each video is a coloured background with a white square moving left to right, 4 frames a second, 96x64 pixels.
"""

import argparse
from pathlib import Path

import numpy as np

from llava.errors import command

# file name -> (background RGB, seconds)
EXAMPLE_VIDEOS = {
    "red.mp4": ((200, 30, 30), 6),
    "green.mp4": ((30, 170, 60), 8),
    "blue.mp4": ((30, 60, 200), 10),
    "yellow.mp4": ((230, 210, 40), 12),
    "purple.mp4": ((120, 40, 160), 7),
}
FPS, WIDTH, HEIGHT, SQUARE = 4, 96, 64, 16


def write_video(path: Path, background: tuple[int, int, int], seconds: int) -> None:
    import av

    frames = FPS * seconds
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for i in range(frames):
            image = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
            image[:] = background
            x = (WIDTH - SQUARE) * i // max(frames - 1, 1)
            image[(HEIGHT - SQUARE) // 2 : (HEIGHT + SQUARE) // 2, x : x + SQUARE] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_example_videos(folder: str | Path) -> list[Path]:
    """Write the example videos missing from `folder`; returns the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (background, seconds) in EXAMPLE_VIDEOS.items():
        path = folder / name
        if not path.exists():
            write_video(path, background, seconds)
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
