#!/usr/bin/env bash
# Twin check: run the same knob grid on the real Ferrum engine (`ferrum serve`, one server per
# cell, a `kind = "server"` preset) and on ferrum-bench's reference engine with the same model
# shape (`[engine] shape_from` = the same model directory), in one invocation, then print both
# tables side by side, the rank correlation of the cells (Spearman's rho with an exact
# permutation p-value, Kendall's tau-b) and the ratio of throughputs (reference / real).
#
# It answers "does the reference engine order these knob settings as Ferrum does, and how far
# apart are their numbers?" on the machine it runs on. The reference engine's numbers are never
# Ferrum's: this script measures how far they are.
#
# Usage:
#   scripts/twin-check.sh [--ferrum BIN] [--model DIR] [options]
#
# Options:
#   --ferrum BIN         the ferrum executable (default: $FERRUM_BIN). Without one the script
#                        prints why it skipped and exits 0.
#   --model DIR          a Qwen3-MoE model directory ferrum can serve (config.json, tokenizer.json,
#                        weights; default: $FERRUM_TINY_MODEL), e.g. one made by
#                        make_tiny_model.py --arch qwen3_moe
#   --bench BIN          the ferrum-bench executable (default: target/release/ferrum-bench)
#   --out DIR            output directory (default: twin-check-out)
#   --concurrency N      closed-loop concurrency (default 16)
#   --requests N         requests per repeat (default 32)
#   --repeats N          repeats per cell (default 2)
#   --workload W         workload (default random-128/32)
#   --thresholds LIST    FERRUM_MOE_BATCH_THRESHOLD values, comma-separated (default 1,4,16,64)
#   --max-seqs LIST      FERRUM_PAGED_MAX_SEQS values, comma-separated (default 8,16)
#   --seed S             workload seed shared by both engines (default 9271)
#   -h, --help           this text
#
# Writes DIR/real.toml, DIR/reference.toml, DIR/real/<run>/, DIR/reference/<run>/ and
# DIR/twin.md (the printed comparison). Exit codes: 0 done or skipped, 2 bad arguments, 3 a
# sweep failed (its exit code and output are shown).
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

repo_root=$(cd "$(dirname "$0")/.." && pwd)
ferrum=${FERRUM_BIN:-}
model=${FERRUM_TINY_MODEL:-}
bench="$repo_root/target/release/ferrum-bench"
out="twin-check-out"
concurrency=16
requests=32
repeats=2
workload="random-128/32"
thresholds="1,4,16,64"
max_seqs="8,16"
seed=9271

while [[ $# -gt 0 ]]; do
  case "$1" in
    --ferrum) ferrum=${2:?--ferrum needs a value}; shift 2 ;;
    --model) model=${2:?--model needs a value}; shift 2 ;;
    --bench) bench=${2:?--bench needs a value}; shift 2 ;;
    --out) out=${2:?--out needs a value}; shift 2 ;;
    --concurrency) concurrency=${2:?--concurrency needs a value}; shift 2 ;;
    --requests) requests=${2:?--requests needs a value}; shift 2 ;;
    --repeats) repeats=${2:?--repeats needs a value}; shift 2 ;;
    --workload) workload=${2:?--workload needs a value}; shift 2 ;;
    --thresholds) thresholds=${2:?--thresholds needs a value}; shift 2 ;;
    --max-seqs) max_seqs=${2:?--max-seqs needs a value}; shift 2 ;;
    --seed) seed=${2:?--seed needs a value}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

if [[ -z "$ferrum" ]]; then
  echo "twin-check: skipped: no ferrum binary given (pass --ferrum BIN or set FERRUM_BIN to a ferrum-cli 0.7.7 executable, and --model DIR)"
  exit 0
fi
if [[ ! -x "$ferrum" ]]; then
  echo "error: --ferrum '$ferrum' is not an executable file" >&2
  exit 2
fi
if [[ -z "$model" || ! -f "$model/config.json" ]]; then
  echo "error: --model '${model}' must be a model directory with a config.json (or set FERRUM_TINY_MODEL)" >&2
  exit 2
fi
if [[ ! -x "$bench" ]]; then
  echo "error: ferrum-bench executable '$bench' not found: run 'cargo build --release' or pass --bench" >&2
  exit 2
fi
for n in concurrency requests repeats seed; do
  if ! [[ "${!n}" =~ ^[0-9]+$ ]] || (( ${!n} < 1 )); then
    echo "error: --$n '${!n}' must be a positive integer" >&2
    exit 2
  fi
done
for list in "$thresholds" "$max_seqs"; do
  if ! [[ "$list" =~ ^[0-9]+(,[0-9]+)*$ ]]; then
    echo "error: knob list '$list' must be comma-separated integers, e.g. 1,4,16" >&2
    exit 2
  fi
done
if ! command -v python3 >/dev/null; then
  echo "error: python3 is needed to read config.json and compute the rank correlation" >&2
  exit 2
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)
model=$(cd "$model" && pwd)
ferrum=$(cd "$(dirname "$ferrum")" && pwd)/$(basename "$ferrum")

# The [model] table both presets share: the model as ferrum sees it (its config.json), so the
# harness's resolver decides for the same model the server's resolver does.
model_table=$(python3 - "$model/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
if c.get("model_type") != "qwen3_moe":
    sys.exit(f"error: {sys.argv[1]}: model_type {c.get('model_type')!r}: twin-check runs qwen3_moe models (ferrum 0.7.7's CPU MoE path)")
q = (c.get("quantization_config") or {})
quant = "gptq_int4" if q.get("quant_method") == "gptq" and q.get("bits") == 4 else "fp16"
head_dim = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
print(f'''[model]
profile = "unknown"
architecture = "qwen3_moe"
quantization = "{quant}"
max_context_len = {c["max_position_embeddings"]}
num_hidden_layers = {c["num_hidden_layers"]}
head_dim = {head_dim}
kv_heads = {c.get("num_key_value_heads", c["num_attention_heads"])}
supported_dtypes = ["fp16", "fp32"]
graph_safe_moe = false
[model.moe]
num_experts = {c["num_experts"]}
experts_per_token = {c["num_experts_per_tok"]}
moe_intermediate_size = {c["moe_intermediate_size"]}''')
PY
)

common_tail="[hardware]
profile = \"cpu\"

[env]
# ferrum serve 0.7.7 sets these itself on CPU; stating them keeps both engines' inputs equal.
FERRUM_MOE_GRAPH = 0
FERRUM_MAX_BATCHED_TOKENS = 2048

[run]
workload = \"$workload\"
requests = $requests
warmup_requests = 2
repeats = $repeats
seed = $seed
concurrency = $concurrency

[sweep]
concurrency = [$concurrency]

[sweep.knobs]
FERRUM_MOE_BATCH_THRESHOLD = [${thresholds//,/, }]
FERRUM_PAGED_MAX_SEQS = [${max_seqs//,/, }]
"

cat > "$out/real.toml" <<EOF
name = "twin-real"
description = "real ferrum serve (CPU), one server per cell: $(basename "$model")"
$model_table

[engine]
kind = "server"
command = ["$ferrum", "serve", "--model", "{model}", "--backend", "cpu", "--host", "127.0.0.1",
           "--port", "{port}", "--effective-config-json", "{effective_config}",
           "--decision-trace-jsonl", "{decision_trace}"]
model = "$model"
api = "chat"
prompt = "text"
health = "ferrum"
ready_timeout = 300
request_timeout = 600
stop_grace = 10

$common_tail
EOF

cat > "$out/reference.toml" <<EOF
name = "twin-reference"
description = "ferrum-bench reference engine with the shape of $(basename "$model") (not Ferrum)"
$model_table

[engine]
kind = "reference"
shape_from = "$model"

$common_tail
EOF

run_sweep() {
  local side=$1
  local rc=0
  rm -rf "${out:?}/$side"
  echo "twin-check: sweeping the $side engine ($out/$side.toml)" >&2
  # Knobs reach the cells only from the presets: the caller's FERRUM_* variables stay out.
  env -u FERRUM_BIN -u FERRUM_TINY_MODEL "$bench" sweep "$out/$side.toml" --out "$out/$side" \
    --quiet --no-report >"$out/$side.log" 2>&1 || rc=$?
  if (( rc != 0 )); then
    echo "error: the $side sweep exited $rc; its output ($out/$side.log):" >&2
    cat "$out/$side.log" >&2
    exit 3
  fi
  local csv
  csv=$(find "$out/$side" -mindepth 2 -maxdepth 2 -name summary.csv | head -n 1)
  if [[ -z "$csv" ]]; then
    echo "error: the $side sweep wrote no summary.csv under $out/$side" >&2
    exit 3
  fi
  printf '%s\n' "$csv"
}

real_csv=$(run_sweep real)
reference_csv=$(run_sweep reference)

python3 - "$real_csv" "$reference_csv" "$(basename "$model")" "$("$ferrum" --version 2>/dev/null | head -n 1 || true)" \
  "$workload" "$concurrency" "$requests" "$repeats" >"$out/twin.md" <<'PY'
import csv, itertools, json, math, os, sys

real_csv, ref_csv, model, ferrum_version, workload, conc, requests, repeats = sys.argv[1:9]
KNOBS = ("FERRUM_MOE_BATCH_THRESHOLD", "FERRUM_PAGED_MAX_SEQS")

def load(path):
    rows = {}
    for r in csv.DictReader(open(path, newline="")):
        key = tuple(int(r[k]) for k in KNOBS)
        if r["status"] != "completed" or not r["output_tok_s_mean"]:
            sys.exit(f"error: {path}: cell {r['cell']} is {r['status']} ({r['reason']}): no throughput to compare")
        stats = os.path.join(os.path.dirname(path), "cells", r["cell"], "stats.json")
        agg = json.load(open(stats))["aggregate"]["output_tokens_per_s"]
        rows[key] = (float(r["output_tok_s_mean"]), r["output_tok_s_ci95"], int(r["repeats"]), agg["min"], agg["max"])
    return rows

real, ref = load(real_csv), load(ref_csv)
if set(real) != set(ref):
    sys.exit(f"error: the two runs hold different cells: {sorted(set(real) ^ set(ref))}")
keys = sorted(real)
n = len(keys)

def ranks(values):
    """1 = highest; ties share their average rank."""
    order = sorted(range(len(values)), key=lambda i: -values[i])
    r = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return r

def pearson(x, y):
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else float("nan")

def kendall_tau_b(x, y):
    conc = disc = tx = ty = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        dx, dy = x[i] - x[j], y[i] - y[j]
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            tx += 1
        elif dy == 0:
            ty += 1
        elif (dx > 0) == (dy > 0):
            conc += 1
        else:
            disc += 1
    d = math.sqrt((conc + disc + tx) * (conc + disc + ty))
    return (conc - disc) / d if d > 0 else float("nan")

x = [real[k][0] for k in keys]
y = [ref[k][0] for k in keys]
rx, ry = ranks(x), ranks(y)
rho = pearson(rx, ry)
tau = kendall_tau_b(x, y)
# Exact two-sided permutation p-value of rho (8 cells: 40,320 orderings).
if n <= 9:
    perms = list(itertools.permutations(ry))
    extreme = sum(1 for p in perms if abs(pearson(rx, list(p))) >= abs(rho) - 1e-12)
    p_text = f"{extreme / len(perms):.2f} (exact permutation test, two-sided)"
else:
    p_text = "not computed (more than 9 cells)"
ratios = [b / a for a, b in zip(x, y)]
geo = math.exp(sum(math.log(r) for r in ratios) / n)

def cell(v):
    """mean ± 95 % CI half-width, or mean [min–max of the repeats] below 3 repeats (no CI)."""
    mean, ci, reps, lo, hi = v
    return f"{mean:.1f} ± {float(ci):.1f}" if ci else f"{mean:.1f} [{lo:.1f}–{hi:.1f}]"

print(f"Twin check: {model}, {workload} at c={conc}, {requests} requests × {repeats} repeats per cell")
print("(output tok/s: mean ± 95 % CI, or mean [min–max of the repeats] with fewer than 3 repeats)")
print(f"real engine: {ferrum_version or 'ferrum'} (`serve`, one server per cell) · reference engine: ferrum-bench's in-process model of Ferrum's serving mechanics, same shape (not Ferrum)")
print()
print("| FERRUM_MOE_BATCH_THRESHOLD | FERRUM_PAGED_MAX_SEQS | real ferrum output tok/s | rank | reference engine output tok/s | rank | reference / real |")
print("|---:|---:|---:|---:|---:|---:|---:|")
for k, a, b, ra, rb, q in zip(keys, [real[k] for k in keys], [ref[k] for k in keys], rx, ry, ratios):
    fmt = lambda r: f"{r:g}"
    print(f"| {k[0]} | {k[1]} | {cell(a)} | {fmt(ra)} | {cell(b)} | {fmt(rb)} | {q:.1f}× |")
print()
print(f"- output tok/s range: real {min(x):.1f}–{max(x):.1f} (max/min {max(x) / min(x):.2f}), reference {min(y):.1f}–{max(y):.1f} (max/min {max(y) / min(y):.2f})")
print(f"- rank correlation over {n} cells: Spearman rho = {rho:+.2f}, p = {p_text}; Kendall tau-b = {tau:+.2f}")
print(f"- throughput ratio reference / real: geometric mean {geo:.1f}×, per cell {min(ratios):.1f}–{max(ratios):.1f}×")
PY

cat "$out/twin.md"
