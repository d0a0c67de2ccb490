"""Host memory per rank when ZeRO-3 training starts: 2 CPU ranks (gloo) on a ViLAMP of ~370M parameters.

    OMP_NUM_THREADS=1 python scripts/train/bench_zero3_memory.py [--work-dir outputs/bench_zero3] [--hidden-size 4096]

Writes a random checkpoint in bf16, as the released one is (the tiny architecture with a wide language model: 2 Qwen2
layers of hidden size 4096; 112-pixel SigLIP frames, 64 tokens a keyframe, so that one step stays short on a CPU),
runs `llava/train/train.py --deepspeed scripts/zero3.json` under `torchrun --nproc_per_node 2` for one step, and
prints for each rank, against the model's float32 bytes: its peak RSS and its anonymous (not file-backed) RSS once the
model is built (before the Trainer starts DeepSpeed), and its peak RSS over the whole run. The `llava` measured is
the one Python imports (`PYTHONPATH=/other/checkout` measures that checkout).
"""

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[2]))  # after PYTHONPATH, so that it chooses the checkout

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import llava
from llava.errors import command
from llava.tiny import write_tiny_checkpoint
from llava.train.example_data import write_example_videos

# Each rank records its memory once the model is built and its peak RSS (ru_maxrss, KiB on Linux) at the end.
ENTRY = """import json, os, resource, sys
import deepspeed.comm.comm  # noqa: F401
sys.modules["deepspeed.comm.torch"].build_shm_op = lambda: None  # skip a minute-long JIT build; CPU only
import llava.train.train as train

def peak_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

def anonymous_bytes():  # resident memory not backed by a file (a memory-mapped checkpoint is file-backed)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("RssAnon:"))

build = train.build_trainer

def measured_build(*args):
    trainer = build(*args)
    params = list(trainer.model.parameters())
    report["built_peak_rss"] = peak_bytes()
    report["built_anonymous_rss"] = anonymous_bytes()
    report["local_parameter_bytes"] = sum(p.ds_tensor.numel() * p.ds_tensor.element_size() if hasattr(p, "ds_tensor")
                                          else p.numel() * p.element_size() for p in params)
    return trainer

report = {}
train.build_trainer = measured_build
train.main()
report["trained_peak_rss"] = peak_bytes()
path = os.path.join(os.environ["REPORT_DIR"], f"rank{os.environ['RANK']}.json")
with open(path, "w") as f:
    json.dump(report, f)
"""


def write_bf16_checkpoint(path: Path, hidden_size: int) -> None:
    """The tiny architecture with a wide language model, its weights stored in bfloat16 as the released ones are."""
    write_tiny_checkpoint(path, seed=0, hidden_size=hidden_size, image_size=112)
    weights = path / "model.safetensors"
    save_file({k: v.to(torch.bfloat16) for k, v in load_file(weights).items()}, weights, metadata={"format": "pt"})
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "dtype": "bfloat16"}, indent=2))


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


@command
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=Path("outputs/bench_zero3"))
    parser.add_argument("--hidden-size", type=int, default=4096, help="language-model width (2 layers)")
    parser.add_argument("--port", type=int, default=29741)
    args = parser.parse_args(argv)
    code = Path(llava.__file__).resolve().parents[1]
    checkpoint = args.work_dir / f"vilamp-h{args.hidden_size}"
    if not (checkpoint / "config.json").exists():
        write_bf16_checkpoint(checkpoint, args.hidden_size)
    videos = args.work_dir / "videos"
    write_example_videos(videos)
    entry, reports = args.work_dir / "entry.py", args.work_dir / "reports"
    entry.write_text(ENTRY)
    reports.mkdir(exist_ok=True)
    repo = Path(__file__).resolve().parents[2]
    command_line = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(args.port),
        str(entry), "--model_name_or_path", str(checkpoint), "--data_path", str(repo / "example-10.json"),
        "--video_folder", str(videos), "--output_dir", str(args.work_dir / "run"),
        "--deepspeed", str(repo / "scripts" / "zero3.json"), "--use_cpu", "True", "--max_steps", "1",
        "--per_device_train_batch_size", "1", "--report_to", "none", "--save_strategy", "no",
        "--dataloader_num_workers", "0",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(code), "REPORT_DIR": str(reports), "OMP_NUM_THREADS": "1"}
    subprocess.run(command_line, env=env, check=True)

    with safe_open(checkpoint / "model.safetensors", "pt") as f:
        numel = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    full = 4 * numel
    print(f"llava from {code}; {numel / 1e6:.0f}M parameters, float32 model {gib(full)}, bf16 checkpoint "
          f"{gib((checkpoint / 'model.safetensors').stat().st_size)}")
    for rank in (0, 1):
        r = json.loads((reports / f"rank{rank}.json").read_text())
        print(f"rank {rank}: holds {gib(r['local_parameter_bytes'])} of parameters once built; then peak RSS "
              f"{gib(r['built_peak_rss'])} ({r['built_peak_rss'] / full:.2f}x the float32 model), anonymous RSS "
              f"{gib(r['built_anonymous_rss'])} ({r['built_anonymous_rss'] / full:.2f}x); peak RSS over the run (one "
              f"step and the save) {gib(r['trained_peak_rss'])} ({r['trained_peak_rss'] / full:.2f}x)")


if __name__ == "__main__":
    main()
