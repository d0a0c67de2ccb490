"""Decoding a video file into the frames the model sees, at model resolution, without holding the whole video.

Protocol of the paper: keep one decoded frame every `int(fps)` frames (at least 1), i.e. about 1 fps, then at most
`max_frame_num` of those by `np.linspace(0, n - 1, max_frame_num, dtype=int)`. Only those frames are converted to
images, and each is resized to the SigLIP and CLIP resolutions as it arrives: memory holds model-resolution uint8
frames plus a few frames at full resolution.

PyAV is tried first. Frames of 640x360 and more are decoded in parallel segments: the video is cut at keyframes into
one range per thread, each decoded (seeking to its keyframe) and resized by its own thread, frames identified by
their timestamps; the pixels are those of one sequential decode, which is the path for small frames, one thread, or
files whose timestamps are missing or repeated. decord (`VideoReader.get_batch` on the computed indices) is the
fallback; at 1 fps nearly every frame must be decoded anyway, and decord was measured slower and 9x
heavier in memory on long-GOP H.264 (docs/PERFORMANCE.md). Indices count decoded frames, so variable-frame-rate files
use their average rate.

`load_images` takes a video already cut into frames (encoded PNG/JPEG images, as OpenAI clients send them) through the
same cap and the same resizing.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
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
PARALLEL_DECODE_PIXELS = 640 * 360  # frames at least this large decode in parallel segments


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
    backend: str  # "pyav", "decord", or "images" (`load_images`)


def sample_indices(total_frames: int, fps: float, max_frame_num: int, sample_fps: float = 1.0) -> list[int]:
    """Indices of the frames to keep: every int(fps / sample_fps)-th frame (step at least 1), then at most
    `max_frame_num`. sample_fps=1 is the paper's every int(fps)-th frame."""
    if total_frames <= 0:
        raise ValueError(f"total_frames={total_frames}: the video has no frames")
    if max_frame_num < 1:
        raise ValueError(f"max_frame_num={max_frame_num}: must be at least 1")
    indices = np.arange(0, total_frames, max(int(fps / sample_fps), 1))
    return indices[evenly_spread(len(indices), max_frame_num)].tolist()


def evenly_spread(count: int, max_frame_num: int) -> np.ndarray:
    """Positions of at most `max_frame_num` of `count` frames: all of them, or
    `np.linspace(0, count - 1, max_frame_num, dtype=int)` (the paper's rule)."""
    if count <= max_frame_num:
        return np.arange(count)
    return np.linspace(0, count - 1, max_frame_num, dtype=int)


class _FrameSink:
    """Resizes each incoming full-resolution frame to both model resolutions, straight into its slot of preallocated
    uint8 arrays (no list of frames to stack afterwards, which would hold every frame twice). Threads may fill
    different slots at once."""

    def __init__(self, processor: VideoProcessor, planned: int, progress: Progress | None):
        self.processor, self.planned, self.progress = processor, planned, progress
        side, clip = processor.siglip_size, processor.clip_size
        self.siglip = np.empty((planned, side, side, 3), dtype=np.uint8)
        self.clip = np.empty((planned, clip, clip, 3), dtype=np.uint8)
        self.filled = np.zeros(planned, dtype=bool)
        self.lock = threading.Lock()

    def put(self, slot: int, image: Image.Image) -> None:
        image = image if image.mode == "RGB" else image.convert("RGB")
        self.siglip[slot] = self.processor.siglip_frame(image)
        self.clip[slot] = self.processor.clip_frame(image)
        with self.lock:
            self.filled[slot] = True
            count = int(self.filled.sum()) if self.progress is not None else 0
        if self.progress is not None:
            self.progress(count, self.planned)

    def frames(self) -> VideoFrames:
        """The frames received, in slot order (fewer than planned when the file ends early)."""
        kept = np.flatnonzero(self.filled)
        if len(kept) == self.planned:
            return VideoFrames(torch.from_numpy(self.siglip), torch.from_numpy(self.clip))
        return VideoFrames(torch.from_numpy(self.siglip[kept]), torch.from_numpy(self.clip[kept]))


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
        for slot, frame in enumerate(batch, start):
            sink.put(slot, Image.fromarray(frame))
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
        large = stream.codec_context.width * stream.codec_context.height >= PARALLEL_DECODE_PIXELS
        # The container's frame count is unreliable (absent, or wrong for variable frame rate): count packets.
        packets = [(packet.pts, packet.is_keyframe) for packet in container.demux(stream) if packet.size]
    if not packets:
        raise VideoDecodeError(path, "zero-length video (no frames)")
    if fps is None:
        raise VideoDecodeError(path, "no frame rate in the file's metadata")
    indices = sample_indices(len(packets), fps, max_frame_num, sample_fps)
    threads = threads or available_cores()
    sink = _FrameSink(processor, len(indices), progress)
    timestamps = sorted(pts for pts, _ in packets) if all(pts is not None for pts, _ in packets) else None
    if large and threads > 1 and timestamps is not None and len(set(timestamps)) == len(timestamps):
        keyframes = sorted(pts for pts, key in packets if key)
        wanted = {timestamps[position]: slot for slot, position in enumerate(indices)}
        bounds = _segment_bounds(keyframes, list(wanted), threads)
        with ThreadPoolExecutor(len(bounds) - 1) as pool:
            list(pool.map(lambda start, end: _decode_range(path, sink, wanted, start, end, 1),
                          bounds[:-1], bounds[1:]))
    if not sink.filled.all():  # small frames, one thread, no usable timestamps, or a segment came out short
        sink.filled[:] = False
        _decode_range(path, sink, dict(zip(indices, range(len(indices)))), None, None, threads)
    if not sink.filled.any():
        raise VideoDecodeError(path, "no frame could be decoded")
    return DecodedVideo(sink.frames(), [indices[slot] for slot in np.flatnonzero(sink.filled)], fps,
                        len(packets), "pyav")


IMAGE_FORMATS = ("PNG", "JPEG")


def load_images(images: dict[str, bytes], processor: VideoProcessor, max_frame_num: int) -> DecodedVideo:
    """A video sent as its frames: encoded PNG or JPEG images in order, by a name that errors give. At most
    `max_frame_num` of them are kept (`evenly_spread`, as for files), each decoded and resized as it comes. The images
    carry no times: they are taken to be 1 / `processor.fps` seconds apart.
    Raises `VideoDecodeError` naming the image that is not a PNG or JPEG, or cannot be decoded."""
    if not images:
        raise ValueError("no images: a video needs at least one frame")
    names = list(images)
    for name in names:  # every frame's header is checked, kept or not
        _open_image(name, images[name])
    indices = evenly_spread(len(names), max_frame_num).tolist()
    sink = _FrameSink(processor, len(indices), None)
    for slot, index in enumerate(indices):
        name = names[index]
        image = _open_image(name, images[name])
        try:
            sink.put(slot, image)
        except Exception as error:  # truncated or damaged image data
            raise VideoDecodeError(name, f"cannot decode the image: {type(error).__name__}: {error}") from error
    return DecodedVideo(sink.frames(), indices, processor.fps, len(names), "images")


def _open_image(name: str, data: bytes) -> Image.Image:
    try:
        image = Image.open(BytesIO(data))
    except Exception as error:  # not an image, or over PIL's decompression-bomb limit
        raise VideoDecodeError(name, f"not a PNG or JPEG image ({type(error).__name__}: {error})") from error
    if image.format not in IMAGE_FORMATS:
        raise VideoDecodeError(name, f"a {image.format} image; frames must be PNG or JPEG")
    return image


def available_cores() -> int:
    """CPU cores this process may use: its affinity set, shared among the processes of a node under torchrun."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def _segment_bounds(keyframes: list, wanted: list, count: int) -> list:
    """Timestamps cutting the video into at most `count` ranges [bound_i, bound_i+1), each starting at a keyframe
    (decodable alone) and holding about as many wanted frames; the last bound is infinity."""
    bounds = [keyframes[0]]
    for part in range(1, count):
        target = wanted[len(wanted) * part // count]
        start = max((key for key in keyframes if key <= target), default=bounds[-1])
        if start > bounds[-1]:
            bounds.append(start)
    return bounds + [float("inf")]


def _decode_range(path: Path, sink: _FrameSink, wanted: dict[int, int], start, end, threads: int) -> None:
    """Decode the frames of `path` whose key is in `wanted` ({key: sink slot}) into `sink`, resized as they come.

    With `start`/`end` (timestamps, `start` a keyframe's) the key is the frame's timestamp and decoding seeks to
    `start` and stops at `end`; without, the key is the frame's position in the decoded sequence, from the first
    frame to the last wanted one. FFmpeg decodes with `threads` threads (frame-parallel).
    """
    import av
    from av.video.reformatter import VideoReformatter

    to_rgb = VideoReformatter()  # reused: `frame.to_image()` builds a converter per frame (~7 ms each)
    last = max(wanted)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        if start is not None:
            container.seek(start, stream=stream)
        for position, frame in enumerate(container.decode(stream)):
            key = position if start is None else frame.pts
            if key > last or (end is not None and key >= end):
                return
            slot = wanted.get(key)
            if slot is not None and (start is None or key >= start):
                sink.put(slot, to_rgb.reformat(frame, format="rgb24").to_image())


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
    threads: decoding threads (0: `available_cores()` for PyAV, 1 for decord).
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
