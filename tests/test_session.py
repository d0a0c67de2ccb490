"""`VideoSession`: one decode and one CLIP pass for many questions, each with its own keyframes and the history."""

import pytest

from llava import session as session_module
from llava.inference import answer_conversation, answer_video
from llava.model.modeling_llava_qwen import VideoFeatureCache
from llava.session import VideoSession
from llava.video import load_video

FIRST = "What colour is the background when the white bar is at the left?"
SECOND = "And at the end?"


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from llava.eval.synthetic import write_video

    return write_video(tmp_path_factory.mktemp("session") / "clip.mp4", seconds=12, fps=2, width=64, height=48)


def test_decodes_once_and_answers_with_history(tiny_model, clip, monkeypatch):
    _, model, processor, _ = tiny_model
    decodes, clip_passes = [], []
    monkeypatch.setattr(session_module, "load_video", lambda *a, **k: decodes.append(a) or load_video(*a, **k))
    embed = model.model.embed_frames_clip
    monkeypatch.setattr(model.model, "embed_frames_clip", lambda frames: clip_passes.append(1) or embed(frames))
    session = VideoSession(model, processor, clip)
    first, second = session.ask(FIRST, max_new_tokens=4), session.ask(SECOND, max_new_tokens=4)
    assert len(decodes) == 1 and len(clip_passes) == 1
    assert session.history == [(FIRST, first.text), (SECOND, second.text)]

    frames, features = session.frames, VideoFeatureCache(1 << 30)
    alone = answer_video(model, processor, frames, FIRST, FIRST, 4, features)
    assert first.text == alone.text and first.keyframes == alone.keyframes  # the first turn is a plain question
    # The second question chooses its own keyframes: those of asking it alone.
    assert second.keyframes == answer_video(model, processor, frames, SECOND, SECOND, 1, features).keyframes
    # ... and sees the first turn: the answer of the whole conversation, asked without any cache.
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": FIRST}]},
                {"role": "assistant", "content": first.text},
                {"role": "user", "content": [{"type": "text", "text": SECOND}]}]
    fresh = answer_conversation(model, processor, frames, messages, SECOND, 4)
    assert second.text == fresh.text and second.text_tokens == fresh.text_tokens > first.text_tokens


def test_takes_decoded_frames_and_refuses_an_empty_question(tiny_model, clip):
    _, model, processor, _ = tiny_model
    decoded = load_video(clip, processor.video_processor, max_frame_num=6)
    session = VideoSession(model, processor, decoded)
    assert session.video is decoded and len(session.frames) == 6
    with pytest.raises(ValueError, match="empty"):
        session.ask("  ")
    assert session.history == []
