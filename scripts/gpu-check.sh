#!/usr/bin/env bash
# Everything that needs a GPU, in one run sized for a short loan of a fresh GPU machine (under
# 8 minutes expected, most of it the release build and the test build; not yet timed on one). Writes its outputs under ${1:-gpu-check}/ and
# prints a summary to paste into the README.
#
#   bash scripts/gpu-check.sh [OUT_DIR]
#
# Needs: the NVIDIA driver (libcuda, libnvidia-ml), cargo, python3 with venv + pip (for the
# libnvrtc/ptxas wheels; no CUDA toolkit needed). Steps:
#   1. the hardware probe (`ferrum-bench hardware`, table and JSON);
#   2. every kernel compiled by NVRTC for this GPU's architecture, with ptxas spill check;
#   3. the GPU tests — kernels vs the CPU code (weight stream, int4 GEMV/GEMM, paged attention
#      vs a contiguous reference, argmax) and the whole CUDA forward vs the CPU engine (logits
#      and greedy tokens, 65 calls x 8 sequences, qwen3_moe and qwen2; batched vs per-item MoE;
#      the CUDA engine through the scheduler) and the two-stage layer split on CUDA vs the
#      unsplit forward (batch and overlapped, both stages on device 0 = cuda_devices [0, 0];
#      on [0, 1] too when there are two GPUs; the split engine through the scheduler) — every
#      one must run: a skip fails the script (only the two-device split check may report
#      "not run" on a one-GPU machine, with the reason, in the summary);
#   4. the int4 GEMV bandwidth benchmark (target: >= 70 % of DRAM peak at batch 1);
#   5. `resolve` of the m3 preset with hardware.profile = "auto" on this GPU;
#   6. a tiny m3 sweep with [engine] device = "cuda" (real Qwen3-30B-A3B shapes, 8 layers,
#      4 cells x 1 repeat of 16 requests).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-check}"
mkdir -p "$out"
t0=$(date +%s)
step() { echo "== [$(( $(date +%s) - t0 ))s] $*" | tee -a "$out/summary.txt"; }
: > "$out/summary.txt"

step "libnvrtc + ptxas (PyPI wheels)"
eval "$(bash scripts/cuda-tools.sh)"
export LD_LIBRARY_PATH="$FERRUMBENCH_NVRTC_LIB_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Never let an injected probe file stand in for this machine.
unset FERRUMBENCH_PROBE_FILE

step "build (release)"
cargo build --release --quiet
bin=./target/release/ferrum-bench

step "hardware probe"
"$bin" hardware | tee "$out/hardware.txt" | tee -a "$out/summary.txt"
"$bin" hardware --format json > "$out/hardware.json"
arch=$(python3 -c 'import json,sys; g=json.load(open(sys.argv[1]))["gpus"]; print("sm_"+g[0]["compute_capability"].replace(".","")) if g else sys.exit("error: no CUDA device visible: nothing to check")' "$out/hardware.json")

step "kernels: NVRTC -> CUBIN for $arch and sm_80/sm_89/sm_90, ptxas -v spills"
"$bin" kernels --ptxas "$FERRUMBENCH_PTXAS" --arch "$arch" --arch sm_80 --arch sm_89 --arch sm_90 \
    > "$out/kernels.txt"
tail -n 1 "$out/kernels.txt" | tee -a "$out/summary.txt"

step "GPU tests (device vs CPU)"
cargo test --release --quiet --lib gpu_ -- --nocapture --test-threads 1 2>&1 | tee "$out/gpu-tests.txt"
if grep -q "skipped:" "$out/gpu-tests.txt"; then
    echo "error: a GPU test skipped on a GPU machine" | tee -a "$out/summary.txt"
    exit 1
fi
# 4 kernel tests + 3 whole-forward tests + 3 layer-split tests; fewer means a filter or a build
# lost some.
passed=$(grep -Eo "^test result: ok\. [0-9]+ passed" "$out/gpu-tests.txt" | grep -Eo "[0-9]+ passed" | grep -Eo "[0-9]+" | head -n 1)
if [[ "${passed:-0}" -lt 10 ]]; then
    echo "error: only ${passed:-0} GPU tests passed (expected 10)" | tee -a "$out/summary.txt"
    exit 1
fi
# The one-device split must have run in both modes for both architectures.
split_runs=$(grep -c "^gpu split .* devices \[0, 0\]" "$out/gpu-tests.txt" || true)
if [[ "$split_runs" -lt 4 ]]; then
    echo "error: the one-device layer-split check ran $split_runs of 4 comparisons" | tee -a "$out/summary.txt"
    exit 1
fi
grep -E "^test result|^gpu (parity|grouped|engine|split)" "$out/gpu-tests.txt" | tee -a "$out/summary.txt"

step "benchmark: int4 GEMV bandwidth at batch 1"
cargo test --release --quiet --lib gpu_bench_ -- --ignored --nocapture 2>&1 \
    | tee "$out/bench.txt" | grep "int4_gemv" | tee -a "$out/summary.txt"

step "resolve m3 with hardware.profile = auto on this GPU"
"$bin" resolve presets/m3.toml --format json > "$out/m3_auto.effective_config.json"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("backend", d["backend"], "| attention", d["selected_attention_impl"], "| max_sequences", d["selected_max_sequences"], "| kv blocks", d["admission"]["kv_block_count"])' \
    "$out/m3_auto.effective_config.json" | tee -a "$out/summary.txt"

step "tiny m3 sweep with device = cuda (real shapes, 8 layers)"
sed -e 's/^weight_seed = 2026$/weight_seed = 2026\ndevice = "cuda"\nnum_layers = 8/' presets/m3.toml \
    > "$out/m3-cuda.toml"
grep -q '^device = "cuda"' "$out/m3-cuda.toml" || { echo "error: could not set device = cuda in the preset copy" | tee -a "$out/summary.txt"; exit 1; }
cat > "$out/m3-cuda-sweep.toml" <<'TOML'
[sweep]
concurrency = [32]

[sweep.knobs]
FERRUM_MOE_BATCH_THRESHOLD = [1, 64]
FERRUM_PAGED_MAX_SEQS = [8, 32]
TOML
"$bin" sweep "$out/m3-cuda.toml" --sweep "$out/m3-cuda-sweep.toml" --requests 16 \
    --warmup-requests 1 --repeats 1 --out "$out/sweep" 2>&1 | tee "$out/sweep.txt" | tail -n 12 \
    | tee -a "$out/summary.txt"
# The cells must have run on the device: find the engine details in the first manifest.
python3 - "$out" <<'PY' | tee -a "$out/summary.txt"
import glob, json, sys
def find(v):
    if isinstance(v, dict):
        if "gpu_arch" in v:
            return v
        v = list(v.values())
    if isinstance(v, list):
        for x in v:
            r = find(x)
            if r:
                return r
    return None
paths = sorted(glob.glob(sys.argv[1] + "/sweep/*/manifest.json"))
d = find(json.load(open(paths[0]))) if paths else None
if not d or d.get("device") != "cuda":
    sys.exit("error: the sweep did not run on the CUDA backend")
print("sweep engine: device", d["device"], "|", d["gpu"], d["gpu_arch"], "| weights", round(d["weight_bytes"] / 2**30, 2), "GiB")
PY

step "done in $(( $(date +%s) - t0 )) s; outputs in $out/"
