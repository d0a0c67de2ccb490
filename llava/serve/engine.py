"""The one model behind the server: a bounded admission count, decoding in worker processes with a timeout
(`llava.decode_pool.DecodePool`; videos sent as images decode in a thread), a cache of decoded videos and their
query-independent features, and a single thread that runs the model."""

import asyncio
import hashlib
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from transformers.generation.streamers import BaseStreamer

from llava.decode_pool import DecodePool
from llava.errors import VilampError
from llava.inference import VideoAnswer, answer_conversation
from llava.model.modeling_llava_qwen import VideoFeatureCache
from llava.video import DecodedVideo, load_images

HASH_BLOCK = 1 << 20


class RequestError(VilampError):
    """A request the server refuses; `status` is the HTTP status (4xx), `param` the request field at fault."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.param, self.code = status, param, code


class ServerBusy(Exception):
    """Every admission slot is taken: the client should retry after `retry_after` seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"the server is busy ({retry_after} s suggested before retrying)")
        self.retry_after = retry_after


@dataclass
class CachedVideo:
    """A decoded video and the features the model keeps for it, shared by every question about it."""

    video: DecodedVideo
    features: VideoFeatureCache

    @property
    def nbytes(self) -> int:
        frames = self.video.frames
        embeddings = self.features.image_embs
        return (frames.siglip.nbytes + frames.clip.nbytes + self.features.used_bytes
                + (0 if embeddings is None else embeddings.numel() * embeddings.element_size()))


@dataclass
class VideoCache:
    """Decoded videos by (content hash, sampling settings), least recently used first out past `budget_bytes`."""

    budget_bytes: int
    entries: OrderedDict = field(default_factory=OrderedDict)

    def get(self, key) -> CachedVideo | None:
        entry = self.entries.get(key)
        if entry is not None:
            self.entries.move_to_end(key)
        return entry

    def put(self, key, video: DecodedVideo) -> CachedVideo:
        self.entries[key] = entry = CachedVideo(video, VideoFeatureCache(self.budget_bytes))
        return entry

    def trim(self) -> None:
        """Drop least recently used videos until the total is within the budget (the newest one stays)."""
        while len(self.entries) > 1 and self.nbytes > self.budget_bytes:
            self.entries.popitem(last=False)

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self.entries.values())


class TextDeltas(BaseStreamer):
    """Hands the answer to `on_delta` as it grows, in pieces whose concatenation is the final (stripped) answer:
    text is held back while it ends in an incomplete UTF-8 character (decoded as U+FFFD until its last byte comes)
    and the rest is sent at the end. Trailing whitespace is held back by the strip (it may end the answer)."""

    def __init__(self, tokenizer, on_delta):
        self.tokenizer, self.on_delta = tokenizer, on_delta
        self.prompt_seen, self.ids, self.sent = False, [], ""

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate() first passes the prompt
            self.prompt_seen = True
            return
        self.ids += value.reshape(-1).tolist()
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True).strip()
        if not text.endswith("\ufffd"):
            self.send(text)

    def end(self) -> None:
        self.send(self.tokenizer.decode(self.ids, skip_special_tokens=True).strip())

    def send(self, text: str) -> None:
        if len(text) > len(self.sent) and text.startswith(self.sent):
            self.on_delta(text[len(self.sent):])
            self.sent = text


@dataclass
class Settings:
    max_frame_num: int = 600  # frames sampled per video unless the request says fewer
    max_queue: int = 16  # requests admitted at once (decoding, waiting or answering); more get 503
    decode_workers: int | None = None  # decoding processes (default: DecodePool's share of the cores)
    decode_timeout: float = 300.0  # seconds one video may take to decode; then its worker is stopped
    cache_bytes: int = 4 << 30
    retry_after: int = 5  # seconds, in 503 replies


class Engine:
    """Admits requests, resolves and decodes their video (cached), and answers on the model's own thread."""

    def __init__(self, model, processor, settings: Settings):
        self.model, self.processor, self.settings = model, processor, settings
        self.cache = VideoCache(settings.cache_bytes)
        self.admitted = 0
        self.model_thread = ThreadPoolExecutor(1, thread_name_prefix="vilamp-model")
        self.decoders = DecodePool(processor.video_processor, settings.decode_workers, settings.decode_timeout)
        self.decoding: dict[tuple, asyncio.Future] = {}
        self.hashes: dict[tuple, str] = {}
        self.hash_lock = threading.Lock()

    def close(self) -> None:
        self.decoders.close()
        self.model_thread.shutdown(wait=False, cancel_futures=True)

    def admit(self) -> "Admission":
        if self.admitted >= self.settings.max_queue:
            raise ServerBusy(self.settings.retry_after)
        return Admission(self)

    def content_hash(self, path: Path) -> str:
        """SHA-256 of the file, remembered by (path, size, modification time)."""
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self.hash_lock:
            known = self.hashes.get(key)
        if known is None:
            digest = hashlib.sha256()
            with open(path, "rb") as file:
                while block := file.read(HASH_BLOCK):
                    digest.update(block)
            known = digest.hexdigest()
            with self.hash_lock:
                self.hashes[key] = known
        return known

    async def video(self, source: Path | dict[str, bytes], max_frame_num: int) -> tuple[CachedVideo, bool]:
        """(the decoded video with its features, whether it was cached already).

        source: a video file, decoded in a worker process (an unusable video, or one taking longer than
        `decode_timeout` seconds, raises VideoDecodeError); or a video's frames as encoded images in order, by the
        request part each came from (`llava.video.load_images`, in a thread; a bad image raises VideoDecodeError
        naming its part). Either is cached by the SHA-256 of its bytes and the sampling settings."""
        if isinstance(source, Path):
            digest = await asyncio.to_thread(self.content_hash, source)
        else:
            digest = await asyncio.to_thread(images_hash, source.values())
        vp = self.processor.video_processor
        key = (digest, max_frame_num, vp.fps, vp.siglip_size, vp.clip_size)
        if (entry := self.cache.get(key)) is not None:
            return entry, True
        if key not in self.decoding:  # one decode per video however many requests wait for it
            self.decoding[key] = (
                asyncio.wrap_future(self.decoders.submit(source, max_frame_num)) if isinstance(source, Path)
                else asyncio.get_running_loop().run_in_executor(None, load_images, source, vp, max_frame_num))
        try:
            decoded = await asyncio.shield(self.decoding[key])
        finally:
            if self.decoding.get(key) is not None and self.decoding[key].done():
                del self.decoding[key]
        return self.cache.get(key) or self.cache.put(key, decoded), False

    async def answer(self, entry: CachedVideo, messages: list[dict], question: str, max_new_tokens: int,
                     temperature: float, on_delta=None) -> VideoAnswer:
        """Answer on the model thread; `on_delta(text)` is called on the event loop as the answer grows."""
        loop = asyncio.get_running_loop()
        streamer = None
        if on_delta is not None:
            streamer = TextDeltas(self.processor.tokenizer, lambda text: loop.call_soon_threadsafe(on_delta, text))

        try:
            return await loop.run_in_executor(
                self.model_thread, answer_conversation, self.model, self.processor, entry.video.frames, messages,
                question, max_new_tokens, entry.features, temperature, streamer)
        finally:
            self.cache.trim()


def images_hash(images) -> str:
    """SHA-256 of a video's frames sent as encoded images: a tag, then each image's length and bytes (so that the
    concatenation is unambiguous)."""
    digest = hashlib.sha256(b"frames")
    for data in images:
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


class Admission:
    """One of the `max_queue` slots, held until `release()` (once the request is answered or has failed)."""

    def __init__(self, engine: Engine):
        self.engine, self.held = engine, True
        engine.admitted += 1

    def release(self) -> None:
        if self.held:
            self.held = False
            self.engine.admitted -= 1
