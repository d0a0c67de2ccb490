"""python -m llava.serve --model PATH [--host 127.0.0.1] [--port 8000] [--api-key-env NAME] [--video-dir DIR] ...

Serves one ViLAMP checkpoint: OpenAI's /v1/models and /v1/chat/completions (video parts as file:// URLs under
--video-dir or the upload folder), and the web page at /. Input errors in the options print one line and exit 2.
"""

import argparse
import os
import socket
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from llava.errors import VilampError, command
from llava.model.builder import MODELS_DIR, find_checkpoint


class ServeOptionError(VilampError):
    """A server option that cannot work; the message names it."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m llava.serve",
                                     description="Serve a ViLAMP checkpoint behind an OpenAI-compatible API.")
    parser.add_argument("--model", default=None, help=f"checkpoint folder, or a name under {MODELS_DIR}/")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key-env", default=None, metavar="NAME",
                        help="require 'Authorization: Bearer KEY', KEY read from this environment variable")
    parser.add_argument("--video-dir", type=Path, default=Path("."),
                        help="folder whose videos clients may name (file:// URLs) and the page lists (default: .)")
    parser.add_argument("--upload-dir", type=Path, default=None,
                        help="where uploaded and downloaded videos go (default: a new temporary folder)")
    parser.add_argument("--allow-http-videos", action="store_true",
                        help="also accept http(s) video URLs (and http(s) image URLs as a video's frames)")
    parser.add_argument("--max-video-mb", type=float, default=2048,
                        help="largest upload or download, and largest total of a video's frames sent as images (MB)")
    parser.add_argument("--max-frames", type=int, default=600,
                        help="frames sampled per video: the default and the most a request's max_frame_num may ask")
    parser.add_argument("--max-queue", type=int, default=16,
                        help="requests admitted at once; more are answered 503 with Retry-After")
    parser.add_argument("--decode-workers", type=int, default=None,
                        help="decoding processes (default: one per 4 cores, 1 to 4)")
    parser.add_argument("--decode-timeout", type=float, default=300, help="seconds one video may take to decode")
    parser.add_argument("--cache-gb", type=float, default=4,
                        help="memory for decoded videos and their features, shared by requests")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--dtype", default=None, choices=("bf16", "fp16", "fp32"))
    return parser


def api_key(name: str | None) -> str | None:
    if name is None:
        return None
    key = os.environ.get(name)
    if not key:
        raise ServeOptionError(f"--api-key-env {name}: the environment variable {name} is not set or empty")
    return key


def build_app(args, model=None, processor=None):
    """The app `args` describe; `model`, `processor` (already loaded) skip loading the checkpoint."""
    from llava.serve.app import create_app
    from llava.serve.engine import Engine, Settings

    for name in ("max_frames", "max_queue", "decode_workers"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ServeOptionError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be at least 1")
    if not args.video_dir.is_dir():
        raise ServeOptionError(f"--video-dir {args.video_dir}: not a folder")
    key = api_key(args.api_key_env)
    checkpoint = find_checkpoint(args.model)
    if model is None:
        from llava.cli import load_model

        model, processor = load_model(checkpoint, args.device, args.dtype, progress=sys.stderr.isatty())
    settings = Settings(max_frame_num=args.max_frames, max_queue=args.max_queue, decode_workers=args.decode_workers,
                        decode_timeout=args.decode_timeout, cache_bytes=int(args.cache_gb * (1 << 30)))
    upload_dir = args.upload_dir or Path(tempfile.mkdtemp(prefix="vilamp-uploads-"))
    return create_app(Engine(model, processor, settings), checkpoint.name, args.video_dir, upload_dir, key,
                      args.allow_http_videos, int(args.max_video_mb * (1 << 20)))


@contextmanager
def serving(app, host: str = "127.0.0.1"):
    """Serve `app` with uvicorn in a background thread on a free port of `host`; yields its base URL."""
    import uvicorn

    listener = socket.socket()
    listener.bind((host, 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="info"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    try:
        yield "http://{}:{}".format(*listener.getsockname())
    finally:
        server.should_exit = True
        thread.join(10)


@command
def main(argv=None) -> int:
    import uvicorn

    args = build_parser().parse_args(argv)
    app = build_app(args)
    uvicorn.run(app, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
