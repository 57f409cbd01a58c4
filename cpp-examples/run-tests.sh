#!/usr/bin/env bash
# run-tests.sh: builds libfarmem through cargo, the C++ examples and tests with CMake, and runs
# ctest twice: a normal build, then an AddressSanitizer build (FARMEM_ASAN=ON).
#
#   bash cpp-examples/run-tests.sh            # from anywhere; safe to re-run (incremental)
#
# Environment:
#   CARGO_TARGET_DIR      cargo target dir (default: <repo>/target, shared with the workspace)
#   FARMEM_CPP_BUILD_DIR  CMake build dirs go under it (default: $CARGO_TARGET_DIR/cpp-examples)
#   FARMEM_CARGO_PROFILE  cargo profile of libfarmem (default: release)
#   FARMEM_CPP_SKIP_ASAN  set to 1 to skip the ASan pass
#   FARMEM_CPP_TEST_JOBS  tests ctest runs at once (default 2). Every example squeezes far memory
#                         through a small local budget; before the session waited up to 2 s for
#                         the evacuator (SessionConfig::alloc_wait, fm_config_t.alloc_wait_ms) a
#                         starved evacuator on 2 busy cores could make a write give up, so tests
#                         ran one at a time. With the wait, -j2 passed 3 of 3 normal and ASan runs
#                         at a load average near 8 on 2 cores; set 1 to go back to serial.
# Installs cmake, g++ and pkg-config with apt-get when one is missing (needs root or sudo).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
# cargo resolves a relative target dir against the directory it runs in; pin it to the repo root.
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
[[ "$target_dir" = /* ]] || target_dir="$repo/$target_dir"
export CARGO_TARGET_DIR="$target_dir"
build_root="${FARMEM_CPP_BUILD_DIR:-$CARGO_TARGET_DIR/cpp-examples}"
profile="${FARMEM_CARGO_PROFILE:-release}"
jobs=$(nproc 2>/dev/null || echo 2)

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v g++ >/dev/null || missing+=(g++)
command -v cc >/dev/null || missing+=(gcc)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v make >/dev/null || missing+=(make)
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "run-tests.sh: installing ${missing[*]} with apt-get"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}"
fi

run_pass() {
  local name=$1
  shift
  local dir="$build_root/$name"
  echo "=== cpp-examples: $name build in $dir"
  cmake -S "$here" -B "$dir" -DFARMEM_CARGO_PROFILE="$profile" \
    -DFARMEM_CARGO_TARGET_DIR="$CARGO_TARGET_DIR" "$@"
  cmake --build "$dir" -j "$jobs"
  (cd "$dir" && ctest --output-on-failure -j "${FARMEM_CPP_TEST_JOBS:-2}")
}

run_pass normal -DFARMEM_ASAN=OFF
if [[ "${FARMEM_CPP_SKIP_ASAN:-0}" != 1 ]]; then
  # Only the C/C++ code is instrumented (libfarmem is Rust; its allocations still go through
  # ASan's malloc). LeakSanitizer stays on (no ASAN_OPTIONS=detect_leaks=0): the examples tear
  # every handle and runtime down before exiting and the Rust side leaks nothing it reports.
  # An exception thrown on a green thread makes ASan print "ignoring requested
  # __asan_handle_no_return" once: green-thread stacks are switched in Rust (corosensei) without
  # sanitizer fiber annotations; it is a warning, not a report, and no false positive followed.
  run_pass asan -DFARMEM_ASAN=ON
fi
echo "=== cpp-examples: all tests passed"
