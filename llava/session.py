"""Many questions about one video, as a conversation: `VideoSession(model, processor, video).ask(question)`."""

from pathlib import Path

from llava.inference import VideoAnswer, answer_conversation
from llava.model.modeling_llava_qwen import VideoFeatureCache
from llava.video import DecodedVideo, load_video

FEATURE_CACHE_BYTES = 4 << 30  # projected SigLIP features kept for the session (the rest is recomputed per question)


class VideoSession:
    """A chat about one video. The video is decoded once and its query-independent features (CLIP frame embeddings,
    projected SigLIP chunks within `feature_cache_bytes`) are computed once; every question sees the earlier turns
    and chooses its own keyframes (its text is the CLIP query).

    video: a file path (decoded at the processor's fps, at most `max_frame_num` frames), a `DecodedVideo`, or
    frames (`VideoFrames`, (N, H, W, 3) uint8, PIL images).
    """

    def __init__(self, model, processor, video, max_frame_num: int | None = None,
                 feature_cache_bytes: int = FEATURE_CACHE_BYTES):
        self.model, self.processor = model, processor
        if isinstance(video, (str, Path)):
            video = load_video(video, processor.video_processor, max_frame_num or processor.max_frame_num,
                               sample_fps=processor.fps)
        self.video = video if isinstance(video, DecodedVideo) else None  # with timestamps, when known
        self.frames = video.frames if self.video else processor.video_processor.load(video)
        self.cache = VideoFeatureCache(feature_cache_bytes)
        self.messages: list[dict] = []  # chat-template turns so far; the first user turn holds the video

    def ask(self, question: str, max_new_tokens: int = 128, temperature: float = 0.0, streamer=None) -> VideoAnswer:
        """Answer `question` after the turns so far, and add both to the history."""
        if not question.strip():
            raise ValueError("the question is empty")
        parts = [{"type": "text", "text": question}]
        turn = {"role": "user", "content": parts if self.messages else [{"type": "video"}, *parts]}
        answer = answer_conversation(self.model, self.processor, self.frames, self.messages + [turn], question,
                                     max_new_tokens, self.cache, temperature, streamer)
        self.messages += [turn, {"role": "assistant", "content": answer.text}]
        return answer

    @property
    def history(self) -> list[tuple[str, str]]:
        """(question, answer) of every turn so far."""
        questions = [next(p["text"] for p in m["content"] if p["type"] == "text") for m in self.messages[::2]]
        return list(zip(questions, [m["content"] for m in self.messages[1::2]]))
