"""Decoding a video file into the frames the model sees, at model resolution, without holding the whole video.

Protocol of the paper: keep one decoded frame every `int(fps)` frames (at least 1), i.e. about 1 fps, then at most
`max_frame_num` of those by `np.linspace(0, n - 1, max_frame_num, dtype=int)`. Only those frames are converted to
images, and each is resized to the SigLIP and CLIP resolutions as it arrives: memory holds model-resolution uint8
frames plus a few frames at full resolution.

PyAV is tried first; for large frames a background thread decodes (frame-parallel FFmpeg decoding) while the caller's
thread resizes, with at most `DECODE_QUEUE` full-resolution frames in between. decord (`VideoReader.get_batch` on the computed
indices) is the fallback; at 1 fps nearly every frame must be decoded anyway, and decord was measured slower and 9x
heavier in memory on long-GOP H.264 (docs/PERFORMANCE.md). Indices count decoded frames, so variable-frame-rate files
use their average rate.
"""

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from llava.errors import VilampError
from llava.processing import VideoFrames, VideoProcessor

Progress = Callable[[int, int], None]  # (frames kept so far, frames planned)
DECODE_BATCH = 16  # full-resolution frames held at once by the decord path
DECODE_QUEUE = 4  # full-resolution frames waiting between the PyAV decoding thread and the resizing
BACKGROUND_DECODE_PIXELS = 640 * 360  # frames at least this large are decoded in a background thread


class VideoDecodeError(VilampError, RuntimeError):
    """A video could not be turned into frames; the message names the file and the reason."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __reduce__(self):  # raised in decoding workers and re-raised here
        return type(self), (self.path, self.reason)


@dataclass
class DecodedVideo:
    frames: VideoFrames  # (N, S, S, 3) and (N, C, C, 3) uint8
    indices: list[int]  # decoded-frame index of each kept frame, increasing
    fps: float  # average frame rate of the file
    total_frames: int  # decoded frames in the file (or its container's count)
    backend: str  # "decord" or "pyav"


def sample_indices(total_frames: int, fps: float, max_frame_num: int, sample_fps: float = 1.0) -> list[int]:
    """Indices of the frames to keep: every int(fps / sample_fps)-th frame (step at least 1), then at most
    `max_frame_num`. sample_fps=1 is the paper's every int(fps)-th frame."""
    if total_frames <= 0:
        raise ValueError(f"total_frames={total_frames}: the video has no frames")
    if max_frame_num < 1:
        raise ValueError(f"max_frame_num={max_frame_num}: must be at least 1")
    indices = np.arange(0, total_frames, max(int(fps / sample_fps), 1))
    if len(indices) > max_frame_num:
        indices = indices[np.linspace(0, len(indices) - 1, max_frame_num, dtype=int)]
    return indices.tolist()


class _FrameSink:
    """Resizes each incoming full-resolution frame to both model resolutions, straight into preallocated uint8
    arrays (no list of frames to stack afterwards, which would hold every frame twice)."""

    def __init__(self, processor: VideoProcessor, planned: int, progress: Progress | None):
        self.processor, self.planned, self.progress = processor, planned, progress
        side, clip = processor.siglip_size, processor.clip_size
        self.siglip = np.empty((planned, side, side, 3), dtype=np.uint8)
        self.clip = np.empty((planned, clip, clip, 3), dtype=np.uint8)
        self.count = 0

    def add(self, image: Image.Image) -> None:
        image = image.convert("RGB")
        self.siglip[self.count] = self.processor.siglip_frame(image)
        self.clip[self.count] = self.processor.clip_frame(image)
        self.count += 1
        if self.progress is not None:
            self.progress(self.count, self.planned)

    def frames(self) -> VideoFrames:
        """The frames received (fewer than planned when the file ends early)."""
        return VideoFrames(torch.from_numpy(self.siglip[: self.count]), torch.from_numpy(self.clip[: self.count]))


def _valid_fps(fps) -> bool:
    return fps is not None and np.isfinite(float(fps)) and float(fps) > 0


def _decode_decord(path: Path, processor: VideoProcessor, max_frame_num: int, sample_fps: float,
                   progress: Progress | None, threads: int) -> DecodedVideo:
    from decord import VideoReader, cpu

    reader = VideoReader(str(path), ctx=cpu(0), num_threads=threads or 1)
    total, fps = len(reader), reader.get_avg_fps()
    if total == 0:
        raise VideoDecodeError(path, "zero-length video (no frames)")
    if not _valid_fps(fps):
        raise VideoDecodeError(path, f"no usable frame rate in the file (got {fps!r})")
    indices = sample_indices(total, fps, max_frame_num, sample_fps)
    sink = _FrameSink(processor, len(indices), progress)
    for start in range(0, len(indices), DECODE_BATCH):
        batch = reader.get_batch(indices[start : start + DECODE_BATCH]).asnumpy()  # (B, H, W, 3) uint8
        for frame in batch:
            sink.add(Image.fromarray(frame))
    return DecodedVideo(sink.frames(), indices, float(fps), total, "decord")


def _pyav_rate(stream, container) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate is not None and _valid_fps(rate):
            return float(rate)
    if stream.frames and container.duration:
        return stream.frames / (container.duration / 1_000_000)
    return None


def _decode_pyav(path: Path, processor: VideoProcessor, max_frame_num: int, sample_fps: float,
                 progress: Progress | None, threads: int) -> DecodedVideo:
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise VideoDecodeError(path, "no video stream in the file")
        stream = container.streams.video[0]
        fps = _pyav_rate(stream, container)
        large = stream.codec_context.width * stream.codec_context.height >= BACKGROUND_DECODE_PIXELS
        # The container's frame count is unreliable (absent, or wrong for variable frame rate): count packets.
        total = sum(1 for packet in container.demux(stream) if packet.size)
    if total == 0:
        raise VideoDecodeError(path, "zero-length video (no frames)")
    if fps is None:
        raise VideoDecodeError(path, "no frame rate in the file's metadata")
    indices = sample_indices(total, fps, max_frame_num, sample_fps)
    sink, kept = _FrameSink(processor, len(indices), progress), []
    for position, image in _decoded_frames(path, indices, threads, background=large):
        sink.add(image)
        kept.append(position)
    if not kept:
        raise VideoDecodeError(path, "no frame could be decoded")
    return DecodedVideo(sink.frames(), kept, fps, total, "pyav")


def _decoded_frames(path: Path, indices: list[int], threads: int, background: bool):
    """Yield (position, PIL image) for the wanted decoded-frame positions; FFmpeg decodes with `threads` threads
    (0: as many as it sees cores).

    background: decode in a thread while the caller resizes. Worth it for large frames only: each hand-off through
    the queue can wait for Python's thread switch interval (5 ms), more than small frames take to decode.
    """
    import av
    from av.video.reformatter import VideoReformatter

    wanted, last = set(indices), indices[-1]

    def frames():
        to_rgb = VideoReformatter()  # reused: `frame.to_image()` builds a converter per frame (~7 ms each)
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame-parallel FFmpeg decoding
            stream.codec_context.thread_count = threads
            for position, frame in enumerate(container.decode(video=0)):
                if position > last:
                    return
                if position in wanted:
                    yield position, to_rgb.reformat(frame, format="rgb24").to_image()

    if not background:
        yield from frames()
        return
    handoff: queue.Queue = queue.Queue(maxsize=DECODE_QUEUE)
    stop = threading.Event()

    def decode() -> None:
        try:
            for item in frames():
                if stop.is_set():
                    break
                handoff.put(item)
        except Exception as error:  # handed to the consumer, which raises it
            handoff.put(error)
        handoff.put(None)

    worker = threading.Thread(target=decode, daemon=True)
    worker.start()
    try:
        while (item := handoff.get()) is not None:
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                handoff.get(timeout=0.1)
            except queue.Empty:
                pass


def probe_duration(path) -> float:
    """Seconds of video in `path` from its container's header (no decoding); 0.0 when it cannot be read."""
    import av

    try:
        with av.open(str(path)) as container:
            if container.duration:
                return container.duration / 1_000_000
            stream = container.streams.video[0]
            return float(stream.duration * stream.time_base) if stream.duration else 0.0
    except (OSError, ValueError, IndexError, av.error.FFmpegError):  # missing, damaged, not a video: decoding says why
        return 0.0


def load_video(
    path, processor: VideoProcessor, max_frame_num: int = 600, backend: str = "auto", sample_fps: float = 1.0,
    progress: Progress | None = None, threads: int = 0,
) -> DecodedVideo:
    """Decode `path` at about `sample_fps` frames a second (1: the paper's protocol), at most `max_frame_num` frames,
    resized by `processor` as they arrive.

    backend: "auto" (PyAV, then decord if PyAV fails on the file), "pyav" or "decord".
    progress: called after each kept frame with (frames kept so far, frames planned).
    threads: decoding threads (0: PyAV lets FFmpeg use every core; decord then uses one).
    Raises `VideoDecodeError` naming the file for a missing, empty, corrupt or rate-less video.
    """
    path = Path(path)
    if backend not in ("auto", "decord", "pyav"):
        raise ValueError(f"backend={backend!r}: expected auto, decord or pyav")
    if not path.is_file():
        raise VideoDecodeError(path, "video file not found")
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "empty file (0 bytes)")
    if backend == "decord":
        return _guarded(path, _decode_decord, processor, max_frame_num, sample_fps, progress, threads)
    try:
        return _guarded(path, _decode_pyav, processor, max_frame_num, sample_fps, progress, threads)
    except VideoDecodeError as error:
        if backend == "pyav":
            raise
        try:
            return _guarded(path, _decode_decord, processor, max_frame_num, sample_fps, progress, threads)
        except VideoDecodeError as fallback:
            raise VideoDecodeError(path, f"{error.reason} (decord: {fallback.reason})") from error


def _guarded(path: Path, decode, *args) -> DecodedVideo:
    """Run one backend; any failure becomes a VideoDecodeError naming the file."""
    try:
        return decode(path, *args)
    except VideoDecodeError:
        raise
    except Exception as error:
        raise VideoDecodeError(path, f"corrupt or unreadable video: {type(error).__name__}: {error}") from error
