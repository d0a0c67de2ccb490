"""Video decoding: the 1 fps + linspace protocol, both backends, variable frame rate, clear errors."""

import numpy as np
import pytest
import torch

from llava import files, video
from llava.eval.synthetic import frame_image, write_video
from llava.processing import VideoProcessor
from llava.video import VideoDecodeError, load_video, sample_indices

PROCESSOR = VideoProcessor(siglip_size=64, clip_size=32)


def test_sample_indices_one_per_second_then_linspace():
    assert sample_indices(300, 30.0, 600) == list(range(0, 300, 30))
    assert sample_indices(10, 29.97, 600) == [0]
    assert sample_indices(5, 0.5, 600) == [0, 1, 2, 3, 4]  # step at least 1
    every_second = np.arange(0, 1000, 2)
    assert sample_indices(1000, 2.0, 7) == every_second[np.linspace(0, 499, 7, dtype=int)].tolist()
    with pytest.raises(ValueError, match="no frames"):
        sample_indices(0, 30.0, 600)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("v") / "clip.mp4", seconds=3, fps=4, width=64, height=48)


def test_backends_agree_and_frames_are_model_sized(clip):
    decord = load_video(clip, PROCESSOR, backend="decord")
    pyav = load_video(clip, PROCESSOR, backend="pyav")
    assert decord.indices == pyav.indices == [0, 4, 8]
    assert decord.fps == pytest.approx(4.0) and decord.total_frames == pyav.total_frames == 12
    assert tuple(decord.frames.siglip.shape) == (3, 64, 64, 3) and tuple(decord.frames.clip.shape) == (3, 32, 32, 3)
    assert decord.frames.siglip.dtype == decord.frames.clip.dtype == pyav.frames.siglip.dtype
    assert (decord.frames.siglip.int() - pyav.frames.siglip.int()).abs().max() <= 2
    assert load_video(clip, PROCESSOR, max_frame_num=2).indices == [0, 8]


@pytest.mark.parametrize("variable_rate", [False, True])
def test_parallel_segments_give_the_frames_of_one_sequential_decode(tmp_path, monkeypatch, variable_rate):
    """640x360 (decoded in segments), a keyframe every 6 frames, B-frames (libx264's default): 2 and 3 threads cut
    the video at keyframes; the frames and indices equal those of one thread decoding it all in order."""
    frames = [frame_image(index, 640, 360) for index in range(45)]
    times_ms = [index * 125 + (40 if index % 2 else 0) for index in range(45)] if variable_rate else None
    path = files.write_video(tmp_path / "large.mp4", frames, 8, times_ms=times_ms, keyframe_interval=6)
    segments = []
    real_range = video._decode_range
    monkeypatch.setattr(video, "_decode_range", lambda path, sink, wanted, start, end, threads: (
        segments.append(start), real_range(path, sink, wanted, start, end, threads)))
    one = load_video(path, PROCESSOR, max_frame_num=5, sample_fps=2.0, threads=1)
    assert segments == [None]  # one thread: one sequential decode
    for threads in (2, 3):
        segments.clear()
        parallel = load_video(path, PROCESSOR, max_frame_num=5, sample_fps=2.0, threads=threads)
        assert len(segments) == threads and None not in segments
        assert parallel.indices == one.indices == [0, 8, 20, 32, 44]
        assert torch.equal(parallel.frames.siglip, one.frames.siglip)
        assert torch.equal(parallel.frames.clip, one.frames.clip)


def test_variable_frame_rate(tmp_path):
    path = write_video(tmp_path / "vfr.mp4", seconds=3, fps=4, variable_rate=True)
    decord = load_video(path, PROCESSOR, backend="decord")
    pyav = load_video(path, PROCESSOR, backend="pyav")
    assert decord.total_frames == pyav.total_frames == 12
    assert decord.indices == pyav.indices == sample_indices(12, decord.fps, 600)
    assert len(decord.frames) == len(decord.indices) >= 3


def test_errors_name_the_file(tmp_path, clip):
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(clip.read_bytes()[:300])
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video" * 50)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    cases = {tmp_path / "missing.mp4": "not found", empty: "empty", truncated: "corrupt", garbage: "corrupt"}
    for path, reason in cases.items():
        with pytest.raises(VideoDecodeError, match=reason) as info:
            load_video(path, PROCESSOR)
        assert str(path) in str(info.value)
