#!/usr/bin/env bash
# Run one benchmark in N shards in parallel (one GPU each), wait, then score all shards together.
#   scripts/eval/run_eval.sh N exp_mlvu.py --version NAME --output_dir outputs/mlvu [more exp_* arguments]
# N=1 runs a single shard on CPU. Logs go to OUTPUT_DIR/shard_i.log.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 N exp_SCRIPT.py [arguments of the script, --output_dir included]" >&2
  exit 2
fi
shards=$1; script=$2; shift 2
output_dir=""
args=("$@")
for ((k = 0; k < ${#args[@]}; k++)); do
  [ "${args[k]}" = "--output_dir" ] && output_dir=${args[k + 1]}
done
if [ -z "$output_dir" ]; then
  echo "error: pass --output_dir so the shards and the scorer share one folder" >&2
  exit 2
fi
mkdir -p "$output_dir"
pids=()
for ((i = 1; i <= shards; i++)); do
  if [ "$shards" -eq 1 ]; then
    python "$script" "$@" --split 1_1 --device cpu 2>&1 | tee "$output_dir/shard_1.log" &
  else
    CUDA_VISIBLE_DEVICES=$((i - 1)) python "$script" "$@" --split "${i}_${shards}" >"$output_dir/shard_$i.log" 2>&1 &
  fi
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
[ $status -eq 0 ] || echo "some shards failed: see $output_dir/shard_*.log (re-running resumes them)" >&2
python -m llava.eval.score "$output_dir"
exit $status
