"""Ask one question about one video: frames in, answer and what the model did out."""

from dataclasses import dataclass

import torch

from llava.constants import DEFAULT_IMAGE_TOKEN
from llava.conversation import chat_prompt
from llava.mm_utils import tokenizer_image_token
from llava.model.modeling_llava_qwen import LlavaQwenForCausalLM, VideoEncoding, VideoFeatureCache, VideoInputs
from llava.processing import VideoFrames, VideoProcessor

CLIP_MAX_TOKENS = 77


@dataclass
class VideoAnswer:
    text: str
    keyframes: list[int]  # indices into the frames given
    num_frames: int
    keyframe_tokens: int
    merged_tokens: int
    text_tokens: int  # prompt tokens other than the video block
    encoding: VideoEncoding  # relevance scores and the token block, for inspection

    @property
    def visual_tokens(self) -> int:
        return self.keyframe_tokens + self.merged_tokens + 1  # + image_newline


def video_inputs(processor: VideoProcessor, frames, question: str, cache: VideoFeatureCache | None = None) -> VideoInputs:
    """Decoded frames (or ready `VideoFrames`) and the bare question -> model inputs."""
    video_frames = frames if isinstance(frames, VideoFrames) else processor(frames)
    query_ids, query_mask = tokenize_query(processor.clip_tokenizer, question)
    return VideoInputs(video_frames, query_ids, query_mask, cache)


def tokenize_query(clip_tokenizer, question: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The DKS query as the released eval and training code tokenise it: CLIP ids truncated to 77 (BOS, the first
    75 tokens, EOS). Returns (T,) ids and (T,) attention mask."""
    query = clip_tokenizer(question, truncation=True, max_length=CLIP_MAX_TOKENS, return_tensors="pt")
    return query.input_ids[0], query.attention_mask[0]


@torch.no_grad()
def answer_video(
    model: LlavaQwenForCausalLM,
    tokenizer,
    processor: VideoProcessor,
    frames,
    question: str,
    prompt: str,
    max_new_tokens: int = 128,
    cache: VideoFeatureCache | None = None,
) -> VideoAnswer:
    """Greedy answer to `prompt` (the user turn, with exactly one `<image>`) about `frames`.

    frames: (N, H, W, 3) uint8 array/tensor, a list of PIL images, or `VideoFrames`; `question` is the CLIP query.
    cache: one `VideoFeatureCache` per video, passed with every question about it, reuses its features.
    """
    count = prompt.count(DEFAULT_IMAGE_TOKEN)
    if count != 1:
        raise ValueError(f"the prompt must contain exactly one {DEFAULT_IMAGE_TOKEN} placeholder, found {count}")
    if len(frames) == 0:
        raise ValueError("no frames: the video yielded nothing to look at")
    video = video_inputs(processor, frames, question, cache)
    input_ids = tokenizer_image_token(chat_prompt(prompt), tokenizer)[None].to(model.device)
    prepared = model.prepare_multimodal_inputs(input_ids, [video])
    output = model.generate(
        inputs_embeds=prepared.inputs_embeds,
        attention_mask=prepared.attention_mask,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    )
    encoding = prepared.encodings[0]
    return VideoAnswer(
        text=tokenizer.decode(output[0], skip_special_tokens=True).strip(),
        keyframes=encoding.keyframes,
        num_frames=len(video.frames),
        keyframe_tokens=encoding.keyframe_tokens,
        merged_tokens=encoding.merged_tokens,
        text_tokens=input_ids.shape[1] - 1,
        encoding=encoding,
    )
