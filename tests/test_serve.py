"""`python -m llava.serve`: the OpenAI client against the CLI, streaming, the video cache, multi-turn requests,
videos sent as frames the way lmms-eval sends them, concurrent clients, the bounded queue, and every bad input answered
with a 4xx while the server keeps serving."""

import base64
import io
import json
import logging
import threading
from types import SimpleNamespace
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import openai
import pytest
from PIL import Image

from llava import cli
from llava.eval.synthetic import frame_image
from llava.serve.__main__ import build_app, build_parser, serving
from llava.serve.__main__ import main as serve_main
from llava.session import VideoSession

QUESTION = "What colour is the background when the white bar is at the left?"
OTHER = "Where is the white bar at the end?"


def client(server, key=None):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key or server.key, max_retries=0)


def video_turn(server, question, path=None):
    url = (path or server.video).resolve().as_uri()
    return {"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}},
                                        {"type": "text", "text": question}]}


def png_data_url(image: Image.Image) -> str:
    """A frame as lmms-eval's `ChatMessages.encode_image` sends it: PNG, base64, in a data: URL."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return f"data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}"


def frames_turn(urls, question):
    """lmms-eval's `ChatMessages.to_openai_messages` of a video task's user turn (video, then text): one image_url
    part per frame it sampled, then the text."""
    return {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}} for url in urls]
            + [{"type": "text", "text": question}]}


FRAMES = [Image.fromarray(frame_image(index, 64, 48)) for index in range(12)]


def post(server, body, key="default", raw: bytes | None = None):
    """(status, headers, text) of a POST to /v1/chat/completions."""
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {server.key if key == 'default' else key}"
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(server.url + "/v1/chat/completions", data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


def ask(server, question=QUESTION, max_tokens=4, **extra):
    completion = client(server).chat.completions.create(
        model=server.model_id, messages=[video_turn(server, question)], max_tokens=max_tokens, **extra)
    return completion


def test_lists_the_model(vilamp_server):
    assert [m.id for m in client(vilamp_server).models.list().data] == [vilamp_server.model_id]


def test_openai_client_gets_the_cli_answer(vilamp_server, tiny_checkpoint, tiny_model, monkeypatch, capsys):
    _, model, processor, _ = tiny_model
    monkeypatch.setattr(cli, "load_model", lambda *args: (model, processor))  # the same weights, loaded once
    status = cli.main([str(vilamp_server.video), QUESTION, "--model", str(tiny_checkpoint), "--max_new_tokens", "4",
                       "--json"])
    assert status == 0
    expected = json.loads(capsys.readouterr().out)
    completion = ask(vilamp_server)
    assert completion.choices[0].message.content == expected["answer"]
    report = completion.model_extra["vilamp"]
    for field in ("keyframes", "tokens", "sampled_frames", "duration_seconds", "fps"):
        assert report[field] == expected[field], field
    assert len(report["relevance"]) == len(report["sampled_seconds"]) == expected["sampled_frames"] == 12
    assert completion.usage.prompt_tokens == expected["tokens"]["total"]
    assert completion.usage.completion_tokens == 4 and completion.choices[0].finish_reason == "length"


def test_streaming_gives_the_same_text(vilamp_server):
    whole = ask(vilamp_server, OTHER, max_tokens=6).choices[0].message.content
    body = {"model": vilamp_server.model_id, "messages": [video_turn(vilamp_server, OTHER)], "max_tokens": 6,
            "stream": True}
    status, headers, text = post(vilamp_server, body)
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == whole
    assert chunks[-1]["choices"][0]["finish_reason"] == "length" and chunks[-1]["vilamp"]["keyframes"]
    stream = client(vilamp_server).chat.completions.create(
        model=vilamp_server.model_id, messages=[video_turn(vilamp_server, OTHER)], max_tokens=6, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == whole


def test_a_temperature_samples(vilamp_server):
    completion = ask(vilamp_server, max_tokens=3, temperature=1.5)
    assert 1 <= completion.usage.completion_tokens <= 3 and completion.choices[0].finish_reason in ("stop", "length")


def test_later_requests_reuse_the_decoded_video(vilamp_server, tmp_path):
    copy = vilamp_server.folder / "copy_for_cache.mp4"  # same bytes, another name: one cache entry
    copy.write_bytes(vilamp_server.video.read_bytes())
    first = ask(vilamp_server, max_tokens=2, extra_body={"max_frame_num": 10})
    again = client(vilamp_server).chat.completions.create(
        model=vilamp_server.model_id, messages=[video_turn(vilamp_server, QUESTION, copy)], max_tokens=2,
        extra_body={"max_frame_num": 10})
    assert first.model_extra["vilamp"]["video_cache"] == "miss"
    assert again.model_extra["vilamp"]["video_cache"] == "hit"
    assert again.choices[0].message.content == first.choices[0].message.content
    assert first.model_extra["vilamp"]["sampled_frames"] == 10


def test_a_conversation_gets_the_session_answers(vilamp_server, tiny_model):
    _, model, processor, _ = tiny_model
    session = VideoSession(model, processor, vilamp_server.video)
    answers = [session.ask(q, max_new_tokens=4).text for q in (QUESTION, OTHER)]
    messages = [video_turn(vilamp_server, QUESTION), {"role": "assistant", "content": answers[0]},
                {"role": "user", "content": OTHER}]
    completion = client(vilamp_server).chat.completions.create(model=vilamp_server.model_id, messages=messages,
                                                               max_tokens=4)
    assert completion.choices[0].message.content == answers[1]


def test_lmms_eval_frames_get_the_session_answer(vilamp_server, tiny_model):
    _, model, processor, _ = tiny_model
    # The payload of lmms-eval's `openai_compatible` model, sent as it sends it: `client.chat.completions.create`.
    payload = {"messages": [frames_turn(map(png_data_url, FRAMES), QUESTION)], "model": vilamp_server.model_id,
               "max_tokens": 4, "temperature": 0}
    completion = client(vilamp_server).chat.completions.create(**payload)
    expected = VideoSession(model, processor, FRAMES).ask(QUESTION, max_new_tokens=4)
    report = completion.model_extra["vilamp"]
    assert completion.choices[0].message.content == expected.text
    assert [keyframe["frame"] for keyframe in report["keyframes"]] == expected.keyframes
    assert report["sampled_frames"] == 12 and report["video_cache"] == "miss"
    again = client(vilamp_server).chat.completions.create(**{**payload, "max_tokens": 1})
    assert again.model_extra["vilamp"]["video_cache"] == "hit"  # the same image bytes

    capped = client(vilamp_server).chat.completions.create(**payload, extra_body={"max_frame_num": 5})
    kept = np.linspace(0, len(FRAMES) - 1, 5, dtype=int).tolist()  # as for a file's sampled frames
    alone = VideoSession(model, processor, [FRAMES[index] for index in kept]).ask(QUESTION, max_new_tokens=4)
    assert capped.choices[0].message.content == alone.text
    assert capped.model_extra["vilamp"]["sampled_seconds"] == [index / processor.fps for index in kept]


def test_eight_concurrent_clients_are_all_answered(vilamp_server):
    questions = [QUESTION, OTHER] * 4
    alone = {q: ask(vilamp_server, q, max_tokens=3).choices[0].message.content for q in set(questions)}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda q: ask(vilamp_server, q, max_tokens=3).choices[0].message.content, questions))
    assert answers == [alone[q] for q in questions]


def test_a_full_queue_answers_503_with_retry_after(vilamp_server):
    engine = vilamp_server.engine
    limit, engine.settings.max_queue = engine.settings.max_queue, 1
    release = threading.Event()
    engine.model_thread.submit(release.wait)  # the model is busy: the next request waits, holding the one slot
    body = {"model": vilamp_server.model_id, "messages": [video_turn(vilamp_server, QUESTION)], "max_tokens": 1}
    try:
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(post, vilamp_server, body)
            while engine.admitted < 1:
                threading.Event().wait(0.01)
            status, headers, text = post(vilamp_server, body)
            assert status == 503 and int(headers["Retry-After"]) > 0
            assert json.loads(text)["error"]["code"] == "server_busy"
            release.set()
            assert waiting.result()[0] == 200
    finally:
        release.set()
        engine.settings.max_queue = limit


def bad_requests(server):
    """(name, body or raw bytes, expected status, words the message must hold)."""
    good = {"model": server.model_id, "messages": [video_turn(server, QUESTION)], "max_tokens": 1}
    folder = server.folder

    def with_turn(turn, **extra):
        return {**good, "messages": [turn], **extra}

    png = base64.b64decode(png_data_url(FRAMES[0]).partition(",")[2])
    truncated = png[: png.index(b"IDAT") + 14]  # cut inside the pixel data: the header reads, the pixels do not
    gif = io.BytesIO()
    FRAMES[0].save(gif, format="GIF")

    def frames(*urls):
        return with_turn(frames_turn([png_data_url(FRAMES[1]), *urls], QUESTION))

    def data_url(data: bytes) -> str:
        return f"data:image/png;base64,{base64.b64encode(data).decode()}"

    return [
        ("GIF frame", frames(data_url(gif.getvalue())), 400, ["messages.0.content.1", "PNG or JPEG"]),
        ("truncated frame", frames(data_url(truncated)), 400, ["messages.0.content.1", "decode"]),
        ("frame not base64", frames("data:image/png;base64,@@"), 400, ["messages.0.content.1", "base64"]),
        ("http frame not allowed", frames("http://127.0.0.1:9/f.png"), 400, ["messages.0.content.1", "http"]),
        ("frames and a video", with_turn({"role": "user", "content": [
            *video_turn(server, QUESTION)["content"], *frames_turn([png_data_url(FRAMES[1])], QUESTION)["content"]]}),
         400, ["2 videos"]),
        ("missing video", with_turn(video_turn(server, QUESTION, folder / "nowhere.mp4")), 404, ["nowhere.mp4"]),
        ("undecodable video", with_turn(video_turn(server, QUESTION, folder / "broken.mp4")), 400, ["broken.mp4"]),
        ("outside the folder", with_turn(video_turn(server, QUESTION, server.folder.parent / "x.mp4")), 403,
         ["outside"]),
        ("malformed JSON", b'{"model": "x", "messages": [', 400, ["malformed JSON"]),
        ("unknown field", {**good, "frobnicate": 1}, 400, ["frobnicate"]),
        ("too many frames", {**good, "max_frame_num": 100000}, 400, ["max_frame_num"]),
        ("no video", with_turn({"role": "user", "content": QUESTION}), 400, ["video_url"]),
        ("http video not allowed", with_turn({"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": "http://127.0.0.1:9/v.mp4"}}, {"type": "text", "text": "q"}]}),
         400, ["http"]),
        ("unknown model", {**good, "model": "gpt-nothing"}, 404, ["gpt-nothing"]),
        ("negative max_tokens", {**good, "max_tokens": -1}, 400, ["max_tokens"]),
        ("prompt too long", with_turn(video_turn(server, "word " * 33000)), 400, ["tokenizer_model_max_length"]),
        ("prompt too long, streamed", with_turn(video_turn(server, "word " * 33000), stream=True), 400,
         ["tokenizer_model_max_length"]),
    ]


def test_bad_input_gets_a_4xx_and_the_server_keeps_serving(vilamp_server):
    good = {"model": vilamp_server.model_id, "messages": [video_turn(vilamp_server, QUESTION)], "max_tokens": 1}
    for name, body, status, words in bad_requests(vilamp_server):
        raw = body if isinstance(body, bytes) else None
        got, _, text = post(vilamp_server, None if raw else body, raw=raw)
        error = json.loads(text)["error"]
        assert got == status, (name, text)
        assert all(word in error["message"] for word in words), (name, error)
        assert post(vilamp_server, good)[0] == 200, name


def test_an_uploaded_video_is_asked_about(vilamp_server):
    boundary = "vilampboundary"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"mine.mp4\"\r\n"
            "Content-Type: video/mp4\r\n\r\n").encode() + vilamp_server.video.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(vilamp_server.url + "/videos", data=form, headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}", "Authorization": f"Bearer {vilamp_server.key}"})
    with urllib.request.urlopen(request) as response:
        stored = json.loads(response.read())
    assert stored["url"].startswith("file://") and stored["url"].endswith("-mine.mp4")
    body = {"model": vilamp_server.model_id, "max_tokens": 1, "messages": [{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": stored["url"]}}, {"type": "text", "text": QUESTION}]}]}
    status, _, text = post(vilamp_server, body)
    assert status == 200 and json.loads(text)["vilamp"]["sampled_frames"] == 12
    with urllib.request.urlopen(urllib.request.Request(vilamp_server.url + "/videos", headers={
            "Authorization": f"Bearer {vilamp_server.key}"})) as response:
        assert stored["url"] in [video["url"] for video in json.loads(response.read())["data"]]


def test_http_videos_are_downloaded_within_the_size_limit(vilamp_server, tiny_checkpoint, tiny_model, tmp_path):
    import functools
    import http.server

    _, model, processor, _ = tiny_model
    files = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(vilamp_server.folder)))
    threading.Thread(target=files.serve_forever, daemon=True).start()
    video_url, frame_url = ("http://{}:{}/{}".format(*files.server_address, name) for name in ("clip.mp4", "noise.png"))
    size = vilamp_server.video.stat().st_size
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))  # < 1 kB
    noise.save(vilamp_server.folder / "noise.png")
    frame_count = size // (vilamp_server.folder / "noise.png").stat().st_size + 1  # the frames total about `size`
    try:
        for limit_mb, status in ((size / 2 / (1 << 20), 413), (size * 2 / (1 << 20), 200)):
            args = build_parser().parse_args(["--model", str(tiny_checkpoint), "--video-dir", str(tmp_path),
                                              "--upload-dir", str(tmp_path / "up"), "--allow-http-videos", "--max-video-mb", str(limit_mb)])
            with serving(build_app(args, model, processor)) as url:
                body = {"model": tiny_checkpoint.name, "max_tokens": 1, "messages": [{"role": "user", "content": [
                    {"type": "video_url", "video_url": {"url": video_url}}, {"type": "text", "text": QUESTION}]}]}
                got, _, text = post(SimpleNamespace(url=url, key=None), body, key=None)
                assert got == status, text
                frames = {**body, "max_frame_num": 2, "messages": [frames_turn([frame_url] * frame_count, QUESTION)]}
                got, _, text = post(SimpleNamespace(url=url, key=None), frames, key=None)
                assert got == status, text
    finally:
        files.shutdown()


def test_the_api_key_is_required_and_never_logged(vilamp_server, caplog):
    with caplog.at_level(logging.INFO):
        body = {"model": vilamp_server.model_id, "messages": [video_turn(vilamp_server, QUESTION)], "max_tokens": 1}
        assert post(vilamp_server, body, key=None)[0] == 401
        assert post(vilamp_server, body, key="wrong")[0] == 401
        with pytest.raises(openai.AuthenticationError):
            client(vilamp_server, key="wrong").models.list()
        assert post(vilamp_server, body)[0] == 200
    assert "POST /v1/chat/completions" in caplog.text and " 401" in caplog.text  # the requests were logged...
    assert vilamp_server.key not in caplog.text  # ...without the key


def test_a_missing_key_variable_stops_the_server_before_loading(tiny_checkpoint, monkeypatch, capsys):
    monkeypatch.delenv("VILAMP_UNSET_KEY", raising=False)
    with pytest.raises(SystemExit) as stop:
        serve_main(["--model", str(tiny_checkpoint), "--api-key-env", "VILAMP_UNSET_KEY"])
    assert stop.value.code == 2 and "VILAMP_UNSET_KEY" in capsys.readouterr().err
