#!/usr/bin/env bash
# Run the paper's benchmarks with its settings (600 frames sampled per video, the checkpoint's keyframes, Video-MME
# without subtitles) on every GPU of this machine, then print the paper's values beside ours:
#
#   scripts/eval/reproduce_paper.sh [OUTPUT_ROOT]          (default outputs/paper; one run folder per benchmark)
#
# Environment:
#   MODEL       checkpoint folder or name under models/ (--version)       default models/ViLAMP-llava-qwen
#   GPUS        processes per benchmark (torchrun --nproc_per_node)       default: the GPUs nvidia-smi lists, else 1
#   BENCHMARKS  which, in this order                                      default "videomme mlvu longvideobench lvbench egoschema activitynetqa"
#   SPLIT       i_N: only shard i of N (one job of a job array, e.g. SPLIT=${SLURM_ARRAY_TASK_ID}_4); the comparison
#               is then left to a last `python -m llava.eval.compare_paper OUTPUT_ROOT`
#   <NAME>_DATASET, <NAME>_VIDEOS   question file and video folder of benchmark NAME in capitals (e.g. MLVU_DATASET,
#               VIDEOMME_VIDEOS); default: the adapter's path under dataset/ (README "Evaluation")
#   PYTHON      interpreter                                               default python
# Re-running resumes every benchmark where it stopped. A benchmark that fails (no dataset, no exp script) is reported
# and the others still run; the exit status is 1 if any failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
output_root=${1:-outputs/paper}
model=${MODEL:-models/ViLAMP-llava-qwen}
python=${PYTHON:-python}
benchmarks=${BENCHMARKS:-videomme mlvu longvideobench lvbench egoschema activitynetqa}
gpus=${GPUS:-$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)}
[ "${gpus:-0}" -ge 1 ] || gpus=1

declare -A scripts=([videomme]=exp_vMME.py [mlvu]=exp_mlvu.py [longvideobench]=exp_longvideobench.py
                    [lvbench]=exp_lvbench.py [egoschema]=exp_egoschema.py [activitynetqa]=exp_activitynetqa.py)
if [ "$gpus" -gt 1 ]; then
  launcher=("$python" -m torch.distributed.run --nproc_per_node "$gpus")
else
  launcher=("$python")
fi

failed=()
for name in $benchmarks; do
  script=${scripts[$name]:-}
  if [ -z "$script" ] || [ ! -f "$script" ]; then
    echo "== $name: no entry script (${script:-unknown benchmark; known: ${!scripts[*]}}); skipped" >&2
    failed+=("$name")
    continue
  fi
  upper=${name^^}
  dataset_var=${upper}_DATASET videos_var=${upper}_VIDEOS
  args=(--version "$model" --output_dir "$output_root/$name" --max_frames 600)
  [ -n "${!dataset_var:-}" ] && args+=(--dataset_path "${!dataset_var}")
  [ -n "${!videos_var:-}" ] && args+=(--video_dir "${!videos_var}")
  [ -n "${SPLIT:-}" ] && args+=(--split "$SPLIT")
  mkdir -p "$output_root/$name"
  echo "== $name: ${launcher[*]} $script ${args[*]}"
  if ! "${launcher[@]}" "$script" "${args[@]}" 2>&1 | tee -a "$output_root/$name/log.txt"; then
    echo "== $name failed: see $output_root/$name/log.txt (re-running resumes it)" >&2
    failed+=("$name")
  fi
done

if [ -z "${SPLIT:-}" ]; then
  "$python" -m llava.eval.compare_paper "$output_root" || failed+=(compare_paper)
fi
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed or skipped: ${failed[*]}" >&2
  exit 1
fi
