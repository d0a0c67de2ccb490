"""The single-node launcher trains the tiny model on CPU from environment variables and prints its command."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from llava.train.example_data import write_example_videos

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_single_node_launcher_trains_and_saves(tiny_checkpoint, tmp_path):
    write_example_videos(tmp_path / "videos")
    (tmp_path / "example.json").write_text((REPO / "example-10.json").read_text())
    registry = tmp_path / "registry.yaml"
    registry.write_text(
        "datasets:\n  - json_path: example.json\n    sampling_strategy: first:2\n    video_folder: videos\n"
        "    max_frame_num: 4\n"
    )
    env = {**os.environ, "MODEL": str(tiny_checkpoint), "DATA": str(registry), "OUTPUT": str(tmp_path / "out"),
           "NUM_GPUS": "1", "MASTER_PORT": "29657", "PYTHON": sys.executable, "OMP_NUM_THREADS": "2"}
    result = subprocess.run(
        ["bash", str(REPO / "scripts/train/finetune_single_node.sh"), "--max_steps", "1", "--save_strategy", "no"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    command = result.stdout.splitlines()[0]
    assert "--nproc_per_node 1" in command and f"--data_path {registry}" in command and "llava/train/train.py" in command
    assert (tmp_path / "out" / "model.safetensors").exists() and (tmp_path / "out" / "clip_tokenizer").is_dir()
