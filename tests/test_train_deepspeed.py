"""DeepSpeed ZeRO-2 and ZeRO-3 with two processes through torchrun, on CPU (gloo), every ViLAMP part trainable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from llava.model.builder import load_pretrained_model
from llava.train.example_data import write_example_videos

REPO = Path(__file__).resolve().parents[1]
# DeepSpeed JIT-compiles a shared-memory comm op on CPU (over a minute); the test skips it. Not needed on GPUs.
ENTRY = """import sys
import deepspeed.comm.comm  # noqa: F401
sys.modules["deepspeed.comm.torch"].build_shm_op = lambda: None
from llava.train.train import main
main()
"""


def _torchrun(entry, port, checkpoint, videos, output, zero):
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port), str(entry),
        "--model_name_or_path", str(checkpoint), "--data_path", str(REPO / "example-10.json"),
        "--video_folder", str(videos), "--output_dir", str(output), "--deepspeed", str(REPO / "scripts" / zero),
        "--use_cpu", "True", "--max_steps", "2", "--per_device_train_batch_size", "1", "--report_to", "none",
        "--save_strategy", "no", "--dataloader_num_workers", "0",
        "--mm_tunable_parts", "mm_mlp_adapter,mm_language_model,frame_selector,composer_projector",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{zero} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"


@pytest.mark.slow
def test_zero2_and_zero3_train_two_ranks_and_save_loadable_checkpoints(tiny_checkpoint, tmp_path):
    videos = tmp_path / "videos"
    write_example_videos(videos)
    entry = tmp_path / "entry.py"
    entry.write_text(ENTRY)
    outputs = {zero: tmp_path / zero for zero in ("zero2.json", "zero3.json")}
    for port, (zero, output) in enumerate(outputs.items(), start=29631):
        _torchrun(entry, port, tiny_checkpoint, videos, output, zero)
    base = load_file(tiny_checkpoint / "model.safetensors")
    zero2, zero3 = (load_file(out / "model.safetensors") for out in outputs.values())
    assert zero2.keys() == base.keys() and zero2["model.composer_projector.tau"].shape == ()
    for prefix in ("model.layers.0", "model.mm_projector", "model.frame_selector", "model.composer_projector.tau"):
        assert any(not torch.equal(base[k], zero2[k]) for k in base if k.startswith(prefix)), prefix
    for key in base:  # same data, same seed: ZeRO-2 and ZeRO-3 take the same steps
        torch.testing.assert_close(zero3[key], zero2[key], rtol=0, atol=1e-5)
    tokenizer, model, processor, _ = load_pretrained_model(outputs["zero3.json"])
    assert (outputs["zero3.json"] / "clip_tokenizer" / "tokenizer.json").exists() and processor.clip_tokenizer is not None
