"""Ask one question about one video from the command line.

    python -m llava.cli VIDEO "question" [--model PATH] [--max_frames 600] [--max_new_tokens 128]
                        [--device cuda|cpu] [--dtype bf16|fp16|fp32] [--json] [--visualize OUT.png]

Prints the answer, the keyframe timestamps and the token budget (or one JSON object with `--json`); `--visualize`
also draws what the model looked at (`llava.visualize`). Input errors (video, checkpoint, options) print one line
on stderr and exit with status 2. Progress bars go to stderr, only when it is a terminal.
"""

import argparse
import json
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm import tqdm

from llava.errors import VilampError, command
from llava.model.builder import MODELS_DIR, CheckpointError, find_checkpoint
from llava.visualize import timestamp, visualize

PROGRESS_DELAY = 0.5  # seconds before a bar appears: short videos show none
DTYPES = ("bf16", "fp16", "fp32")


class InputError(VilampError):
    """A problem with what the user gave (video, checkpoint, option); the message says what and how to fix it."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m llava.cli", description="Ask a ViLAMP checkpoint one question about one video.")
    parser.add_argument("video", type=Path, help="video file (anything FFmpeg decodes)")
    parser.add_argument("question", help="the question; also the CLIP query that picks the keyframes")
    parser.add_argument("--model", default=None,
                        help=f"checkpoint folder, or a name under {MODELS_DIR}/ (default: the first folder under "
                             f"{MODELS_DIR}/ with a config.json)")
    parser.add_argument("--max_frames", "--max_frame_num", dest="max_frames", type=int, default=600,
                        help="most frames sampled from the video (1 fps first; --max_frame_num is the released "
                             "scripts' spelling). The keyframes among them are the checkpoint's max_frame_num")
    parser.add_argument("--max_new_tokens", type=int, default=128, help="longest answer, in tokens")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--dtype", default=None, choices=DTYPES, help="default: bf16 on cuda, fp32 on cpu")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--visualize", type=Path, default=None, metavar="OUT.png",
                        help="also write a figure of the keyframes, relevance and DFM patch weights")
    return parser


def check_options(args) -> None:
    """Reject bad options before the slow model load."""
    if not args.question.strip():
        raise InputError("the question is empty")
    for name in ("max_frames", "max_new_tokens"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name} {getattr(args, name)}: must be at least 1")
    if not args.video.is_file():
        raise InputError(f"{args.video}: video file not found")
    if args.device is not None and args.device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {args.device}: CUDA is not available here; use --device cpu")
    if args.visualize is not None:
        from matplotlib.backend_bases import FigureCanvasBase

        formats = FigureCanvasBase.get_supported_filetypes()
        if args.visualize.suffix.lower().lstrip(".") not in formats:
            raise InputError(f"--visualize {args.visualize}: the file name must end in one of "
                             f"{', '.join('.' + name for name in sorted(formats))}")


def load_model(checkpoint: Path, device: str | None, dtype: str | None, progress: bool):
    """-> (model, processor); an incomplete or foreign checkpoint is an InputError. Without `progress`,
    transformers' own weight-loading bar is silenced too."""
    from transformers.utils.logging import disable_progress_bar

    from llava.model.builder import load_pretrained_model

    if not progress:
        disable_progress_bar()  # transformers' "Loading weights" bar
    try:
        _, model, processor, _ = load_pretrained_model(checkpoint, device_map=device or "auto", dtype=dtype)
    except (CheckpointError, ValueError) as error:  # files missing; not a ViLAMP config
        raise InputError(f"cannot load the checkpoint {checkpoint}: {error}") from error
    return model, processor


def decode(path: Path, processor, max_frames: int, progress: bool):
    """`load_video` at 1 fps, with a progress bar; a video that yields no frame is an InputError."""
    from llava.video import VideoDecodeError, load_video

    with tqdm(desc="decoding", unit="frame", disable=not progress, delay=PROGRESS_DELAY) as bar:

        def tick(done: int, planned: int) -> None:
            bar.total = planned
            bar.update(done - bar.n)

        try:
            return load_video(path, processor.video_processor, max_frames, progress=tick)
        except VideoDecodeError as error:
            raise InputError(f"cannot read the video {error}") from error


@contextmanager
def encoding_progress(model, num_frames: int, progress: bool):
    """A bar over the frames the vision encoders see while answering: CLIP sees every frame, SigLIP every frame
    (or only the keyframes, with a composer that merges from CLIP embeddings). Counted by forward hooks on the two
    image encoders."""
    if not progress:
        yield
        return
    config, inner = model.config, model.model
    siglip = num_frames if inner.composer_projector.uses_siglip else min(config.max_frame_num, num_frames)

    with tqdm(total=num_frames + siglip, desc="encoding", unit="frame", delay=PROGRESS_DELAY) as bar:
        def tick(module, inputs, output):
            hidden = output if isinstance(output, torch.Tensor) else output.last_hidden_state
            bar.update(hidden.shape[0])

        hooks = [inner.vision_tower.register_forward_hook(tick),
                 inner.frame_selector.model.vision_model.register_forward_hook(tick)]
        try:
            yield
        finally:
            for hook in hooks:
                hook.remove()


def summary(args, checkpoint: Path, video, answer) -> dict:
    """Everything the CLI reports, as one JSON-ready object."""
    from llava.inference import answer_report

    return {"video": str(args.video), "question": args.question, "answer": answer.text, "model": str(checkpoint),
            **answer_report(video, answer), "visualization": None if args.visualize is None else str(args.visualize)}


def format_text(result: dict) -> str:
    """The answer, then the keyframe timestamps and the token budget."""
    tokens = result["tokens"]
    stamps = " ".join(keyframe["timestamp"] for keyframe in result["keyframes"])
    heading = (f"keyframes ({len(result['keyframes'])} of {result['sampled_frames']} sampled frames, "
               f"video {timestamp(result['duration_seconds'])}): ")
    lines = [result["answer"], "", textwrap.fill(stamps, 100, initial_indent=heading, subsequent_indent="  "),
             f"tokens: {tokens['keyframe']} keyframe + {tokens['merged']} merged + {tokens['newline']} newline + "
             f"{tokens['text']} text = {tokens['total']}"]
    if result["visualization"]:
        lines.append(f"figure: {result['visualization']}")
    return "\n".join(lines)


def run(args) -> dict:
    """Answer (and draw) as `args` say; returns the summary."""
    check_options(args)
    checkpoint = find_checkpoint(args.model)
    from llava.inference import answer_video  # the model stack loads only once the cheap checks passed

    progress = sys.stderr.isatty()
    model, processor = load_model(checkpoint, args.device, args.dtype, progress)
    video = decode(args.video, processor, args.max_frames, progress)
    with encoding_progress(model, len(video.frames), progress):
        answer = answer_video(model, processor, video.frames, args.question, args.question, args.max_new_tokens)
    if args.visualize is not None:
        visualize(model, processor, video, args.question, answer, args.visualize, args.video.name)
    return summary(args, checkpoint, video, answer)


@command
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    result = run(args)
    print(json.dumps(result, ensure_ascii=False) if args.json else format_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
