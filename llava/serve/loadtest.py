"""A bounded load test of `python -m llava.serve` on 127.0.0.1: what the video cache saves, and latency under
concurrent clients.

    python -m llava.serve.loadtest [--model PATH] [--videos 3] [--seconds 60] [--clients 8] [--requests 32]
                                   [--max-new-tokens 8]

It serves the checkpoint in this process, writes `--videos` synthetic videos of about `--seconds` seconds, asks a
2 s video once (starting the decoding workers), asks each video one question twice (the first request decodes the
video and runs the vision tower; the second finds both in the cache), then `--clients` clients send `--requests` questions in all about the cached videos. Prints one Markdown
table (seconds; ratios of medians measured in this run).
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from llava.errors import command

QUESTIONS = ("What colour is the background when the white bar is at the left?", "Where is the white bar at the end?",
             "What happens in the middle of the video?", "Which colour comes last?")


def ask(url: str, model_id: str, video: Path, question: str, max_new_tokens: int) -> tuple[float, int, dict]:
    """(seconds, HTTP status, reply) of one chat completion."""
    body = {"model": model_id, "max_tokens": max_new_tokens, "messages": [{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": video.resolve().as_uri()}}, {"type": "text", "text": question}]}]}
    request = urllib.request.Request(url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            status, reply = response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        status, reply = error.code, json.loads(error.read())
    return time.perf_counter() - start, status, reply


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))]


@command
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llava.serve.loadtest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    args = parser.parse_args(argv)

    from llava.eval.synthetic import write_video
    from llava.serve.__main__ import build_app, build_parser, serving

    with tempfile.TemporaryDirectory(prefix="vilamp-load-") as temporary:
        folder = Path(temporary)
        videos = [write_video(folder / f"video{n}.mp4", seconds=args.seconds + n, fps=4, width=320, height=240)
                  for n in range(args.videos)]
        warmup = write_video(folder / "warmup.mp4", seconds=2, fps=4, width=320, height=240)
        serve_args = build_parser().parse_args([*(["--model", args.model] if args.model else []),
                                                "--video-dir", str(folder), "--upload-dir", str(folder / "uploads")])
        app = build_app(serve_args)
        with serving(app) as url:
            with urllib.request.urlopen(url + "/v1/models") as response:
                model_id = json.loads(response.read())["data"][0]["id"]
            start_up = ask(url, model_id, warmup, QUESTIONS[0], args.max_new_tokens)[0]  # starts the decoding workers
            cold, warm = [], []
            for video in videos:
                for times in (cold, warm):
                    seconds, status, reply = ask(url, model_id, video, QUESTIONS[0], args.max_new_tokens)
                    if status != 200:
                        raise RuntimeError(f"{video}: HTTP {status}: {reply}")
                    times.append(seconds)
            jobs = [(videos[n % len(videos)], QUESTIONS[n % len(QUESTIONS)]) for n in range(args.requests)]
            start = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                results = list(pool.map(lambda job: ask(url, model_id, *job, args.max_new_tokens), jobs))
            wall = time.perf_counter() - start
    latencies = [seconds for seconds, status, _ in results if status == 200]
    statuses = sorted({status for _, status, _ in results})
    rows = [
        ("the server's first request (a 2 s video; starts the decoding workers)", start_up),
        ("first request about a video (decode + vision + answer), median", statistics.median(cold)),
        ("same video again (cached frames and features), median", statistics.median(warm)),
        ("cached / first", statistics.median(warm) / statistics.median(cold)),
        (f"{args.clients} clients, {args.requests} requests: p50", percentile(latencies, 0.5)),
        ("p90", percentile(latencies, 0.9)),
        ("p99", percentile(latencies, 0.99)),
        ("requests answered per second", len(latencies) / wall),
    ]
    print(f"{args.videos} videos of ~{args.seconds} s (4 fps, 320x240), {args.max_new_tokens} new tokens, "
          f"statuses {statuses}")
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
