#!/usr/bin/env python3
"""Client benchmark: ferrum-bench's HTTP client against `ferrum-bench mock-server`.

For each case a mock server is started with a known TTFT/ITL, `ferrum-bench run` measures it
through `[engine] kind = "endpoint"` (completions, token-id prompts: no tokenizer cost), and the
script reports streamed tokens/s, TTFT and ITL error at p50/p99 (measured minus configured) and
harness CPU per 1,000 streamed tokens (user+sys of the ferrum-bench process, from rusage; this
includes start-up and result writing, so it is an upper bound), the mock server's CPU per
1,000 tokens (where the rest of the machine's time goes), and the 1-minute load average before
and after each case (the machine may be shared). Run from the repository root:

    cargo build --release && python3 scripts/bench_client.py [--binary target/release/ferrum-bench] [--mock-threads 2]

With `--baseline OLD_BINARY` every case runs in ABBA order (baseline, candidate, candidate,
baseline) and the table gains a `binary` column, so a client change is judged side by side under
the same machine load (the mock server is always the candidate's).

It is a benchmark, not a test: it prints a table and asserts nothing.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile

CASES = [
    # (label, concurrency, ttft_ms, itl_ms, requests, output_tokens)
    ("c=1   TTFT 50 / ITL 10", 1, 50, 10, 16, 64),
    ("c=32  TTFT 50 / ITL 10", 32, 50, 10, 128, 64),
    ("c=256 TTFT 50 / ITL 10", 256, 50, 10, 1024, 64),
    ("c=256 TTFT 50 / ITL 1 (ceiling)", 256, 50, 1, 1024, 256),
]


def load1():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def start_mock(binary, ttft, itl, threads):
    p = subprocess.Popen(
        [binary, "mock-server", "--port", "0", "--ttft-ms", str(ttft), "--itl-ms", str(itl),
         "--threads", str(threads)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = p.stdout.readline()
    return p, int(line.strip().rsplit(":", 1)[1])


def run_case(binary, label, c, ttft, itl, requests, out_tokens, repeats, mock_threads, mock_binary=None):
    load_before = load1()
    mock, port = start_mock(mock_binary or binary, ttft, itl, mock_threads)
    try:
        with tempfile.TemporaryDirectory() as d:
            preset = os.path.join(d, "p.toml")
            with open(preset, "w") as f:
                f.write(
                    f"""name = "client-bench"
[engine]
kind = "endpoint"
base_url = "http://127.0.0.1:{port}"
model = "mock"
api = "completions"
prompt = "token_ids"
vocab_size = 32000
[run]
workload = "random-64/{out_tokens}"
requests = {requests}
warmup_requests = {min(c, 32)}
repeats = {repeats}
seed = 1
concurrency = {c}
"""
                )
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            r = subprocess.run(
                [binary, "run", preset, "--quiet", "--out", os.path.join(d, "r")],
                capture_output=True,
                text=True,
            )
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if r.returncode != 0:
                print(f"{label}: run failed: {r.stderr.strip()}", file=sys.stderr)
                return None
            run = os.path.join(d, "r", os.listdir(os.path.join(d, "r"))[0])
            cell = os.listdir(os.path.join(run, "cells"))[0]
            stats = json.load(open(os.path.join(run, "cells", cell, "stats.json")))
    finally:
        mock.kill()
        mock.wait()
    mock_rusage = resource.getrusage(resource.RUSAGE_CHILDREN)
    mock_cpu = (mock_rusage.ru_utime - after.ru_utime) + (mock_rusage.ru_stime - after.ru_stime)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    reps = stats["repeats"]
    tokens = sum(x["output_tokens"] for x in reps)
    row = {
        "label": label,
        "tok_s": [x["output_tokens_per_s"] for x in reps],
        "ttft_p50_err": [x["ttft_ms"]["median"] - ttft for x in reps],
        "ttft_p99_err": [x["ttft_ms"]["p99"] - ttft for x in reps],
        "itl_p50_err": [x["itl_ms"]["median"] - itl for x in reps],
        "itl_p99_err": [x["itl_ms"]["p99"] - itl for x in reps],
        "failed": sum(x["failed"] for x in reps),
        "cpu_ms_per_1k": 1000.0 * cpu / max(tokens, 1) * 1000.0,
        "mock_cpu_ms_per_1k": 1000.0 * mock_cpu / max(tokens, 1) * 1000.0,
        "load": f"{load_before:.1f} → {load1():.1f}",
    }
    return row


def fmt(xs, digits=2):
    if len(xs) == 1:
        return f"{xs[0]:.{digits}f}"
    return f"{min(xs):.{digits}f}–{max(xs):.{digits}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/ferrum-bench")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--mock-threads", type=int, default=2)
    ap.add_argument("--baseline", help="a second binary measured beside --binary, ABBA order")
    a = ap.parse_args()
    if a.baseline:
        print("| case | binary | streamed tok/s | TTFT p50 err ms | TTFT p99 err ms | ITL p50 err ms | ITL p99 err ms | failed | harness CPU ms / 1k tok | mock CPU ms / 1k tok | load avg (1 min) |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for case in CASES:
            for name, binary in [("baseline", a.baseline), ("candidate", a.binary),
                                 ("candidate", a.binary), ("baseline", a.baseline)]:
                row = run_case(binary, *case, a.repeats, a.mock_threads, mock_binary=a.binary)
                if row is None:
                    continue
                print(
                    f"| {row['label']} | {name} | {fmt(row['tok_s'], 0)} | {fmt(row['ttft_p50_err'])} | {fmt(row['ttft_p99_err'])} "
                    f"| {fmt(row['itl_p50_err'])} | {fmt(row['itl_p99_err'])} | {row['failed']} | {row['cpu_ms_per_1k']:.1f} "
                    f"| {row['mock_cpu_ms_per_1k']:.1f} | {row['load']} |",
                    flush=True,
                )
        return
    print("| case | streamed tok/s | TTFT p50 err ms | TTFT p99 err ms | ITL p50 err ms | ITL p99 err ms | failed | harness CPU ms / 1k tok | mock CPU ms / 1k tok | load avg (1 min) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for case in CASES:
        row = run_case(a.binary, *case, a.repeats, a.mock_threads)
        if row is None:
            continue
        print(
            f"| {row['label']} | {fmt(row['tok_s'], 0)} | {fmt(row['ttft_p50_err'])} | {fmt(row['ttft_p99_err'])} "
            f"| {fmt(row['itl_p50_err'])} | {fmt(row['itl_p99_err'])} | {row['failed']} | {row['cpu_ms_per_1k']:.1f} "
            f"| {row['mock_cpu_ms_per_1k']:.1f} | {row['load']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
