#!/usr/bin/env bash
# Time a 10,000-cell `--dry-run` (100 × 100 grid on the tiny preset) and a 100-cell one.
# Usage: scripts/bench_dry_run.sh [path/to/ferrum-bench]   (build with `cargo build --release`)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/ferrum-bench}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
for n in 10 100; do
  values=$(seq -s, 1 "$n")
  printf '[knobs]\nFERRUM_MOE_BATCH_THRESHOLD = [%s]\nFERRUM_PAGED_MAX_SEQS = [%s]\n' "$values" "$values" > "$TMP/s$n.toml"
  start=$(date +%s.%N)
  "$BIN" sweep tests/fixtures/tiny.toml --sweep "$TMP/s$n.toml" --dry-run > /dev/null
  end=$(date +%s.%N)
  echo "$((n * n)) cells: $(echo "$end - $start" | bc) s"
done
