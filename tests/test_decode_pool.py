"""Decoding in worker processes: results equal in-process decoding, a hung decoder is stopped by its timeout and the
pool goes on, a crashed worker is a decoding error, prefetching keeps a bounded number of videos ahead."""

import os
import threading

import pytest
import torch

from llava.decode_pool import DecodePool, prefetch
from llava.eval.synthetic import write_video
from llava.processing import VideoProcessor
from llava.video import VideoDecodeError, load_video

HANG_WIDTH, CRASH_WIDTH = 80, 96


class FragileProcessor(VideoProcessor):
    """Hangs forever on frames HANG_WIDTH wide (a decoder stuck on a damaged file) and kills its process on frames
    CRASH_WIDTH wide (FFmpeg crashing); ordinary on other frames."""

    def siglip_frame(self, image):
        if image.width == HANG_WIDTH:
            threading.Event().wait()
        if image.width == CRASH_WIDTH:
            os._exit(3)
        return super().siglip_frame(image)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pool")
    return {name: write_video(folder / f"{name}.mp4", seconds=seconds, fps=2, width=width)
            for name, seconds, width in [("short", 2, 64), ("long", 4, 64), ("hang", 2, HANG_WIDTH),
                                         ("crash", 2, CRASH_WIDTH)]}


def test_a_hung_or_crashed_decoder_fails_its_video_and_the_pool_goes_on(videos, tmp_path):
    processor = FragileProcessor(32, 24)
    with DecodePool(processor, workers=1, timeout=2) as pool:
        futures = {name: pool.submit(videos[name], 16) for name in ("hang", "short", "crash", "long")}
        futures["missing"] = pool.submit(tmp_path / "absent.mp4", 16)
        with pytest.raises(VideoDecodeError, match="decoding took longer than 2 s"):
            futures["hang"].result()
        with pytest.raises(VideoDecodeError, match="the decoding worker died"):
            futures["crash"].result()
        with pytest.raises(VideoDecodeError, match="video file not found") as missing:
            futures["missing"].result()
        assert missing.value.path == str(tmp_path / "absent.mp4")
        for name in ("short", "long"):
            pooled, here = futures[name].result(), load_video(videos[name], processor, 16)
            assert pooled.indices == here.indices and pooled.fps == here.fps
            assert torch.equal(pooled.frames.siglip, here.frames.siglip)
            assert torch.equal(pooled.frames.clip, here.frames.clip)


class CountingPool:
    """Stands for a DecodePool: records what was submitted, decodes nothing."""

    def __init__(self):
        self.submitted = []

    def submit(self, path, max_frame_num):
        self.submitted.append(path)
        return path


@pytest.mark.parametrize("ahead", [0, 1, 3])
def test_prefetch_keeps_at_most_ahead_videos_in_flight(ahead):
    pool, taken = CountingPool(), []

    def videos():
        for index in range(6):
            taken.append(index)
            yield index, f"video{index}"

    for key, future in prefetch(pool, videos(), 8, ahead):
        assert future == f"video{key}"
        assert len(pool.submitted) == min(key + 1 + ahead, 6)  # this one and at most `ahead` after it
        assert len(taken) == len(pool.submitted)  # nothing is taken from `videos` before it is submitted
    assert pool.submitted == [f"video{i}" for i in range(6)]
