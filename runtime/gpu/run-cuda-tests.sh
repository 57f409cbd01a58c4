#!/usr/bin/env bash
# Runs the CUDA tests and the CUDA pipeswitch benchmark on a machine with an NVIDIA GPU.
#
#   runtime/gpu/run-cuda-tests.sh            build with cargo (feature `cuda`) and run
#   FARMEM_CUDA_BIN_DIR=dir runtime/gpu/run-cuda-tests.sh
#                                            run binaries prebuilt elsewhere (a GPU machine
#                                            without a Rust toolchain): dir holds the test
#                                            executables gpu_cuda, gpu_device, gpu_switch, gpu_share_cuda, gpu_kv_device and
#                                            farmem-bench, built with `--features cuda`
#
# The CUDA tests are #[ignore]d in normal runs (CI has no GPU); here they run with --ignored.
# Without a GPU every CUDA test prints "SKIPPED: no CUDA device" and passes, and the benchmark
# notes "cuda: skipped".
set -euo pipefail
cd "$(dirname "$0")/../.."
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || echo "nvidia-smi: not available"

if [[ -n "${FARMEM_CUDA_BIN_DIR:-}" ]]; then
    bin="$FARMEM_CUDA_BIN_DIR"
    for t in gpu_device gpu_switch; do
        echo "== $t (simulated device and switch tests)"
        "$bin/$t" --test-threads=4
    done
    echo "== gpu_cuda (CUDA tests)"
    "$bin/gpu_cuda" --ignored --nocapture --test-threads=1
    if [[ -x "$bin/gpu_share_cuda" ]]; then
        echo "== gpu_share_cuda (oversubscription on CUDA)"
        "$bin/gpu_share_cuda" --ignored --nocapture --test-threads=1
    fi
    [[ -x "$bin/gpu_kv_device" ]] && { echo "== gpu_kv_device (KV store on CUDA)"; "$bin/gpu_kv_device" --ignored --nocapture --test-threads=1; "$bin/farmem-bench" kvswap; }
    echo "== farmem-bench pipeswitch (sim + CUDA)"
    "$bin/farmem-bench" pipeswitch "$@"
else
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/cuda}"
    echo "== cargo test -p farmem-gpu --features cuda (all tests, CUDA ones included)"
    cargo test --release -p farmem-gpu --features cuda -- --include-ignored --nocapture --test-threads=1
    cargo run --release -p farmem-benches --features cuda --bin farmem-bench -- kvswap
    echo "== farmem-bench pipeswitch (sim + CUDA)"
    cargo run --release -p farmem-benches --features cuda --bin farmem-bench -- pipeswitch "$@"
fi
