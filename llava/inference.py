"""Ask one question about one video: frames in, answer and what the model did out."""

from dataclasses import dataclass
from pathlib import Path

import torch

from llava.model.modeling_llava_qwen import LlavaQwenForCausalLM, VideoEncoding, VideoFeatureCache
from llava.processing import VilampProcessor
from llava.video import DecodedVideo
from llava.visualize import timestamp


@dataclass
class VideoAnswer:
    text: str
    keyframes: list[int]  # indices into the frames given
    num_frames: int
    keyframe_tokens: int
    merged_tokens: int
    text_tokens: int  # prompt tokens other than the video block
    new_tokens: int  # tokens generated (the answer, its end-of-turn token included)
    encoding: VideoEncoding  # relevance scores and the token block, for inspection

    @property
    def visual_tokens(self) -> int:
        return self.keyframe_tokens + self.merged_tokens + 1  # + image_newline


def answer_report(video: DecodedVideo, answer: VideoAnswer) -> dict:
    """What the model looked at, JSON-ready: the video's length and rate, the sampled frames, the keyframes (frame,
    seconds, hh:mm:ss) and the token budget."""
    times = [video.indices[frame] / video.fps for frame in answer.keyframes]
    tokens = {"keyframe": answer.keyframe_tokens, "merged": answer.merged_tokens, "newline": 1,
              "text": answer.text_tokens}
    return {
        "duration_seconds": round(video.total_frames / video.fps, 3),
        "fps": round(video.fps, 3),
        "sampled_frames": answer.num_frames,
        "keyframes": [{"frame": frame, "seconds": round(seconds, 3), "timestamp": timestamp(seconds)}
                      for frame, seconds in zip(answer.keyframes, times)],
        "tokens": {**tokens, "total": sum(tokens.values())},
    }


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
    return answer_conversation(model, processor, frames, video_messages(prompt), question, max_new_tokens, cache)


@torch.no_grad()
def answer_conversation(
    model: LlavaQwenForCausalLM,
    processor: VilampProcessor,
    frames,
    messages: list[dict],
    question: str,
    max_new_tokens: int = 128,
    cache: VideoFeatureCache | None = None,
    temperature: float = 0.0,
    streamer=None,
) -> VideoAnswer:
    """The assistant's next turn in `messages` (chat-template messages holding one `{"type": "video"}` part, which
    stands for `frames`), with `question` as the CLIP query that chooses the keyframes.

    temperature: 0 answers greedily, above 0 samples. streamer: a transformers streamer given the new tokens as they
    are generated.
    """
    if not isinstance(frames, (str, Path)) and len(frames) == 0:
        raise ValueError("no frames: the video yielded nothing to look at")
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(text=text, videos=[frames], queries=[question], return_tensors="pt")
    video = {k: inputs.pop(k) for k in list(inputs.keys()) if k not in ("input_ids", "attention_mask")}
    encodings = model.model.get_video_features(**video, video_caches=[cache])
    input_ids = inputs["input_ids"].to(model.device)
    tokenizer = processor.tokenizer
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    output = model.generate(
        input_ids=input_ids,
        attention_mask=inputs["attention_mask"].to(model.device),
        video_encodings=encodings,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        streamer=streamer,
        **sampling,
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
        new_tokens=output.shape[1] - input_ids.shape[1],
        encoding=encoding,
    )
