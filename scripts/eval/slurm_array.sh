#!/usr/bin/env bash
# A benchmark as a SLURM job array: task i of N evaluates shard i_N (whole videos dealt round-robin) on the GPUs of
# its node, all tasks writing into one run folder; each task scores what is recorded so far when it ends, and
# `python -m llava.eval.score OUTPUT_DIR` after the last one gives the final tables. Re-submitting resumes.
#
#   sbatch --array=1-4 scripts/eval/slurm_array.sh exp_vMME.py --version ViLAMP-llava-qwen --output_dir outputs/vmme
#
# Edit the #SBATCH lines to your cluster; GPUS_PER_TASK must match --gres.
#SBATCH --job-name=vilamp-eval
#SBATCH --nodes=1
#SBATCH --gres=gpu:8
#SBATCH --cpus-per-task=64
#SBATCH --time=24:00:00
#SBATCH --output=logs/%x-%A_%a.out
set -euo pipefail
: "${SLURM_ARRAY_TASK_ID:?submit with sbatch --array=1-N}"
cd "${SLURM_SUBMIT_DIR:-.}"
count=${SLURM_ARRAY_TASK_MAX:-$SLURM_ARRAY_TASK_COUNT}
exec scripts/eval/run_eval.sh "${GPUS_PER_TASK:-8}" "$@" --split "${SLURM_ARRAY_TASK_ID}_${count}"
