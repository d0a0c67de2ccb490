"""`python -m llava.cli`: answers, JSON, exit codes, progress bars, and the `--visualize` figure."""

import json
import re
import shutil
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch
from PIL import Image

from llava import cli
from llava.errors import EXIT_INPUT_ERROR
from llava.eval.synthetic import write_video
from llava.inference import answer_video
from llava.video import load_video
from llava.visualize import DPI, FIGURE_WIDTH, KEYFRAME_COLOUR, draw, figure_height, heatmaps_or_reason, visualize

QUESTION = "What colour is the background when the white bar is at the left?"
STAMP = re.compile(r"^\d\d:\d\d:\d\d$")
JSON_KEYS = {"video", "question", "answer", "model", "duration_seconds", "fps", "sampled_frames", "keyframes", "tokens",
             "visualization"}


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """20 s at 2 fps: 20 frames sampled at 1 fps, 8 of them keyframes with the tiny model."""
    return write_video(tmp_path_factory.mktemp("cli") / "clip.mp4", seconds=20, fps=2, width=64, height=48)


@pytest.fixture(scope="module")
def answered(tiny_model, video):
    """(decoded video, answer) of QUESTION with up to 4 new tokens, as the CLI computes them."""
    _, model, processor, _ = tiny_model
    decoded = load_video(video, processor.video_processor)
    return decoded, answer_video(model, processor, decoded.frames, QUESTION, QUESTION, 4)


def ask(capsys, *argv):
    """(exit status, stdout, stderr) of the CLI run in-process."""
    try:
        status = cli.main([str(arg) for arg in argv])
    except SystemExit as stop:
        status = stop.code
    out, err = capsys.readouterr()
    return status, out, err


def test_answers_with_keyframes_and_token_budget(tiny_checkpoint, video, capsys):
    status, out, err = ask(capsys, video, QUESTION, "--model", tiny_checkpoint, "--max_new_tokens", 4)
    assert status == 0, err
    lines = out.splitlines()
    first = next(number for number, line in enumerate(lines) if line.startswith("keyframes ("))
    assert lines[first - 1] == "" and first >= 2  # the answer comes first
    assert "(8 of 20 sampled frames, video 00:00:20)" in lines[first]
    wrapped = [lines[first].split(": ", 1)[1]] + [line for line in lines[first + 1 :] if line.startswith("  ")]
    stamps = " ".join(wrapped).split()
    assert len(stamps) == 8 and all(STAMP.match(stamp) for stamp in stamps)
    budget = re.fullmatch(r"tokens: (\d+) keyframe \+ (\d+) merged \+ 1 newline \+ (\d+) text = (\d+)", lines[-1])
    keyframe, merged, text, total = map(int, budget.groups())
    assert merged == 20 - 8 and keyframe % 8 == 0 and total == keyframe + merged + 1 + text


def test_json_is_one_object_matching_the_model(tiny_checkpoint, answered, video, capsys):
    status, out, err = ask(capsys, video, QUESTION, "--model", tiny_checkpoint, "--max_new_tokens", 4, "--json")
    assert status == 0, err
    result = json.loads(out)
    assert set(result) == JSON_KEYS
    decoded, answer = answered
    assert result["answer"] == answer.text
    assert [k["frame"] for k in result["keyframes"]] == answer.keyframes
    assert [k["seconds"] for k in result["keyframes"]] == [decoded.indices[k] / decoded.fps for k in answer.keyframes]
    assert all(STAMP.match(k["timestamp"]) for k in result["keyframes"])
    assert result["tokens"] == {"keyframe": answer.keyframe_tokens, "merged": answer.merged_tokens, "newline": 1,
                                "text": answer.text_tokens, "total": answer.visual_tokens + answer.text_tokens}
    assert (result["sampled_frames"], result["duration_seconds"], result["visualization"]) == (20, 20.0, None)


def test_visualize_writes_the_figure(tiny_checkpoint, video, tmp_path, capsys):
    out_png = tmp_path / "figures" / "what.png"
    status, out, err = ask(capsys, video, QUESTION, "--model", tiny_checkpoint, "--max_new_tokens", 2, "--json",
                           "--visualize", out_png)
    assert status == 0, err
    assert json.loads(out)["visualization"] == str(out_png)
    with Image.open(out_png) as image:
        assert image.format == "PNG"
        assert image.size == (int(FIGURE_WIDTH * DPI), round(figure_height(8, has_heatmaps=True) * DPI))


def test_plotted_keyframes_are_the_models(tiny_model, answered, tmp_path):
    """The keyframe dots sit at the model's keyframe times, in the data and in the saved pixels."""
    _, model, processor, _ = tiny_model
    decoded, answer = answered
    path = tmp_path / "figure.png"
    figure = visualize(model, processor, decoded, QUESTION, answer, path)
    timeline = next(ax for ax in figure.axes if ax.get_label() == "timeline")
    dots = next(artist for artist in timeline.collections if artist.get_gid() == "keyframes")
    expected = [decoded.indices[k] / decoded.fps for k in answer.keyframes]
    assert dots.get_offsets()[:, 0].tolist() == expected
    thumbnails = [ax.get_label() for ax in figure.axes if ax.get_label().startswith("keyframe ")]
    assert thumbnails == [f"keyframe {k}" for k in answer.keyframes]
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    red = np.array([int(KEYFRAME_COLOUR[i : i + 2], 16) for i in (1, 3, 5)])
    for x, y in timeline.transData.transform(dots.get_offsets()):
        assert np.abs(pixels[pixels.shape[0] - int(round(y)), int(round(x))] - red).max() <= 30


def test_heatmaps_are_the_merge_weights_the_model_used(tiny_model, answered):
    """Weighting each heatmap frame's patches by its heatmap gives back the merged token in the prompt."""
    _, model, processor, _ = tiny_model
    decoded, answer = answered
    heatmaps = heatmaps_or_reason(model, processor, decoded, QUESTION, answer)
    assert 1 <= len(heatmaps) <= 6 and not {h.frame for h in heatmaps} & set(answer.keyframes)
    spans = answer.encoding.frame_spans()
    with torch.no_grad():
        for heatmap in heatmaps:
            grid = model.model.vision_tower.grid_size
            assert heatmap.weights.shape == (grid, grid) and heatmap.weights.sum() == pytest.approx(1, abs=1e-4)
            features = model.model.project_frames(decoded.frames.siglip[[heatmap.frame]])[0]
            merged = (torch.from_numpy(heatmap.weights.reshape(-1, 1)) * features).sum(0)
            start, end = spans[heatmap.frame]
            assert end - start == 1
            torch.testing.assert_close(merged, answer.encoding.tokens[start], atol=1e-5, rtol=1e-4)


def test_other_mergers_say_why_there_are_no_heatmaps(tiny_model, answered, tmp_path):
    processor = tiny_model[2]
    decoded, answer = answered
    from llava.model.merger import AveragePooling

    averaging = SimpleNamespace(config=SimpleNamespace(composer_type="average_pooling"),
                                model=SimpleNamespace(composer_projector=AveragePooling()))
    reason = heatmaps_or_reason(averaging, processor, decoded, QUESTION, answer)
    assert "average_pooling" in reason and "no patch weights" in reason
    figure = draw(decoded, answer, QUESTION, reason)
    assert any(text.get_text() == reason for text in figure.texts)
    figure.savefig(tmp_path / "no_heatmaps.png")
    with Image.open(tmp_path / "no_heatmaps.png") as image:
        assert image.size == (int(FIGURE_WIDTH * DPI), round(figure_height(8, has_heatmaps=False) * DPI))


def test_progress_bars_count_decoded_and_encoded_frames(tiny_model, video, monkeypatch, capsys):
    _, model, processor, _ = tiny_model
    monkeypatch.setattr(cli, "PROGRESS_DELAY", 0)
    decoded = cli.decode(video, processor, 600, progress=True)
    with cli.encoding_progress(model, len(decoded.frames), progress=True):
        answer_video(model, processor, decoded.frames, QUESTION, QUESTION, 1)
    err = capsys.readouterr().err
    assert "decoding: 100%" in err and "20/20" in err
    assert "encoding: 100%" in err and "40/40" in err  # CLIP and SigLIP each see the 20 frames
    assert not model.model.vision_tower._forward_hooks  # hooks are removed afterwards


def audio_only(path):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for index in range(4):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, index * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def test_bad_videos_exit_2(tiny_checkpoint, video, tmp_path, capsys):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video at all" * 100)
    cases = {tmp_path / "missing.mp4": "video file not found", garbage: "corrupt or unreadable",
             audio_only(tmp_path / "audio.mp4"): "no video stream"}
    for path, reason in cases.items():
        status, out, err = ask(capsys, path, QUESTION, "--model", tiny_checkpoint)
        assert status == EXIT_INPUT_ERROR and out == ""
        assert err.startswith("error: ") and str(path) in err and reason in err


def test_bad_options_exit_2(tiny_checkpoint, video, capsys):
    for argv, message in (([video, " "], "question is empty"), ([video, QUESTION, "--max_frame_num", 0], "at least 1"),
                          ([video, QUESTION, "--visualize", "figure.xyz"], "must end in one of")):
        status, out, err = ask(capsys, *argv, "--model", tiny_checkpoint)
        assert status == 2 and message in err


def test_missing_or_incomplete_checkpoint_exit_2(tiny_checkpoint, video, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no models/ here
    status, _, err = ask(capsys, video, QUESTION)
    assert status == 2 and "no checkpoint" in err and "python -m llava.tiny models/tiny-vilamp" in err
    status, _, err = ask(capsys, video, QUESTION, "--model", tmp_path / "nowhere")
    assert status == 2 and "no config.json" in err and "python -m llava.tiny" in err
    (tmp_path / "models" / "foreign").mkdir(parents=True)
    (tmp_path / "models" / "foreign" / "config.json").write_text('{"model_type": "bert"}')
    status, _, err = ask(capsys, video, QUESTION, "--model", "foreign")
    assert status == 2 and "cannot load the checkpoint models/foreign" in err and "'bert'" in err
    (tmp_path / "models" / "no_weights").mkdir()
    shutil.copy(tiny_checkpoint / "config.json", tmp_path / "models" / "no_weights")
    status, _, err = ask(capsys, video, QUESTION)  # the first folder under models/ with a config.json
    assert status == 2 and "cannot load the checkpoint models/foreign" in err
    status, _, err = ask(capsys, video, QUESTION, "--model", "no_weights")
    assert status == 2 and "cannot load the checkpoint models/no_weights" in err


def test_default_checkpoint_is_the_first_under_models(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("zeta", "alpha", "empty"):
        (tmp_path / "models" / name).mkdir(parents=True)
    for name in ("zeta", "alpha"):
        (tmp_path / "models" / name / "config.json").write_text("{}")
    assert cli.find_checkpoint(None).as_posix() == "models/alpha"
