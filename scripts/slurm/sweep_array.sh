#!/usr/bin/env bash
# Slurm job array: each array task runs one shard of a sweep (`--shard I/N`); a dependent job
# joins the shards with `ferrum-bench merge`. Submit:
#
#   jid=$(sbatch --parsable --array=0-3 scripts/slurm/sweep_array.sh presets/m3.toml)
#   sbatch --dependency=afterok:$jid --wrap "ferrum-bench merge results/shards/* --out results"
#
# Task i of N (SLURM_ARRAY_TASK_ID counted from SLURM_ARRAY_TASK_MIN, default 0) runs shard
# i+1/N into $OUT/shards/shard-<i+1>-of-<N>/. BENCH_BIN (default: ferrum-bench on PATH) and
# OUT (default: results) override the binary and the output root; extra arguments after the
# preset go to `sweep`.
#SBATCH --job-name=ferrum-bench-sweep
#SBATCH --cpus-per-task=8
#SBATCH --time=02:00:00
set -euo pipefail

preset=${1:?usage: sweep_array.sh PRESET [SWEEP_ARGS...]}
shift
: "${SLURM_ARRAY_TASK_ID:?not a Slurm array task (SLURM_ARRAY_TASK_ID unset)}"
: "${SLURM_ARRAY_TASK_COUNT:?SLURM_ARRAY_TASK_COUNT unset}"
bench=${BENCH_BIN:-ferrum-bench}
out=${OUT:-results}
index=$((SLURM_ARRAY_TASK_ID - ${SLURM_ARRAY_TASK_MIN:-0} + 1))
count=$SLURM_ARRAY_TASK_COUNT
if (( index < 1 || index > count )); then
  echo "error: array task $SLURM_ARRAY_TASK_ID is outside 0..$((count - 1))" >&2
  exit 2
fi
dir="$out/shards/shard-$index-of-$count"
mkdir -p "$dir"
exec "$bench" sweep "$preset" --shard "$index/$count" --quiet --out "$dir" "$@"
