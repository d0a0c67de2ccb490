#!/usr/bin/env bash
# ViLAMP fine-tuning on one machine with NUM_GPUS processes: finetune_multi_node.sh with NNODES=1.
# Environment: MODEL (required), DATA, OUTPUT, NUM_GPUS, MASTER_PORT, DEEPSPEED, TUNABLE, PYTHON
# (see finetune_multi_node.sh). Extra arguments go to llava/train/train.py.
#
#   MODEL=models/tiny-vilamp NUM_GPUS=1 bash scripts/train/finetune_single_node.sh
set -euo pipefail
NNODES=1 RANK=0 MASTER_ADDR=127.0.0.1 exec bash "$(dirname "$0")/finetune_multi_node.sh" "$@"
