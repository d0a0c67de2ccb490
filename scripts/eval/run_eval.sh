#!/usr/bin/env bash
# Run one benchmark on G GPUs of this machine: the ranks share its videos (longest first), rank 0 scores at the end.
#   scripts/eval/run_eval.sh G exp_mlvu.py --version NAME [more exp_* arguments]
# G=1 runs one process (on CPU when there is no GPU). Re-running resumes. For several nodes call torchrun yourself
# (README "Evaluation"); for a job array see scripts/eval/slurm_array.sh.
set -euo pipefail
if [ $# -lt 2 ] || ! [[ $1 =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 G exp_SCRIPT.py [arguments of the script]  (G: processes, one GPU each)" >&2
  exit 2
fi
processes=$1; shift
if [ "$processes" -eq 1 ]; then
  exec "${PYTHON:-python}" "$@"
fi
exec "${PYTHON:-python}" -m torch.distributed.run --standalone --nproc_per_node "$processes" "$@"
