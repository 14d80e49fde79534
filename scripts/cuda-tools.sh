#!/usr/bin/env bash
# Installs (if missing) libnvrtc and ptxas from the PyPI wheels nvidia-cuda-nvrtc-cu12 and
# nvidia-cuda-nvcc-cu12 into a venv, then prints shell exports for them. No GPU or CUDA toolkit
# needed: the kernel compile check (`ferrum-bench kernels`, tests/cli/kernels.rs) uses them.
#
#   eval "$(bash scripts/cuda-tools.sh)"
#
# The venv lives in $FERRUMBENCH_CUDA_TOOLS (default ~/.cache/ferrum-bench/cuda-tools).
set -euo pipefail
venv="${FERRUMBENCH_CUDA_TOOLS:-$HOME/.cache/ferrum-bench/cuda-tools}"
find_tools() {
    # An unmatched glob stays literal, and the -e tests below then fail.
    local libs=("$venv"/lib/python3*/site-packages/nvidia/cuda_nvrtc/lib/libnvrtc.so.12)
    local bins=("$venv"/lib/python3*/site-packages/nvidia/cuda_nvcc/bin/ptxas)
    nvrtc_dir="$(dirname "${libs[0]}")"
    ptxas="${bins[0]}"
    [[ -e "$ptxas" && -e "$nvrtc_dir/libnvrtc.so.12" ]]
}
if ! find_tools; then
    echo "installing nvidia-cuda-nvrtc-cu12 and nvidia-cuda-nvcc-cu12 into $venv" >&2
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        'nvidia-cuda-nvrtc-cu12>=12.4,<13' 'nvidia-cuda-nvcc-cu12>=12.4,<13' >&2
    find_tools || { echo "error: the wheels installed but libnvrtc.so.12 or ptxas is missing in $venv" >&2; exit 2; }
fi
echo "export FERRUMBENCH_CUDA_TOOLS='$venv'"
echo "export FERRUMBENCH_NVRTC_LIB_DIR='$nvrtc_dir'"
echo "export FERRUMBENCH_PTXAS='$ptxas'"
