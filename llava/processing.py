"""Turning videos and questions into model inputs: `VilampProcessor` (transformers' `ProcessorMixin`).

Frames: `VideoProcessor(frames)` resizes each decoded frame once, as it arrives, to the two model resolutions and
keeps it as uint8: SigLIP (S x S, bicubic squash, no crop) and CLIP (shortest side C bicubic, centre crop C x C).
`normalize_siglip` / `normalize_clip` turn a chunk of those into float pixels right before the model uses them,
with the released arithmetic (x * 1/255 in float64, cast to float32, then (x - mean) / std in float32).

Text: the `qwen_1_5` chat template; each video of a prompt is one `<video>` token, which the processor expands to the
exact number of visual tokens the model will scatter there (`video_token_count`), and the video's question becomes
the CLIP query of DKS and DFM (truncated to CLIP's 77 tokens), tokenised by the checkpoint's CLIP tokenizer or
`default_clip_tokenizer()`, the real CLIP ViT-B/32 one, built offline.
"""

import functools
import gzip
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import BatchFeature, CLIPTokenizer, ProcessorMixin
from transformers.convert_slow_tokenizer import bytes_to_unicode
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from llava.errors import VilampError

SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class VideoFrames:
    siglip: torch.Tensor  # (N, S, S, 3) uint8, input of the SigLIP tower
    clip: torch.Tensor  # (N, C, C, 3) uint8, input of the CLIP frame selector

    def __len__(self) -> int:
        return self.siglip.shape[0]


class VideoProcessor:
    """Decoded frames or a video file -> `VideoFrames`. `clip_image_processor` is transformers' CLIP processor with
    the same settings (the reference the CLIP half is tested against). Files are sampled at `fps` frames a second,
    at most `max_frame_num` frames (`llava.video.load_video`)."""

    def __init__(self, siglip_size: int = 384, clip_size: int = 224, fps: float = 1.0, max_frame_num: int = 600):
        self.siglip_size = siglip_size
        self.fps = fps
        self.max_frame_num = max_frame_num
        self.clip_image_processor = CLIPImageProcessorPil(
            size={"shortest_edge": clip_size},
            crop_size={"height": clip_size, "width": clip_size},
            image_mean=list(CLIP_MEAN),
            image_std=list(CLIP_STD),
        )

    @property
    def clip_size(self) -> int:
        return self.clip_image_processor.crop_size["height"]

    def __call__(self, frames) -> VideoFrames:
        """frames: (N, H, W, 3) uint8 array or tensor, or a list of PIL images / (H, W, 3) uint8 arrays."""
        images = [_to_pil(frame) for frame in frames]
        if not images:
            raise ValueError("no frames to preprocess")
        siglip = np.stack([self.siglip_frame(image) for image in images])
        clip = np.stack([self.clip_frame(image) for image in images])
        return VideoFrames(torch.from_numpy(siglip), torch.from_numpy(clip))

    def load(self, video, max_frame_num: int | None = None) -> VideoFrames:
        """A video file path, decoded frames (see `__call__`) or `VideoFrames` -> `VideoFrames`."""
        if isinstance(video, VideoFrames):
            return video
        if isinstance(video, (str, Path)):
            from llava.video import load_video

            return load_video(video, self, max_frame_num or self.max_frame_num, sample_fps=self.fps).frames
        return self(video)

    def siglip_frame(self, image: Image.Image) -> np.ndarray:
        """PIL image -> (S, S, 3) uint8, bicubic resize to a square without keeping the aspect ratio."""
        return np.asarray(image.resize((self.siglip_size, self.siglip_size), Image.BICUBIC))

    def clip_frame(self, image: Image.Image) -> np.ndarray:
        """PIL image -> (C, C, 3) uint8: shortest side to C (bicubic, long side int(C * long / short)), centre
        crop. The arithmetic of `clip_image_processor`, done on the PIL image directly (3x faster per frame)."""
        size = self.clip_size
        width, height = image.size
        if width <= height:
            new_width, new_height = size, int(size * height / width)
        else:
            new_width, new_height = int(size * width / height), size
        resized = np.asarray(image.resize((new_width, new_height), Image.BICUBIC))
        top, left = (new_height - size) // 2, (new_width - size) // 2
        return np.ascontiguousarray(resized[top : top + size, left : left + size])


def _to_pil(frame) -> Image.Image:
    if isinstance(frame, Image.Image):
        return frame.convert("RGB")
    array = frame.numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"a frame must be an (H, W, 3) uint8 array, got {array.dtype} {tuple(array.shape)}")
    return Image.fromarray(array)


def _normalize(frames: torch.Tensor, mean, std) -> torch.Tensor:
    pixels = (frames.permute(0, 3, 1, 2).double() * (1 / 255)).float()
    mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((pixels - mean) / std).contiguous()


def normalize_siglip(frames: torch.Tensor) -> torch.Tensor:
    """(B, S, S, 3) uint8 -> (B, 3, S, S) float32 SigLIP pixels."""
    return _normalize(frames, SIGLIP_MEAN, SIGLIP_STD)


def normalize_clip(frames: torch.Tensor) -> torch.Tensor:
    """(B, C, C, 3) uint8 -> (B, 3, C, C) float32 CLIP pixels."""
    return _normalize(frames, CLIP_MEAN, CLIP_STD)


CLIP_MAX_TOKENS = 77
VIDEO_TOKEN = "<video>"
SYSTEM_PROMPT = "You are a helpful assistant."
# `qwen_1_5` (the released conversation template): a default system turn, a video as `<video>` and a newline
# before the text that follows it in the same turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n" + SYSTEM_PROMPT + "<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}" + VIDEO_TOKEN + "\n{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Keyword arguments of `__call__` that `apply_chat_template` forwards to it.
CALL_KWARGS = ("padding", "padding_side", "max_frame_num", "queries")


def video_token_count(num_frames: int, num_keyframes: int, tokens_per_keyframe: int, tokens_per_frame: int = 1) -> int:
    """Visual tokens of an N-frame video: min(N, K) keyframes x their pooled tokens, `tokens_per_frame` for every
    other frame, one `image_newline`."""
    keyframes = min(num_frames, num_keyframes)
    return keyframes * tokens_per_keyframe + (num_frames - keyframes) * tokens_per_frame + 1


def expand_video_tokens(ids, video_token_id: int, counts) -> list[int]:
    """Token ids with each occurrence of `video_token_id` repeated as many times as the next entry of `counts`
    (an iterator of visual-token counts, one per video, consumed in order)."""
    out = []
    for token in ids:
        out += [token] * next(counts) if token == video_token_id else [token]
    return out


# CLIP's BPE vocabulary as OpenAI released it, shipped by the PyPI package `openai-clip` (import name `clip`; its
# dependencies are ftfy, regex and tqdm, unlike open-clip-torch, which pulls in torchvision). Its first line is a
# version header, then merges by rank; CLIP keeps the first 49152 - 256 - 2 of them.
CLIP_BPE_PACKAGE, CLIP_BPE_FILE = "clip", "bpe_simple_vocab_16e6.txt.gz"
CLIP_BPE_MERGES = 49152 - 256 - 2
CLIP_SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")
CLIP_VOCAB_SIZE = 2 * 256 + CLIP_BPE_MERGES + len(CLIP_SPECIAL_TOKENS)  # 49,408


class ClipVocabularyMissing(VilampError, FileNotFoundError):
    """The package that ships CLIP's BPE vocabulary is not installed."""


def default_clip_tokenizer() -> CLIPTokenizer:
    """The CLIP ViT-B/32 tokenizer of the released DKS query (openai/clip-vit-base-patch32): byte-level BPE with
    49,408 tokens, `<|startoftext|>` 49406, `<|endoftext|>` 49407 (also padding), at most 77 tokens. Built from the
    vocabulary file `openai-clip` ships; nothing is downloaded. Each call returns a new tokenizer."""
    vocab, merges = _clip_bpe()
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=CLIP_MAX_TOKENS)


@functools.cache
def _clip_bpe() -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, str], ...]]:
    """-> (vocabulary as (token, id) pairs, merges in rank order) of CLIP's BPE. The ids: the 256 byte symbols (in
    the byte-to-unicode order), the same with the end-of-word mark `</w>`, one per merge, then the two specials."""
    spec = importlib.util.find_spec(CLIP_BPE_PACKAGE)  # locates the folder without importing it (needs torchvision)
    path = Path(next(iter(spec.submodule_search_locations))) / CLIP_BPE_FILE if spec else None
    if path is None or not path.is_file():
        raise ClipVocabularyMissing(f"CLIP's BPE vocabulary ({CLIP_BPE_FILE}) was not found: install it with "
                                    "`pip install openai-clip==1.0.1` (requirements.txt), or put the tokenizer "
                                    "files of openai/clip-vit-base-patch32 in the checkpoint's clip_tokenizer/")
    lines = gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")
    merges = tuple(tuple(line.split()) for line in lines[1 : 1 + CLIP_BPE_MERGES])
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(pair) for pair in merges] + list(CLIP_SPECIAL_TOKENS)
    return tuple((token, i) for i, token in enumerate(tokens)), merges


def tokenize_query(clip_tokenizer, question: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The DKS query as the released eval and training code tokenise it: CLIP ids truncated to 77 (BOS, the first
    75 tokens, EOS). Returns (T,) ids and (T,) attention mask."""
    query = clip_tokenizer(question, truncation=True, max_length=CLIP_MAX_TOKENS, return_tensors="pt")
    return query.input_ids[0], query.attention_mask[0]


class VilampProcessor(ProcessorMixin):
    """Qwen tokenizer + CLIP query tokenizer + frame processing, saved and loaded with the checkpoint.

    `processor(text=..., videos=..., queries=...)` or `processor.apply_chat_template(messages, tokenize=True,
    return_dict=True, ...)` -> `BatchFeature` with
      input_ids, attention_mask (B, L)         every `<video>` expanded to `video_token_count(N)` video tokens
      pixel_values_videos (sum N, S, S, 3)     uint8 SigLIP frames of all videos, in prompt order
      clip_pixel_values_videos (sum N, C, C, 3) uint8 CLIP frames
      video_num_frames (V,)                    frames of each video
      clip_input_ids, clip_attention_mask (V, T) each video's question for DKS / DFM
    Batches are padded on the left (`padding_side`) so that `model.generate(**inputs)` continues every prompt.
    """

    def __init__(self, tokenizer=None, clip_tokenizer=None, chat_template=None, video_token: str = VIDEO_TOKEN,
                 siglip_size: int = 384, clip_size: int = 224, fps: float = 1.0, max_frame_num: int = 600,
                 num_keyframes: int = 32, tokens_per_keyframe: int = 196, tokens_per_frame: int = 1, **kwargs):
        self.video_token = video_token
        self.siglip_size, self.clip_size, self.fps, self.max_frame_num = siglip_size, clip_size, fps, max_frame_num
        self.num_keyframes, self.tokens_per_keyframe, self.tokens_per_frame = num_keyframes, tokens_per_keyframe, tokens_per_frame
        super().__init__(tokenizer, clip_tokenizer, chat_template=chat_template or CHAT_TEMPLATE)
        if video_token not in tokenizer.get_vocab():
            tokenizer.add_special_tokens({"extra_special_tokens": [video_token]}, replace_extra_special_tokens=False)
        self.video_token_id = tokenizer.convert_tokens_to_ids(video_token)

    @property
    def video_processor(self) -> VideoProcessor:
        """Frame sampling and resizing with this processor's settings."""
        return VideoProcessor(self.siglip_size, self.clip_size, self.fps, self.max_frame_num)

    def video_token_count(self, num_frames: int) -> int:
        return video_token_count(num_frames, self.num_keyframes, self.tokens_per_keyframe, self.tokens_per_frame)

    def __call__(self, text=None, videos=None, queries=None, return_tensors=None, padding: bool | str = False,
                 padding_side: str = "left", max_frame_num: int | None = None, **kwargs) -> BatchFeature:
        """text: a prompt or a list of prompts, each `<video>` standing for the next video of `videos` (a path,
        decoded (N, H, W, 3) uint8 frames or PIL images, or `VideoFrames`; a list per prompt is flattened);
        queries: one question per video (the CLIP query). `max_frame_num` caps the frames sampled from files.
        Prompts are always padded to the longest (`padding` is accepted for transformers' call shape)."""
        unused = sorted(k for k, v in kwargs.items() if v is not None)
        if unused:
            raise ValueError(f"VilampProcessor takes text, videos and queries; got {', '.join(unused)}")
        texts = [text] if isinstance(text, str) else list(text or [])
        videos = _flatten(videos)
        queries = [queries] if isinstance(queries, str) else list(queries or [])
        placeholders = sum(t.count(self.video_token) for t in texts)
        if placeholders != len(videos):
            raise ValueError(f"the prompts hold {placeholders} {self.video_token} placeholder(s) but {len(videos)} "
                             "video(s) were given")
        if len(queries) != len(videos):
            raise ValueError(f"{len(videos)} video(s) need {len(videos)} question(s) (queries) for keyframe "
                             f"selection, got {len(queries)}")
        frames = [self.video_processor.load(video, max_frame_num) for video in videos]
        counts = iter([self.video_token_count(len(f)) for f in frames])
        ids = [expand_video_tokens(row, self.video_token_id, counts)
               for row in self.tokenizer(texts, add_special_tokens=False).input_ids]
        data = dict(self.tokenizer.pad({"input_ids": ids}, padding=padding or "longest", padding_side=padding_side,
                                       return_tensors=return_tensors))
        data.update(self.video_inputs(frames, queries))
        return BatchFeature(data, tensor_type=return_tensors)

    def video_inputs(self, frames: list[VideoFrames], queries: list[str]) -> dict:
        """The video tensors of `__call__` for decoded videos and their questions (empty without videos)."""
        if not frames:
            return {}
        query_ids = [tokenize_query(self.clip_tokenizer, q) for q in queries]
        longest = max(len(ids) for ids, _ in query_ids)
        pad = self.clip_tokenizer.pad_token_id
        return {
            "pixel_values_videos": torch.cat([f.siglip for f in frames]),
            "clip_pixel_values_videos": torch.cat([f.clip for f in frames]),
            "video_num_frames": torch.tensor([len(f) for f in frames]),
            "clip_input_ids": torch.stack([F.pad(ids, (0, longest - len(ids)), value=pad) for ids, _ in query_ids]),
            "clip_attention_mask": torch.stack([F.pad(mask, (0, longest - len(mask))) for _, mask in query_ids]),
        }

    def apply_chat_template(self, conversation, chat_template=None, processor_kwargs: dict | None = None, **kwargs):
        """transformers' `apply_chat_template`; a video part is `{"type": "video", "path": ...}` (or `"video"`:
        decoded frames) and its question is the part's `"query"`, else the text of its turn. `padding`,
        `padding_side`, `max_frame_num` may be passed directly."""
        processor_kwargs = {**(processor_kwargs or {}), **{k: kwargs.pop(k) for k in CALL_KWARGS if k in kwargs}}
        return super().apply_chat_template(conversation, chat_template, processor_kwargs=processor_kwargs, **kwargs)

    def _multimodal_inputs_from_conversations(self, conversations, *args, **kwargs):
        images, videos, audios, extra = super()._multimodal_inputs_from_conversations(conversations, *args, **kwargs)
        queries = []
        for conversation in conversations:
            for message in conversation:
                parts = message.get("content")
                if isinstance(parts, str) or not parts:
                    continue
                turn_text = " ".join(p["text"] for p in parts if p.get("type") == "text").strip()
                queries += [p.get("query", turn_text) for p in parts if p.get("type") == "video"]
        return images, videos, audios, {**extra, "queries": queries}

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)


def _flatten(videos) -> list:
    """None, one video, a list of videos, or one list of videos per prompt -> a flat list of videos."""
    if videos is None:
        return []
    if _is_one_video(videos):
        return [videos]
    flat = []
    for item in videos:
        flat += [item] if _is_one_video(item) else list(item)
    return flat


def _is_one_video(item) -> bool:
    """A path, `VideoFrames`, (N, H, W, 3) frames, or a list of frames (PIL images or (H, W, 3) arrays)."""
    if isinstance(item, (str, Path, VideoFrames)):
        return True
    if isinstance(item, (np.ndarray, torch.Tensor)):
        return item.ndim == 4
    if isinstance(item, (list, tuple)) and item:
        first = item[0]
        return isinstance(first, Image.Image) or (isinstance(first, (np.ndarray, torch.Tensor)) and first.ndim == 3)
    return False
