"""Ask one question about one video: frames in, answer and what the model did out."""

from dataclasses import dataclass
from pathlib import Path

import torch

from llava.model.modeling_llava_qwen import LlavaQwenForCausalLM, VideoEncoding, VideoFeatureCache
from llava.processing import VilampProcessor


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


def video_messages(prompt: str) -> list[dict]:
    """One user turn: a video, then `prompt` (the released layout `<image>\n{prompt}`)."""
    return [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}]


@torch.no_grad()
def answer_video(
    model: LlavaQwenForCausalLM,
    processor: VilampProcessor,
    frames,
    question: str,
    prompt: str,
    max_new_tokens: int = 128,
    cache: VideoFeatureCache | None = None,
) -> VideoAnswer:
    """Greedy answer to `prompt` (the text of the user turn after the video) about `frames`.

    frames: a video path, (N, H, W, 3) uint8 array/tensor, a list of PIL images, or `VideoFrames`; `question` is the
    CLIP query. cache: one `VideoFeatureCache` per video, passed with every question about it, reuses its features.
    The frames stay on the host; the model moves them to its device a chunk at a time.
    """
    if not isinstance(frames, (str, Path)) and len(frames) == 0:
        raise ValueError("no frames: the video yielded nothing to look at")
    text = processor.apply_chat_template(video_messages(prompt), add_generation_prompt=True)
    inputs = processor(text=text, videos=[frames], queries=[question], return_tensors="pt")
    video = {k: inputs.pop(k) for k in list(inputs.keys()) if k not in ("input_ids", "attention_mask")}
    encodings = model.model.get_video_features(**video, video_caches=[cache])
    input_ids = inputs["input_ids"].to(model.device)
    tokenizer = processor.tokenizer
    output = model.generate(
        input_ids=input_ids,
        attention_mask=inputs["attention_mask"].to(model.device),
        video_encodings=encodings,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    )
    encoding = encodings[0]
    visual = encoding.tokens.shape[0]
    return VideoAnswer(
        text=tokenizer.decode(output[0, input_ids.shape[1]:], skip_special_tokens=True).strip(),
        keyframes=encoding.keyframes,
        num_frames=int(video["video_num_frames"][0]),
        keyframe_tokens=encoding.keyframe_tokens,
        merged_tokens=encoding.merged_tokens,
        text_tokens=input_ids.shape[1] - visual,
        encoding=encoding,
    )
