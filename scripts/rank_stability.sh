#!/usr/bin/env bash
# Rank stability benchmark (a benchmark, not a test): does a sweep's ranking survive a second run?
#
# For each order (interleaved, sequential) it runs the same sweep twice: once on the machine as it
# is ("quiet"), once while a CPU-bound interference process of its own (one busy core) runs during
# the middle third of the sweep ("noisy"; the third is timed from the quiet run's wall time). For
# every pair of runs it prints Kendall's tau of the two rankings, whether each run's best cell lies
# in the other's tie set, the number of significant reversals (pairs of cells one run calls
# different at p < 0.05 in one direction and the other in the opposite direction; paired t-test
# over rounds for interleaved runs, Welch for sequential ones) and the repeats the noise monitor
# flagged. Targets (issue 14): 0 reversals and mutual tie-set membership with interleaving.
#
# Usage: scripts/rank_stability.sh [PRESET] [-- extra sweep args]
#   PRESET defaults to presets/m3.toml (the default m3 sweep: 18 cells x 3 repeats, ~5-10 min per
#   run on a 2-core VM, so the full benchmark is 4 runs). A reduced size, e.g.
#     scripts/rank_stability.sh presets/m3.toml -- --sweep sweeps/m3_rank_small.toml --requests 16
#   Environment: BIN (default target/release/ferrum-bench), ORDERS ("interleaved sequential"),
#   OUT (results root, default a temp dir that is kept and printed).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/ferrum-bench}
PRESET=${1:-presets/m3.toml}
shift || true
if [ "${1:-}" = "--" ]; then shift; fi
EXTRA=("$@")
ORDERS=${ORDERS:-"interleaved sequential"}
OUT=${OUT:-$(mktemp -d /tmp/rank_stability.XXXXXX)}
mkdir -p "$OUT"
[ -x "$BIN" ] || { echo "build first: cargo build --release ($BIN missing)" >&2; exit 2; }

BUSY_PID=""
cleanup() { if [ -n "$BUSY_PID" ]; then kill "$BUSY_PID" 2>/dev/null || true; wait "$BUSY_PID" 2>/dev/null || true; fi; }
trap cleanup EXIT INT TERM

# run ORDER LABEL [interfere_from_s interfere_for_s] -> prints the run directory
run_sweep() {
  local order=$1 label=$2 from=${3:-} dur=${4:-}
  local root="$OUT/$order-$label"
  mkdir -p "$root"
  if [ -n "$from" ]; then
    # One busy core for `dur` seconds, starting `from` seconds into the sweep.
    ( sleep "$from"; timeout "$dur" sh -c 'while :; do :; done' ) &
    BUSY_PID=$!
  fi
  local start end
  start=$(date +%s)
  "$BIN" sweep "$PRESET" "${EXTRA[@]}" --order "$order" --out "$root" --quiet --no-report \
    >"$root/table.txt" 2>"$root/stderr.txt" || { echo "sweep failed (see $root/stderr.txt)" >&2; exit 1; }
  end=$(date +%s)
  cleanup; BUSY_PID=""
  echo "$((end - start))" >"$root/wall_s"
  local d
  for d in "$root"/*/; do
    echo "$d"
    return
  done
}

for order in $ORDERS; do
  echo "== $order: quiet run" >&2
  quiet=$(run_sweep "$order" quiet)
  wall=$(cat "$OUT/$order-quiet/wall_s")
  third=$(( wall / 3 ))
  echo "== $order: quiet run took ${wall}s; noisy run (one busy core from ${third}s for ${third}s)" >&2
  noisy=$(run_sweep "$order" noisy "$third" "$third")
  echo "$order $quiet $noisy $wall $(cat "$OUT/$order-noisy/wall_s")" >>"$OUT/pairs.txt"
done

python3 scripts/rank_stability.py "$OUT/pairs.txt"
echo "runs kept under $OUT" >&2
