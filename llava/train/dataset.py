"""Training samples: a registry record -> token ids, labels and decoded frames, plus the batch collator.

The record's `<image>` (the LLaVA data format) becomes the processor's video tokens, as many as the model will
scatter there (`VilampProcessor.video_token_count`), so lengths are exact. Labels keep only the assistant answers
(and their `<|im_end|>`); everything else is IGNORE_INDEX. A sample longer than `model_max_length` is cut at that
length; when the cut would fall inside (or before) the video block, or leaves no answer token, the sample is dropped. A video that cannot be read drops
its sample too. Such samples come out as `Sample(event=...)` and the collator passes the events on, so that the
trainer (in the main process, whatever the number of DataLoader workers) logs, counts and limits them.
"""

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from llava.constants import DEFAULT_IMAGE_TOKEN, IGNORE_INDEX
from llava.conversation import conversation_pieces
from llava.files import atomic_write
from llava.processing import VideoFrames, VideoProcessor, VilampProcessor, expand_video_tokens
from llava.train.registry import TrainRecord
from llava.video import VideoDecodeError, evenly_spread, load_video

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataEvent:
    """Something that happened to one record: "truncated", "dropped" (too long) or "failed" (unreadable video)."""

    kind: str
    source: str  # "file.json#index"
    message: str


@dataclass
class Sample:
    input_ids: torch.Tensor | None  # (L,) with the video's tokens when there is a video
    labels: torch.Tensor | None  # (L,)
    frames: VideoFrames | None
    query: str | None = None  # the video's question (DKS / DFM query)
    event: DataEvent | None = None

    @property
    def usable(self) -> bool:
        return self.input_ids is not None


def tokenize_conversation(turns, processor: VilampProcessor, num_frames: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(role, text) turns -> input_ids (L,) and labels (L,), IGNORE_INDEX outside the assistant answers; the `<image>`
    of a turn becomes the video tokens of a `num_frames`-frame video."""
    counts = iter([processor.video_token_count(num_frames)] if num_frames else [])
    ids, labels = [], []
    for text, is_target in conversation_pieces(list(turns)):
        text = text.replace(DEFAULT_IMAGE_TOKEN, processor.video_token)
        piece = expand_video_tokens(processor.tokenizer(text, add_special_tokens=False).input_ids,
                                    processor.video_token_id, counts)
        ids += piece
        labels += piece if is_target else [IGNORE_INDEX] * len(piece)
    return torch.tensor(ids, dtype=torch.long), torch.tensor(labels, dtype=torch.long)


def load_frame_folder(folder: Path, processor: VideoProcessor, max_frame_num: int) -> VideoFrames:
    """A folder of frame images (sorted by file name) -> at most `max_frame_num` evenly spaced frames."""
    if not folder.is_dir():
        raise VideoDecodeError(folder, "frames folder not found")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise VideoDecodeError(folder, f"no frame images ({', '.join(sorted(IMAGE_SUFFIXES))}) in the folder")
    files = [files[i] for i in evenly_spread(len(files), max_frame_num)]
    images = []
    for file in files:
        try:
            with Image.open(file) as image:
                images.append(image.convert("RGB"))
        except (OSError, UnidentifiedImageError) as error:
            raise VideoDecodeError(file, f"unreadable frame image: {error}") from error
    return processor(images)


class DecodedVideoCache:
    """Decoded, resized frames of every training video on disk (`--video_cache_dir`), so that the second epoch, a
    resumed run or another rank reads two uint8 arrays instead of decoding (about 0.6 MB a frame at 384/224 pixels).

    One `.npz` file per (video, frame cap, sampling rate, frame sizes); the key includes the video's size and
    modification time, so a replaced video is decoded again. Files are written whole (temporary file + rename),
    so concurrent workers and ranks never read a partial one; an unreadable cache file is decoded again."""

    def __init__(self, folder: str | Path, processor: VideoProcessor):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.processor = processor

    def path(self, record: "TrainRecord") -> Path:
        stat = record.video.stat()
        key = (f"{record.video.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{record.max_frame_num}|{record.fps}|"
               f"{self.processor.siglip_size}|{self.processor.clip_size}")  # fmt: skip
        return self.folder / f"{hashlib.sha1(key.encode()).hexdigest()}.npz"

    def load(self, record: "TrainRecord", decode) -> VideoFrames:
        """The cached frames of `record`, or `decode()` (then stored)."""
        try:
            path = self.path(record)
        except OSError:  # missing video: let the decoder name the problem
            return decode()
        if path.is_file():
            try:
                with np.load(path) as stored:
                    return VideoFrames(torch.from_numpy(stored["siglip"]), torch.from_numpy(stored["clip"]))
            except (OSError, ValueError, KeyError) as error:
                logger.warning("%s (cache of %s) is unreadable, decoding again: %s", path, record.video, error)
        frames = decode()
        with atomic_write(path) as partial:
            np.savez(partial, siglip=frames.siglip.numpy(), clip=frames.clip.numpy())
        return frames


class SupervisedVideoDataset(torch.utils.data.Dataset):
    """Registry records -> `Sample`s (decoded on access, so DataLoader workers decode ahead of the model)."""

    def __init__(self, records: list[TrainRecord], processor: VilampProcessor, model_max_length: int,
                 cache: DecodedVideoCache | None = None):
        self.records = records
        self.cache = cache
        self.processor = processor
        self.model_max_length = model_max_length

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        record = self.records[index]
        frames = None
        if record.video is not None:
            try:
                frames = self.cache.load(record, lambda: self._decode(record)) if self.cache else self._decode(record)
            except VideoDecodeError as error:
                return Sample(None, None, None, event=DataEvent("failed", record.source, str(error)))
        input_ids, labels = tokenize_conversation(record.turns, self.processor, len(frames) if frames else 0)
        return self._fit(record, input_ids, labels, frames)

    def _decode(self, record: TrainRecord) -> VideoFrames:
        video_processor = self.processor.video_processor
        if record.frames:
            return load_frame_folder(record.video, video_processor, record.max_frame_num)
        return load_video(record.video, video_processor, record.max_frame_num, sample_fps=record.fps).frames

    def _fit(self, record: TrainRecord, input_ids, labels, frames) -> Sample:
        """Cut the sample to `model_max_length` tokens, or drop it."""
        query = record.query if frames is not None else None
        length, keep = input_ids.shape[0], self.model_max_length
        if length <= keep:
            return Sample(input_ids, labels, frames, query)
        video = (input_ids == self.processor.video_token_id).nonzero()
        video_end = int(video[-1]) + 1 if len(video) else 0
        what = f"{length} tokens ({len(video)} of them video) > model_max_length={keep}"
        if keep < video_end:
            return _dropped(record, f"{what}; the video alone does not fit")
        if (labels[:keep] == IGNORE_INDEX).all():
            return _dropped(record, f"{what}; no answer token would remain")
        event = DataEvent("truncated", record.source, f"{what}; text cut to {keep} tokens")
        return Sample(input_ids[:keep], labels[:keep], frames, query, event)


def _dropped(record: TrainRecord, message: str) -> Sample:
    return Sample(None, None, None, event=DataEvent("dropped", record.source, message))


class VideoCollator:
    """Samples -> model inputs: input_ids / labels / attention_mask (B, L) right-padded, the processor's video
    tensors of the batch's videos, plus `data_events` (every event of the batch) and `num_samples` (usable
    samples). A batch without a usable sample becomes one padding-only text sample so that every rank still runs
    every module; its loss is zeroed."""

    def __init__(self, processor: VilampProcessor):
        self.processor = processor

    def __call__(self, samples: list[Sample]) -> dict:
        events = [s.event for s in samples if s.event is not None]
        usable = [s for s in samples if s.usable]
        if not usable:
            pad = torch.tensor([self.processor.tokenizer.pad_token_id])
            usable_or_placeholder = [Sample(pad, torch.tensor([IGNORE_INDEX]), None)]
        else:
            usable_or_placeholder = usable
        return {**self._pad(usable_or_placeholder), "data_events": events, "num_samples": len(usable)}

    def _pad(self, samples: list[Sample]) -> dict:
        longest = max(s.input_ids.shape[0] for s in samples)
        input_ids = torch.full((len(samples), longest), self.processor.tokenizer.pad_token_id, dtype=torch.long)
        labels = torch.full((len(samples), longest), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(samples), longest), dtype=torch.long)
        for b, sample in enumerate(samples):
            n = sample.input_ids.shape[0]
            input_ids[b, :n], labels[b, :n], attention_mask[b, :n] = sample.input_ids, sample.labels, 1
        with_video = [s for s in samples if s.frames is not None]
        videos = self.processor.video_inputs([s.frames for s in with_video], [s.query for s in with_video])
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask, **videos}
