#!/usr/bin/env bash
# ViLAMP fine-tuning on NNODES machines x NUM_GPUS processes (run the same command on every node).
#
#   MODEL       checkpoint directory to start from (required)
#   DATA        dataset registry or .json file             [training_data.yaml]
#   OUTPUT      output directory                           [outputs/vilamp-finetune]
#   NUM_GPUS    processes per node                         [1]
#   NNODES      number of nodes                            [1]
#   RANK        this node's rank, 0 .. NNODES-1            [0]
#   MASTER_ADDR address of the rank-0 node                 [127.0.0.1]
#   MASTER_PORT its port                                   [29500]
#   DEEPSPEED   DeepSpeed config, "" for none              [scripts/zero3.json with CUDA, none without]
#   TUNABLE     --mm_tunable_parts                         [mm_mlp_adapter,mm_language_model,composer_projector]
#   PYTHON      interpreter                                [python]
# Extra arguments are passed to llava/train/train.py after the defaults below, so they override them.
set -euo pipefail
cd "$(dirname "$0")/../.."

: "${MODEL:?set MODEL to a checkpoint directory (a tiny one: python -m llava.tiny models/tiny-vilamp)}"
DATA=${DATA:-training_data.yaml}
OUTPUT=${OUTPUT:-outputs/vilamp-finetune}
NUM_GPUS=${NUM_GPUS:-1}
NNODES=${NNODES:-1}
RANK=${RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29500}
TUNABLE=${TUNABLE:-mm_mlp_adapter,mm_language_model,composer_projector}
PYTHON=${PYTHON:-python}

if "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    DEEPSPEED=${DEEPSPEED-scripts/zero3.json}
    PRECISION=(--bf16 True)
else  # CPU: plain Trainer, float32
    DEEPSPEED=${DEEPSPEED-}
    PRECISION=(--use_cpu True)
fi
DEEPSPEED_ARGS=()
if [ -n "$DEEPSPEED" ]; then DEEPSPEED_ARGS=(--deepspeed "$DEEPSPEED"); fi

if [ "$DATA" = training_data.yaml ]; then  # the example dataset's videos are generated, not committed
    "$PYTHON" -m llava.train.example_data dataset/example
fi

CMD=("$PYTHON" -m torch.distributed.run
    --nnodes "$NNODES" --node_rank "$RANK" --nproc_per_node "$NUM_GPUS"
    --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT"
    llava/train/train.py
    --model_name_or_path "$MODEL"
    --version qwen_1_5
    --data_path "$DATA"
    --output_dir "$OUTPUT"
    --mm_tunable_parts "$TUNABLE"
    "${DEEPSPEED_ARGS[@]}"
    "${PRECISION[@]}"
    --num_train_epochs 1
    --per_device_train_batch_size 1
    --gradient_accumulation_steps 1
    --learning_rate 1e-5
    --weight_decay 0.0
    --warmup_steps 0.03
    --lr_scheduler_type cosine
    --logging_steps 1
    --save_strategy steps
    --save_steps 1000
    --save_total_limit 1
    --activation_checkpointing True
    --report_to none
    "$@")
echo "${CMD[*]}"
exec "${CMD[@]}"
