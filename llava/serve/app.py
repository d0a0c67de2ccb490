"""The HTTP side: OpenAI's `/v1/models` and `/v1/chat/completions` (with video parts), the web page and its video
list and upload, API-key checks, and OpenAI-style JSON errors for everything a client can get wrong."""

import asyncio
import base64
import binascii
import hmac
import io
import json
import time
import urllib.request
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import unquote, urlparse

from fastapi import FastAPI, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from llava.inference import VideoAnswer, answer_report
from llava.model.modeling_llava_qwen import PromptTooLongError
from llava.serve.engine import CachedVideo, Engine, RequestError, ServerBusy
from llava.video import VideoDecodeError

STATIC = Path(__file__).with_name("static")
DEFAULT_MAX_TOKENS = 128
COPY_BLOCK = 1 << 20
IMAGE_DATA_URL_HEADS = ("data:image/png;base64", "data:image/jpeg;base64")
VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv"}  # listed


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(Strict):
    type: Literal["text"]
    text: str


class URL(Strict):
    url: str


class VideoPart(Strict):
    type: Literal["video_url"]
    video_url: URL


class ImagePart(Strict):
    type: Literal["image_url"]
    image_url: URL


Part = Annotated[TextPart | VideoPart | ImagePart, Field(discriminator="type")]


class Message(Strict):
    role: Literal["system", "user", "assistant"]
    content: str | list[Part]


class ChatRequest(Strict):
    model: str
    messages: list[Message] = Field(min_length=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(DEFAULT_MAX_TOKENS, ge=1)
    stream: bool = False
    max_frame_num: int | None = Field(None, ge=1)  # frames sampled from the video (ViLAMP's extra field)


def error_body(message: str, kind: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(status: int, message: str, param: str | None = None, code: str | None = None,
                   headers: dict | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse(error_body(message, kind, param, code), status_code=status, headers=headers)


def turns(request: ChatRequest) -> tuple[list[dict], str, str | list[tuple[str, str]]]:
    """(chat-template messages with the video as `{"type": "video"}`, the CLIP query, the video: its URL, or the
    (part name, URL) of each of its frames).

    The conversation holds exactly one video, in a user turn: one video_url part, or the image_url parts of one
    message, which are the video's frames in order (the video stands where the first of them is; how lmms-eval's
    `openai_compatible` model sends a video). It ends with a user turn whose text is the question (the CLIP query
    that chooses the keyframes)."""
    messages, videos = [], []
    for number, message in enumerate(request.messages):
        if isinstance(message.content, str):
            messages.append({"role": message.role, "content": message.content})
            continue
        parts, frames = [], []
        for index, part in enumerate(message.content):
            if isinstance(part, TextPart):
                parts.append({"type": "text", "text": part.text})
                continue
            if message.role != "user":
                raise RequestError(400, f"messages.{number}: a {part.type} part belongs in a user message",
                                   f"messages.{number}")
            if isinstance(part, VideoPart):
                videos.append(part.video_url.url)
                parts.append({"type": "video"})
            else:
                if not frames:
                    parts.append({"type": "video"})
                frames.append((f"messages.{number}.content.{index}", part.image_url.url))
        if frames:
            videos.append(frames)
        messages.append({"role": message.role, "content": parts})
    if len(videos) != 1:
        raise RequestError(400, f"the messages hold {len(videos)} videos (video_url parts, or the image_url parts of "
                                "one message as one video's frames); ViLAMP answers about exactly one video per "
                                "conversation", "messages")
    last = request.messages[-1]
    if last.role != "user":
        raise RequestError(400, "the last message must be the user's question", "messages")
    question = last.content if isinstance(last.content, str) else " ".join(
        p.text for p in last.content if isinstance(p, TextPart))
    if not question.strip():
        raise RequestError(400, "the last user message has no text: it is the question", "messages")
    return messages, question.strip(), videos[0]


def data_url_image(name: str, url: str) -> bytes:
    """The bytes of a `data:image/png;base64,...` (or image/jpeg) URL; `name` is the request part it came from."""
    head, _, payload = url.partition(",")
    if head.lower() not in IMAGE_DATA_URL_HEADS:
        raise RequestError(400, f"{name}: a data: URL must start 'data:image/png;base64,' or 'data:image/jpeg;base64,'"
                                f" (got {head[:40]!r})", name)
    try:
        return base64.b64decode(payload, validate=True)
    except binascii.Error as error:
        raise RequestError(400, f"{name}: the data: URL is not valid base64 ({error})", name) from error


def inside(path: Path, folders: list[Path]) -> bool:
    return any(path.is_relative_to(folder) for folder in folders)


def create_app(engine: Engine, model_id: str, video_dir: Path, upload_dir: Path, api_key: str | None = None,
               allow_http: bool = False, max_video_bytes: int = 2 << 30) -> FastAPI:
    """The server's ASGI app. Local videos are files under `video_dir` or `upload_dir` (uploads); http(s) videos,
    only with `allow_http`, are downloaded to `upload_dir`, at most `max_video_bytes` (as uploads are, and as the
    images of a video sent as its frames are in all; http(s) images also need `allow_http`)."""
    video_dir = video_dir.resolve()
    upload_dir = upload_dir.resolve()
    upload_dir.mkdir(parents=True, exist_ok=True)
    folders = [video_dir, upload_dir]

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        engine.close()

    app = FastAPI(title="ViLAMP", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.engine = engine
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def check_key(request: Request, call_next):
        if api_key is not None and request.url.path.startswith(("/v1/", "/videos")):
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                return error_response(401, "missing or wrong API key: send the header 'Authorization: Bearer KEY'",
                                      code="invalid_api_key")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError):
        problem = error.errors()[0]
        if problem["type"] == "json_invalid":
            return error_response(400, f"malformed JSON body: {problem.get('ctx', {}).get('error', problem['msg'])}")
        where = ".".join(str(part) for part in problem["loc"][1:]) or "body"
        if problem["type"] == "extra_forbidden":
            return error_response(400, f"unknown field '{where}'", where, "unknown_field")
        return error_response(400, f"{where}: {problem['msg']}", where)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        return error_response(error.status_code, str(error.detail), headers=getattr(error, "headers", None))

    @app.exception_handler(RequestError)
    async def refused(request: Request, error: RequestError):
        return error_response(error.status, str(error), error.param, error.code)

    @app.exception_handler(VideoDecodeError)
    async def undecodable(request: Request, error: VideoDecodeError):
        return error_response(400, f"cannot read the video {error}", "messages", "invalid_video")

    @app.exception_handler(PromptTooLongError)
    async def too_long(request: Request, error: PromptTooLongError):
        return error_response(400, str(error), "messages", "context_length_exceeded")

    @app.exception_handler(ServerBusy)
    async def busy(request: Request, error: ServerBusy):
        return error_response(503, str(error), code="server_busy", headers={"Retry-After": str(error.retry_after)})

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html")

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_id, "object": "model", "created": 0, "owned_by": "vilamp"}]}

    @app.get("/videos")
    async def videos():
        """The videos the page can pick: video files under the allowed folders, as file:// URLs."""
        files = sorted(p for folder in folders for p in folder.rglob("*")
                       if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file() and not p.name.startswith("."))
        return {"data": [{"name": str(p.relative_to(video_dir) if p.is_relative_to(video_dir) else p.name),
                          "url": p.as_uri(), "bytes": p.stat().st_size} for p in files]}

    @app.post("/videos")
    async def upload(file: UploadFile):
        """Store an uploaded video under the upload folder; returns its file:// URL."""
        name = Path(file.filename or "video").name
        target = upload_dir / f"{uuid.uuid4().hex[:12]}-{name}"
        size = 0
        with open(target, "wb") as out:
            while block := await file.read(COPY_BLOCK):
                size += len(block)
                if size > max_video_bytes:
                    out.close()
                    target.unlink()
                    raise RequestError(413, f"{name}: larger than the server's limit of {max_video_bytes} bytes",
                                       "file", "video_too_large")
                out.write(block)
        return {"name": target.name, "url": target.as_uri(), "bytes": size}

    def local_video(url: str) -> Path:
        """A video URL -> a local file under the allowed folders (downloading http(s) ones when allowed)."""
        parsed = urlparse(url)
        if parsed.scheme == "file":
            path = Path(unquote(parsed.path)).resolve()
            if not inside(path, folders):
                raise RequestError(403, f"{path}: outside the folders this server may read "
                                        f"({', '.join(map(str, folders))})", "video_url", "video_not_allowed")
            if not path.is_file():
                raise RequestError(404, f"{path}: video file not found", "video_url", "video_not_found")
            return path
        if parsed.scheme in ("http", "https"):
            if not allow_http:
                raise RequestError(400, f"{url}: http(s) videos are off on this server (--allow-http-videos); "
                                        "use a file:// URL", "video_url", "video_not_allowed")
            target = upload_dir / f"{uuid.uuid4().hex[:12]}-{Path(parsed.path).name or 'video'}"
            try:
                with open(target, "wb") as out:
                    download(url, out, "video_url")
            except RequestError:
                target.unlink(missing_ok=True)
                raise
            return target
        raise RequestError(400, f"{url!r}: a video_url must be a file:// URL"
                                + (" or an http(s) URL" if allow_http else ""), "video_url")

    def download(url: str, out, param: str) -> None:
        """Copy an http(s) URL into the binary file `out`, at most `max_video_bytes`; errors name `param`, the
        request field the URL came from."""
        size = 0
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                while block := response.read(COPY_BLOCK):
                    size += len(block)
                    if size > max_video_bytes:
                        raise RequestError(413, f"{param}: {url}: larger than the server's limit of "
                                                f"{max_video_bytes} bytes", param, "video_too_large")
                    out.write(block)
        except OSError as error:
            raise RequestError(400, f"{param}: {url}: cannot download it: {error}", param) from error

    def frame_images(frames: list[tuple[str, str]]) -> dict[str, bytes]:
        """A video's frames -> {part name: encoded image}: base64 data: URLs of PNG or JPEG images, or http(s) URLs
        (downloaded, only where http(s) videos are allowed); at most `max_video_bytes` in all."""
        images, total = {}, 0
        for name, url in frames:
            scheme = url.partition(":")[0].lower()  # not urlparse: a data: URL may hold megabytes
            if scheme == "data":
                images[name] = data_url_image(name, url)
            elif scheme in ("http", "https") and allow_http:
                out = io.BytesIO()
                download(url, out, name)
                images[name] = out.getvalue()
            else:
                raise RequestError(400, f"{name}: an image_url must be a base64 data: URL of a PNG or JPEG image"
                                        + (" or an http(s) URL" if allow_http else
                                           " (http(s) images are off on this server: --allow-http-videos)"), name)
            total += len(images[name])
            if total > max_video_bytes:
                raise RequestError(413, f"{name}: the video's images total more than the server's limit of "
                                        f"{max_video_bytes} bytes", name, "video_too_large")
        return images

    def video_source(video: str | list[tuple[str, str]]) -> Path | dict[str, bytes]:
        """What `turns` found -> a local video file, or the video's frames as encoded images (blocking: downloads)."""
        return local_video(video) if isinstance(video, str) else frame_images(video)

    @app.post("/v1/chat/completions")
    async def chat(request: ChatRequest):
        if request.model != model_id:
            raise RequestError(404, f"model '{request.model}' is not served here; this server serves '{model_id}'",
                               "model", "model_not_found")
        limit = engine.settings.max_frame_num
        frames = request.max_frame_num or limit
        if frames > limit:
            raise RequestError(400, f"max_frame_num={frames}: more frames than this server allows ({limit})",
                               "max_frame_num")
        messages, question, video = turns(request)
        admission, streaming = engine.admit(), None
        try:
            source = await asyncio.to_thread(video_source, video)  # off the event loop: downloads block
            entry, cached = await engine.video(source, frames)
            if request.stream:
                streaming = await stream(request, entry, cached, messages, question, admission)
                return streaming
            answer = await engine.answer(entry, messages, question, request.max_tokens, request.temperature)
            return completion(request, entry, cached, answer)
        finally:
            if streaming is None:  # else the stream releases it when it ends
                admission.release()

    async def stream(request, entry, cached, messages, question, admission):
        """Server-sent events: the role, the answer's pieces, the finish reason with `usage` and `vilamp`, [DONE].
        The response starts only once the model has started answering, so a prompt that fails is a plain 4xx."""
        events: asyncio.Queue = asyncio.Queue()
        job = asyncio.ensure_future(engine.answer(entry, messages, question, request.max_tokens, request.temperature,
                                                  on_delta=events.put_nowait))
        job.add_done_callback(lambda _: events.put_nowait(None))
        first = await events.get()
        if first is None and job.exception() is not None:
            raise job.exception()
        ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def chunk(delta: dict, finish: str | None = None, **extra) -> str:
            body = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model_id,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
            return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

        async def events_out():
            try:
                yield chunk({"role": "assistant", "content": ""})
                piece = first
                while piece is not None:
                    yield chunk({"content": piece})
                    piece = await events.get()
                answer = await job
                yield chunk({}, finish_reason(request, answer), usage=usage(answer),
                            vilamp=vilamp_report(entry, cached, answer))
                yield "data: [DONE]\n\n"
            finally:
                admission.release()

        return StreamingResponse(events_out(), media_type="text/event-stream")

    def completion(request: ChatRequest, entry: CachedVideo, cached: bool, answer: VideoAnswer) -> dict:
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": model_id,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                             "finish_reason": finish_reason(request, answer)}],
                "usage": usage(answer), "vilamp": vilamp_report(entry, cached, answer)}

    return app


def finish_reason(request: ChatRequest, answer: VideoAnswer) -> str:
    return "length" if answer.new_tokens >= request.max_tokens else "stop"


def usage(answer: VideoAnswer) -> dict:
    prompt = answer.visual_tokens + answer.text_tokens
    return {"prompt_tokens": prompt, "completion_tokens": answer.new_tokens,
            "total_tokens": prompt + answer.new_tokens}


def vilamp_report(entry: CachedVideo, cached: bool, answer: VideoAnswer) -> dict:
    """`answer_report` plus what the page's timeline draws (every sampled frame's time and CLIP relevance) and
    whether the video came from the cache."""
    video = entry.video
    return {**answer_report(video, answer),
            "sampled_seconds": [round(index / video.fps, 3) for index in video.indices],
            "relevance": [round(float(r), 5) for r in answer.encoding.selection.relevance],
            "video_cache": "hit" if cached else "miss"}
