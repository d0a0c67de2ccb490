"""llava.files: the atomic write and the one H.264 writer."""

import av
import numpy as np
import pytest

from llava.files import atomic_write, write_video


def test_atomic_write_replaces_the_file_whole_or_not_at_all(tmp_path):
    path = tmp_path / "summary.json"
    with atomic_write(path) as temporary:
        temporary.write_text("complete")
    with pytest.raises(RuntimeError), atomic_write(path) as temporary:
        temporary.write_text("half")
        raise RuntimeError("killed while writing")
    assert path.read_text() == "complete" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_write_video_keeps_size_count_colours_and_times(tmp_path):
    frames = np.zeros((5, 48, 64, 3), np.uint8)
    frames[:, :, 32:] = (200, 40, 40)
    path = write_video(tmp_path / "v.mp4", iter(frames), fps=2, crf=0, times_ms=[0, 500, 1500, 1750, 2500])
    with av.open(str(path)) as container:
        decoded = list(container.decode(video=0))
    images = np.stack([frame.to_ndarray(format="rgb24") for frame in decoded]).astype(int)
    assert images.shape == frames.shape and np.abs(images - frames).max() <= 4
    assert [round(frame.time * 1000) for frame in decoded] == [0, 500, 1500, 1750, 2500]
