#!/usr/bin/env bash
# element-rules.sh CXX INCLUDE_DIR SOURCE
#
# farmem.hpp must compile warning-free with -Wall -Wextra -Wpedantic -Werror (case 0) and
# reject, at compile time and with its own message, containers of types it cannot copy as
# bytes (cases 1..5 of element_rules.cpp); each per-subsystem header (farmem/core.hpp,
# objects.hpp, dataframe.hpp) must compile alone, warning-free. Prints "element-rules: PASS"
# when all held.
set -uo pipefail

cxx=$1
include=$2
src=$3
flags=(-std=c++17 -fsyntax-only -Wall -Wextra -Wpedantic -Werror -I"$include")
failed=0

if "$cxx" "${flags[@]}" -DFARMEM_CASE=0 "$src"; then
  echo "case 0 (valid element types) compiles: ok"
else
  echo "case 0 (valid element types) does not compile: WRONG"
  failed=1
fi

for header in farmem/core.hpp farmem/objects.hpp farmem/dataframe.hpp; do
  if echo "#include <$header>" | "$cxx" "${flags[@]}" -x c++ -; then
    echo "$header compiles alone: ok"
  else
    echo "$header does not compile alone: WRONG"
    failed=1
  fi
done

expect_reject() {
  local case=$1 message=$2 out
  out=$("$cxx" "${flags[@]}" -DFARMEM_CASE="$case" "$src" 2>&1)
  if [[ $? -ne 0 && "$out" == *"$message"* ]]; then
    echo "case $case rejected with \"$message\": ok"
  else
    echo "case $case not rejected with \"$message\": WRONG"
    echo "$out" | head -20
    failed=1
  fi
}
expect_reject 1 "T must be trivially copyable"
expect_reject 2 "alignof(T) <= 8"
expect_reject 3 "1..=4096 bytes"
expect_reject 4 "K must have no padding"
expect_reject 5 "K must have no padding"

if [[ $failed -eq 0 ]]; then echo "element-rules: PASS"; else echo "element-rules: FAILED"; fi
exit $failed
