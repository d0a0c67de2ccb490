"""Decoding videos in worker processes, ahead of the model, each video under a wall-clock limit.

`DecodePool(processor, workers, timeout)` runs `llava.video.load_video` in `workers` processes (pebble's process
pool, started from a fork server that has imported the decoder once). `submit(path, max_frame_num)` returns a
`concurrent.futures.Future`; its result is the `DecodedVideo`, whose frame tensors arrive through shared memory (no
copy through a pipe). A video still decoding after `timeout` seconds ends its worker (FFmpeg and decord can hang on a
damaged file; a thread could not be stopped), and its future raises `VideoDecodeError`, as does a worker that dies.

`prefetch(pool, videos, ahead)` keeps the next `ahead` videos decoding while the caller works on the current one.
"""

import multiprocessing
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, TimeoutError
from pathlib import Path
from typing import TypeVar

from pebble import ProcessExpired, ProcessPool

from llava.processing import VideoProcessor
from llava.video import DecodedVideo, VideoDecodeError, available_cores, load_video

Key = TypeVar("Key")


def default_workers(cores: int) -> int:
    """One worker per 4 cores (FFmpeg's frame threads scale well to about 4), at least 1, at most 4."""
    return min(4, max(1, cores // 4))


def video_bytes(processor: VideoProcessor, max_frame_num: int) -> int:
    """Most bytes one decoded video takes: max_frame_num frames at both model resolutions, uint8 RGB."""
    return max_frame_num * 3 * (processor.siglip_size**2 + processor.clip_size**2)


def _decode(path: str, processor: VideoProcessor, max_frame_num: int, threads: int) -> DecodedVideo:
    video = load_video(path, processor, max_frame_num, sample_fps=processor.fps, threads=threads)
    for tensor in (video.frames.siglip, video.frames.clip):
        tensor.share_memory_()  # moved once here; pickling it then passes a file descriptor, not the bytes
    return video


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # resizing is PIL's; the decoder's threads are FFmpeg's


class DecodePool:
    """`workers` decoding processes with `threads` FFmpeg threads each (default: this process's cores shared out)."""

    def __init__(self, processor: VideoProcessor, workers: int | None = None, timeout: float | None = None):
        cores = available_cores()
        self.workers = workers or default_workers(cores)
        self.threads = max(1, cores // self.workers)
        self.processor, self.timeout = processor, timeout
        context = multiprocessing.get_context("forkserver")  # forking this process (threads, CUDA) is unsafe
        context.set_forkserver_preload(["llava.video"])
        self._pool = ProcessPool(max_workers=self.workers, initializer=_init_worker, context=context)

    def submit(self, path, max_frame_num: int) -> "Future[DecodedVideo]":
        """Decode `path` (at most `max_frame_num` frames) in a worker. The future raises VideoDecodeError for an
        unusable file, on a timeout and when the worker dies; any other exception is the worker's own (a bug)."""
        path = str(path)
        task = self._pool.schedule(_decode, (path, self.processor, max_frame_num, self.threads), timeout=self.timeout)
        future: Future = Future()

        def settle(task: Future) -> None:
            try:
                future.set_result(task.result())
            except TimeoutError:
                future.set_exception(VideoDecodeError(
                    path, f"decoding took longer than {self.timeout:g} s (--decode_timeout); its worker was stopped"))
            except ProcessExpired as error:  # FFmpeg crashed the process on this file
                future.set_exception(VideoDecodeError(path, f"the decoding worker died ({error})"))
            except BaseException as error:  # VideoDecodeError, or a bug: the caller tells them apart
                future.set_exception(error)

        task.add_done_callback(settle)
        return future

    def close(self) -> None:
        """Stop the workers now (decodes in flight are abandoned)."""
        self._pool.stop()
        self._pool.join()

    def __enter__(self) -> "DecodePool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def prefetch(pool: DecodePool, videos: Iterable[tuple[Key, Path]], max_frame_num: int,
             ahead: int) -> Iterator[tuple[Key, "Future[DecodedVideo]"]]:
    """Yield (key, future) for each (key, path) of `videos` in order, with up to `ahead` later videos submitted
    before each is yielded. `videos` is consumed lazily: the next one is taken only when a slot frees up."""
    pending: deque = deque()
    for key, path in videos:
        pending.append((key, pool.submit(path, max_frame_num)))
        if len(pending) > ahead:
            yield pending.popleft()
    while pending:
        yield pending.popleft()
