#!/usr/bin/env bash
# taxi-compare.sh TAXI_BIN WORKDIR ROWS [DEMO_CMD...]
#
# Generates a seeded taxi CSV of ROWS rows, runs the C++ nine steps on it (most of the frame in
# far memory) and compares their result lines with
#   1. the library printing the same steps itself (`taxi --reference`, fm_taxi_run_all), and
#   2. when DEMO_CMD is given, `DEMO_CMD --csv CSV --all-local` (farmem-demo, all-local run).
# Compared: every line from the first "== step" header on (step 7's preview table of the first
# rows included), with the step times cut off, minus our own "taxi:" lines and blank lines.
# Prints "taxi-compare: PASS" only when everything matched.
set -euo pipefail

taxi=$1
work=$2
rows=$3
shift 3

mkdir -p "$work"
csv="$work/taxi-$rows.csv"
if [[ ! -s "$csv" ]]; then
  # Generate under a private name and rename, so an interrupted run never leaves half a file.
  "$taxi" --generate "$rows" "$csv.tmp.$$"
  mv "$csv.tmp.$$" "$csv"
fi

canon() {
  sed -n '/^== /,$p' "$1" |
    sed -E 's/^(== .*) \([0-9.]+ ms\)$/\1/' |
    grep -Ev '^(taxi:|$)' ||
    true
}

fail() {
  echo "taxi-compare: FAILED: $*"
  exit 1
}

"$taxi" "$csv" >"$work/cpp.out" || { cat "$work/cpp.out"; fail "taxi exited with $?"; }
canon "$work/cpp.out" >"$work/cpp.txt"
cat "$work/cpp.out"

# The C++ side must have printed all nine steps, over all rows, with most data remote.
steps=$(grep -c '^== ' "$work/cpp.txt" || true)
[[ "$steps" == 9 ]] || fail "expected 9 step headers, got $steps"
grep -qx "VendorID values: $rows" "$work/cpp.txt" || fail "step 1 did not count $rows rows"
grep -qx 'taxi: remote: yes' "$work/cpp.out" || fail "the frame was not mostly remote"
preview=$(grep -cE '^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}  ' "$work/cpp.txt" || true)
want_preview=$((rows < 10 ? rows : 10))
[[ "$preview" == "$want_preview" ]] ||
  fail "expected step 7's preview of $want_preview rows, got $preview"

"$taxi" --reference "$csv" >"$work/ref.out" || { cat "$work/ref.out"; fail "taxi --reference failed"; }
canon "$work/ref.out" >"$work/ref.txt"
if ! diff -u "$work/ref.txt" "$work/cpp.txt"; then
  fail "C++ results differ from the library's fm_taxi_run_all (diff above: - library, + C++)"
fi
echo "taxi-compare: C++ results == fm_taxi_run_all results ($(wc -l <"$work/cpp.txt") lines)"

if [[ $# -gt 0 ]]; then
  "$@" --csv "$csv" --all-local >"$work/demo.out" 2>"$work/demo.err" ||
    { cat "$work/demo.out" "$work/demo.err"; fail "farmem-demo failed"; }
  canon "$work/demo.out" >"$work/demo.txt"
  if ! diff -u "$work/demo.txt" "$work/cpp.txt"; then
    fail "C++ results differ from farmem-demo --all-local (diff above: - demo, + C++)"
  fi
  echo "taxi-compare: C++ results == farmem-demo --all-local results"
else
  echo "taxi-compare: no farmem-demo command (FARMEM_FROM_SOURCE=OFF); compared with the library only"
fi
echo "taxi-compare: PASS"
