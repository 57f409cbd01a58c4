#!/usr/bin/env bash
# install-consumer.sh BUILD_DIR CONSUMER_SRC WORK_DIR CMAKE
#
# Installs the package from BUILD_DIR into WORK_DIR/prefix, checks the installed file list,
# then builds and runs consumer/ against it twice: with CMake (find_package(farmem), shared and
# static targets) and with a plain compiler line from pkg-config. Prints "install-consumer: PASS"
# only when all of it worked.
set -euo pipefail

build=$1
consumer=$2
work=$3
cmake=$4

fail() {
  echo "install-consumer: FAILED: $*"
  exit 1
}

rm -rf "$work"
mkdir -p "$work"
prefix="$work/prefix"
"$cmake" --install "$build" --prefix "$prefix"

libdir=$(ls -d "$prefix"/lib*/cmake/farmem/.. 2>/dev/null | head -n1)
libdir=$(cd "$libdir/.." && pwd)
# Every header of the source tree is installed, at the same relative path.
headers=$(cd "$consumer/../../include" && find . -type f \( -name '*.h' -o -name '*.hpp' \) | sort)
[[ -n "$headers" ]] || fail "no headers found under $consumer/../../include"
for f in $headers include/farmem/core.hpp include/farmem/objects.hpp include/farmem/dataframe.hpp; do
  f=${f#./}
  [[ "$f" == include/* ]] || f="include/$f"
  [[ -f "$prefix/$f" ]] || fail "missing $prefix/$f"
done
for f in libfarmem.a libfarmem.so cmake/farmem/farmemConfig.cmake \
  cmake/farmem/farmemConfigVersion.cmake pkgconfig/farmem.pc; do
  [[ -f "$libdir/$f" ]] || fail "missing $libdir/$f"
done
echo "install-consumer: installed files present under $prefix"

# CMake consumer: both link flavours.
"$cmake" -S "$consumer" -B "$work/build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release
"$cmake" --build "$work/build"
"$work/build/consumer_shared" | tee "$work/shared.out"
grep -q 'consumer: sum 50005000 OK' "$work/shared.out" || fail "consumer_shared"
"$work/build/consumer_static" | tee "$work/static.out"
grep -q 'consumer: sum 50005000 OK' "$work/static.out" || fail "consumer_static"
# ldd's output is captured first: `ldd | grep -q` under pipefail fails at random when grep
# exits on its match while ldd still writes (SIGPIPE).
static_deps=$(ldd "$work/build/consumer_static")
if [[ "$static_deps" == *libfarmem* ]]; then
  fail "consumer_static links libfarmem.so dynamically"
fi
shared_deps=$(ldd "$work/build/consumer_shared")
[[ "$shared_deps" == *"$libdir/libfarmem.so"* ]] ||
  fail "consumer_shared does not load the installed libfarmem.so: $(grep farmem <<<"$shared_deps")"

# pkg-config consumer: a C program from the compile line alone.
export PKG_CONFIG_PATH="$libdir/pkgconfig"
cflags=$(pkg-config --cflags farmem)
libs=$(pkg-config --libs farmem)
static_libs=$(pkg-config --static --libs farmem)
echo "install-consumer: pkg-config --cflags: $cflags; --libs: $libs; --static --libs: $static_libs"
[[ "$(pkg-config --modversion farmem)" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "farmem.pc version"
[[ "$static_libs" == *-lpthread* && "$static_libs" == *-ldl* ]] || fail "farmem.pc Libs.private"
# shellcheck disable=SC2086 # the flags are word lists
cc -std=c11 -Wall -Werror $cflags "$consumer/consumer.c" -o "$work/consumer_c" $libs \
  -Wl,-rpath,"$libdir"
"$work/consumer_c" | tee "$work/c.out"
grep -q 'consumer.c: sum 499500 OK' "$work/c.out" || fail "consumer.c via pkg-config"
echo "install-consumer: PASS"
