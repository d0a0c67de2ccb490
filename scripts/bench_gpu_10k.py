"""One question over 10,000 frames with the real ViLAMP-7B architecture (random weights, nothing downloaded).

    python scripts/bench_gpu_10k.py [--frames 10000] [--chunk 64]          # on a CUDA GPU, bf16
    python scripts/bench_gpu_10k.py --preset tiny --frames 64 --device cpu  # smoke run of the script itself

Prints peak `torch.cuda.max_memory_allocated`, seconds per stage (CLIP, DKS, SigLIP + DFM, LLM prefill, decode) and
the FLOP floor of SigLIP + projector on the GPU (its dense bf16 peak), then a last line `GPU ` + JSON.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llava.errors import command  # noqa: E402
from llava.model import LlavaQwenConfig, LlavaQwenForCausalLM  # noqa: E402
from llava.processing import VideoFrames, video_token_count  # noqa: E402

# Dense bf16 peak (TFLOP/s) by device name fragment, for the FLOP floor.
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "4090": 165.0}

PRESETS = {
    # Qwen2-7B + SigLIP-so400m-patch14-384 + CLIP ViT-B/32 (the LlavaQwenConfig defaults), DFM sig_pooling.
    "7b": dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
               num_attention_heads=28, num_key_value_heads=4),
    "tiny": dict(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                                           num_attention_heads=4, image_size=384, patch_size=14)),
}


def siglip_flops_per_frame(config: LlavaQwenConfig, layers: int) -> float:
    """Matmul FLOPs of the kept SigLIP layers and the projector for one frame."""
    vision = config.siglip_config
    tokens, width, inner = (vision.image_size // vision.patch_size) ** 2, vision.hidden_size, vision.intermediate_size
    per_layer = 2 * tokens * (4 * width * width + 2 * width * inner) + 2 * 2 * tokens * tokens * width
    projector = 2 * tokens * (width * config.hidden_size + config.hidden_size * config.hidden_size)
    return layers * per_layer + projector


class StageTimer:
    """Wraps methods of an object so each call's (synchronised) wall time is added to a named stage."""

    def __init__(self, device: str):
        self.device, self.seconds, self.calls = device, {}, {}

    def sync(self):
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def wrap(self, owner, method: str, stage: str, first_call_stage: str | None = None):
        original = getattr(owner, method)

        def timed(*args, **kwargs):
            self.sync()
            started = time.perf_counter()
            result = original(*args, **kwargs)
            self.sync()
            name = first_call_stage if first_call_stage and not self.calls.get(stage) else stage
            self.calls[stage] = self.calls.get(stage, 0) + 1
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
            return result

        setattr(owner, method, timed)


@command
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="7b")
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--chunk", type=int, default=64, help="vision_chunk_size (frames per SigLIP call)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--new-tokens", type=int, default=16)
    args = parser.parse_args()
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    config = LlavaQwenConfig(composer_type="sig_pooling", **PRESETS[args.preset])
    torch.manual_seed(0)
    torch.set_default_dtype(dtype)
    with torch.device(args.device):
        model = LlavaQwenForCausalLM(config).eval()
    torch.set_default_dtype(torch.float32)
    model.config.vision_chunk_size = args.chunk
    inner = model.model
    side, clip_side = inner.vision_tower.config.image_size, inner.frame_selector.image_size
    gen = torch.Generator().manual_seed(0)
    frames = VideoFrames(torch.randint(0, 256, (args.frames, side, side, 3), dtype=torch.uint8, generator=gen),
                         torch.randint(0, 256, (args.frames, clip_side, clip_side, 3), dtype=torch.uint8, generator=gen))
    query = torch.tensor([[49406, 320, 1929, 530, 518, 2134, 49407]]) % config.clip_config.get(
        "text_config", {}).get("vocab_size", 49408)
    config.video_token_id = 151646  # the id the processor gives `<video>` in the released Qwen2 tokenizer
    visual = video_token_count(args.frames, config.max_frame_num, config.tokens_per_keyframe)
    prompt = torch.tensor([[151644, 8948, 198] + [config.video_token_id] * visual + [198, 3838, 374, 2814, 30, 151645, 198]])

    timer = StageTimer(args.device)
    timer.wrap(inner, "embed_frames_clip", "clip")
    timer.wrap(inner, "choose_keyframes", "dks")
    timer.wrap(inner, "_encode_streaming", "siglip_dfm")
    timer.wrap(model, "forward", "decode", first_call_stage="llm_prefill")
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        started = time.perf_counter()
        encodings = inner.get_video_features(frames.siglip, frames.clip, torch.tensor([args.frames]), query)
        output = model.generate(input_ids=prompt.to(args.device), video_encodings=encodings,
                                max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False)
        timer.sync()
        total = time.perf_counter() - started

    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    peak_tflops = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in device_name), None)
    flops = siglip_flops_per_frame(config, inner.vision_tower.config.num_hidden_layers) * args.frames
    figures = {
        "device": device_name,
        "preset": args.preset,
        "frames": args.frames,
        "sequence_tokens": int(prompt.shape[1]),
        "keyframes": encodings[0].keyframes,
        "new_tokens": int(output.shape[1]),
        "seconds": {k: round(v, 3) for k, v in timer.seconds.items()},
        "seconds_total": round(total, 3),
        "peak_gpu_bytes": torch.cuda.max_memory_allocated() if args.device.startswith("cuda") else None,
        "siglip_projector_tflop": flops / 1e12,
        "siglip_flop_floor_seconds": flops / (peak_tflops * 1e12) if peak_tflops else None,
    }
    for key, value in figures.items():
        if key != "keyframes":
            print(f"{key:>28}: {value}")
    print("GPU " + json.dumps(figures))


if __name__ == "__main__":
    main()
