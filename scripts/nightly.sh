#!/usr/bin/env bash
# Nightly performance gate: run one preset on a baseline and a candidate build with interleaved
# repeats (ABBA order, so slow drift of the machine hits both sides alike), compare them with
# ferrum-bench's noise-aware verdicts, write the Markdown summary, JUnit and BMF files, and exit
# with compare's code (0 no regression, 1 regression, 2 bad input, 4 inconclusive with
# --fail-on-inconclusive).
#
# Usage:
#   scripts/nightly.sh --baseline BIN|COMMIT --candidate BIN|COMMIT [options] [-- COMPARE_ARGS...]
#
# BASELINE / CANDIDATE: a ferrum-bench executable (its built-in reference engine is the engine
# under test), or a git commit-ish of this repository, which is built in a temporary worktree
# (binary kept in DIR/build/bin/; cargo target dir DIR/build/target, or $NIGHTLY_TARGET_DIR).
#
# Options:
#   --preset FILE        preset to run (default: tests/fixtures/compare_ab.toml, ~2 s per run)
#   --pairs N            ABBA pairs: N runs of one repeat per side (default 3, the minimum for a
#                        verdict; use 5+ on real hardware)
#   --seed S             workload seed shared by every run (default 1)
#   --out DIR            output directory (default: nightly-out)
#   --candidate-set K=V  extra --set for the candidate runs only (repeatable; e.g. to rehearse
#                        a known regression)
#   -h, --help           this text
#
# Writes DIR/baseline/<run>/, DIR/candidate/<run>/, DIR/summary.md, DIR/junit.xml, DIR/bmf.json,
# DIR/compare.json, and appends summary.md to $GITHUB_STEP_SUMMARY when that is set.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

repo_root=$(cd "$(dirname "$0")/.." && pwd)
preset="$repo_root/tests/fixtures/compare_ab.toml"
pairs=3
seed=1
out="nightly-out"
baseline=""
candidate=""
candidate_set=()
compare_args=()

while [[ $# -gt 0 ]]; do
  case "$1" in
    --baseline) baseline=${2:?--baseline needs a value}; shift 2 ;;
    --candidate) candidate=${2:?--candidate needs a value}; shift 2 ;;
    --preset) preset=${2:?--preset needs a value}; shift 2 ;;
    --pairs) pairs=${2:?--pairs needs a value}; shift 2 ;;
    --seed) seed=${2:?--seed needs a value}; shift 2 ;;
    --out) out=${2:?--out needs a value}; shift 2 ;;
    --candidate-set) candidate_set+=(--set "${2:?--candidate-set needs KEY=VALUE}"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; compare_args=("$@"); break ;;
    *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

if [[ -z "$baseline" || -z "$candidate" ]]; then
  echo "error: --baseline and --candidate are required (see --help)" >&2
  exit 2
fi
if ! [[ "$pairs" =~ ^[0-9]+$ ]] || (( pairs < 1 || pairs > 100 )); then
  echo "error: --pairs '$pairs' must be an integer in 1..100" >&2
  exit 2
fi
if [[ ! -f "$preset" ]]; then
  echo "error: preset '$preset' not found" >&2
  exit 2
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)
build_dir="$out/build"
# Worktrees made by resolve (which runs in a subshell, hence found by path) go away on exit.
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
  local w
  for w in "$build_dir"/baseline-*/ "$build_dir"/candidate-*/; do
    if [[ -d "$w" ]]; then
      git -C "$repo_root" worktree remove --force "$w" >/dev/null 2>&1 || true
    fi
  done
  return 0
}
trap cleanup EXIT

# resolve NAME SPEC: print the path of a ferrum-bench binary for SPEC (a binary or a commit).
resolve() {
  local name=$1 spec=$2
  if [[ -x "$spec" && ! -d "$spec" ]]; then
    (cd "$(dirname "$spec")" && echo "$(pwd)/$(basename "$spec")")
    return
  fi
  local sha
  if ! sha=$(git -C "$repo_root" rev-parse --verify --quiet "$spec^{commit}"); then
    echo "error: --$name '$spec' is neither an executable nor a commit of $repo_root" >&2
    exit 2
  fi
  # Built binaries are kept under DIR/build/bin, so a rerun with the same --out builds nothing;
  # both commits share one cargo target dir, so dependencies compile once.
  local bin="$build_dir/bin/ferrum-bench-$sha"
  if [[ ! -x "$bin" ]]; then
    local tree="$build_dir/$name-$sha"
    rm -rf "$tree"
    git -C "$repo_root" worktree add --detach "$tree" "$sha" >&2
    mkdir -p "$build_dir/bin"
    (cd "$tree" && CARGO_TARGET_DIR="${NIGHTLY_TARGET_DIR:-$build_dir/target}" \
      cargo build --release --quiet >&2)
    cp "${NIGHTLY_TARGET_DIR:-$build_dir/target}/release/ferrum-bench" "$bin.tmp"
    mv "$bin.tmp" "$bin"
    git -C "$repo_root" worktree remove --force "$tree" >/dev/null 2>&1 || true
  fi
  echo "$bin"
}

base_bin=$(resolve baseline "$baseline")
cand_bin=$(resolve candidate "$candidate")

run_side() {
  local side=$1
  if [[ "$side" == baseline ]]; then
    "$base_bin" run "$preset" --repeats 1 --seed "$seed" --quiet --out "$out/baseline" >/dev/null
  else
    "$cand_bin" run "$preset" --repeats 1 --seed "$seed" --quiet --out "$out/candidate" \
      "${candidate_set[@]}" >/dev/null
  fi
}

# ABBA: pair 1 runs A then B, pair 2 B then A, and so on.
for ((i = 1; i <= pairs; i++)); do
  if (( i % 2 == 1 )); then order=(baseline candidate); else order=(candidate baseline); fi
  for side in "${order[@]}"; do
    echo "pair $i/$pairs: $side" >&2
    run_side "$side"
  done
done

set +e
"$cand_bin" compare "$out/baseline" "$out/candidate" --format md \
  --junit "$out/junit.xml" --bmf "$out/bmf.json" "${compare_args[@]}" >"$out/summary.md"
code=$?
"$cand_bin" compare "$out/baseline" "$out/candidate" --format json "${compare_args[@]}" \
  >"$out/compare.json" 2>/dev/null
"$cand_bin" compare "$out/baseline" "$out/candidate" "${compare_args[@]}" 2>&1
set -e

if [[ -n "${GITHUB_STEP_SUMMARY:-}" ]]; then
  cat "$out/summary.md" >>"$GITHUB_STEP_SUMMARY"
fi
echo "summary: $out/summary.md (exit $code)" >&2
exit "$code"
