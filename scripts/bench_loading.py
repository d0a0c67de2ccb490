"""Host memory while loading a checkpoint, and logit drift of the quantized loads (nothing is downloaded).

    python scripts/bench_loading.py [--dir outputs/bench_loading] [--dtypes bf16,fp32] [--device cpu]
    python scripts/bench_loading.py --drift [--device cuda]     # load_8bit / load_4bit against bf16 (CUDA only)

Memory: writes once a random 1.3B-parameter ViLAMP checkpoint in bf16 safetensors (Qwen2-1.5B widths with 6 layers,
SigLIP-so400m, CLIP ViT-B/32, sig_pooling; 2.6 GB, 1 GB shards) under `--dir`, then loads it with `load_model` in a
fresh process per dtype, reads every weight once, and reports that process's peak resident set (VmHWM, reset just
before the call) against the checkpoint's bytes. Drift: loads the tiny checkpoint (`llava.tiny`) in bf16, 8-bit and 4-bit on the
GPU, answers one random video and reports the largest logit difference (relative to the largest bf16 logit) and
whether the greedy next token agrees. The last line is `LOADING ` + JSON.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llava.errors import command  # noqa: E402
from llava.model import LlavaQwenConfig, LlavaQwenForCausalLM  # noqa: E402
from llava.model.builder import QuantizationUnavailable, load_model, load_processor  # noqa: E402

# Qwen2-1.5B's widths with 6 decoder layers; vision tower and CLIP at their released sizes.
RANDOM_1B = dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=6,
                 num_attention_heads=12, num_key_value_heads=2, composer_type="sig_pooling", composer_proj_dim=512)
SHARD_BYTES = 1 << 30


def write_random_checkpoint(folder: Path) -> int:
    """Random bf16 weights for `RANDOM_1B` in safetensors shards + index, written a tensor at a time; -> bytes."""
    from safetensors.torch import save_file

    config = LlavaQwenConfig(**RANDOM_1B, dtype="bfloat16")
    with torch.device("meta"):
        shapes = {name: tensor.shape for name, tensor in LlavaQwenForCausalLM(config).state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    shards, current, size = [], {}, 0
    for name, shape in shapes.items():
        current[name] = torch.empty(shape, dtype=torch.bfloat16).normal_(0.0, 0.02, generator=generator)
        size += current[name].numel() * 2
        if size >= SHARD_BYTES:
            shards.append(current)
            current, size = {}, 0
    shards += [current] if current else []
    folder.mkdir(parents=True, exist_ok=True)
    weight_map, total = {}, 0
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, folder / name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, name))
        total += sum(t.numel() * t.element_size() for t in shard.values())
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    config.save_pretrained(folder)  # last: its presence marks a complete checkpoint
    return total


def measure_in_this_process(folder: Path, device: str, dtype: str) -> dict:
    """Peak resident set of this process while `load_model` runs, above what it held before."""
    status = lambda field: int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith(field)))  # noqa: E731
    before = status("VmRSS:")
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # reset VmHWM to the current resident set
    model = load_model(folder, device, dtype)
    loaded = status("VmHWM:")
    with torch.no_grad():  # weights that stay views of the mapped files become resident only when first read
        for parameter in model.parameters():
            parameter.amax()
    peak = status("VmHWM:")
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return {"dtype": dtype, "device": device, "parameters": sum(p.numel() for p in model.parameters()),
            "model_bytes_mb": weights / 2**20, "rss_before_mb": before / 1024,
            "peak_at_return_mb": loaded / 1024, "peak_rss_mb": peak / 1024,
            "peak_above_before_mb": (peak - before) / 1024, "rss_after_mb": status("VmRSS:") / 1024}


def logit_drift(device: str) -> dict:
    """Largest |logit - bf16 logit| / max |bf16 logit| and greedy agreement of the quantized tiny model."""
    from llava.tiny import write_tiny_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = write_tiny_checkpoint(Path(tmp) / "tiny", seed=0)
        processor = load_processor(checkpoint)
        frames = torch.randint(0, 256, (24, 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        inputs = processor(text=["<|im_start|>user\n<video>\nWhat happens?<|im_end|>\n<|im_start|>assistant\n"],
                           videos=[frames], queries=["What happens?"], return_tensors="pt").to(device)
        logits = {}
        for name, flags in (("bf16", {}), ("8bit", {"load_8bit": True}), ("4bit", {"load_4bit": True})):
            with torch.no_grad():
                logits[name] = load_model(checkpoint, device, "bf16", **flags)(**inputs).logits[0, -1].float()
    reference = logits.pop("bf16")
    scale = float(reference.abs().max())
    return {name: {"max_abs_drift_over_max_logit": float((value - reference).abs().max()) / scale,
                   "same_greedy_token": bool(value.argmax() == reference.argmax())} for name, value in logits.items()}


@command
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("outputs/bench_loading"))
    parser.add_argument("--dtypes", default="bf16,fp32", help="comma-separated dtypes to load the checkpoint in")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--drift", action="store_true", help="measure load_8bit / load_4bit logit drift instead")
    parser.add_argument("--measure", choices=["bf16", "fp32"], help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    checkpoint = args.dir / "random-1b"
    if args.measure:
        print(json.dumps(measure_in_this_process(checkpoint, args.device, args.measure)))
        return
    if args.drift:
        try:
            figures = {"device": args.device, "drift": logit_drift(args.device)}
        except QuantizationUnavailable as error:
            figures = {"device": args.device, "drift": f"not measured: {error}"}
        print("LOADING " + json.dumps(figures))
        return
    if not (checkpoint / "config.json").exists():
        print(f"writing a random checkpoint to {checkpoint} ...", flush=True)
        write_random_checkpoint(checkpoint)
    files = sorted(checkpoint.glob("*.safetensors"))
    checkpoint_mb = sum(f.stat().st_size for f in files) / 2**20
    runs = []
    for dtype in args.dtypes.split(","):
        child = subprocess.run([sys.executable, __file__, "--dir", str(args.dir), "--device", args.device,
                                "--measure", dtype], capture_output=True, text=True, check=True)
        run = json.loads(child.stdout.strip().splitlines()[-1])
        run["peak_above_before_over_checkpoint"] = run["peak_above_before_mb"] / checkpoint_mb
        runs.append(run)
        print(f"{dtype}: peak RSS {run['peak_rss_mb']:.0f} MB ({run['peak_above_before_mb']:.0f} MB above the "
              f"{run['rss_before_mb']:.0f} MB held before loading; {run['peak_at_return_mb']:.0f} MB when load_model "
              f"returned, before the weights were read) for a {checkpoint_mb:.0f} MB checkpoint: "
              f"{run['peak_above_before_over_checkpoint']:.2f}x", flush=True)
    print("LOADING " + json.dumps({"checkpoint_mb": checkpoint_mb, "runs": runs}))


if __name__ == "__main__":
    main()
