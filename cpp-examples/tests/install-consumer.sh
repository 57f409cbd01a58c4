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
for f in include/farmem.h include/farmem.hpp include/farmem/core.h include/farmem/objects.h \
  include/farmem/dataframe.h; do
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
if ldd "$work/build/consumer_static" | grep -q libfarmem; then
  fail "consumer_static links libfarmem.so dynamically"
fi
ldd "$work/build/consumer_shared" | grep -q "$libdir/libfarmem.so" ||
  fail "consumer_shared does not load the installed libfarmem.so: $(ldd "$work/build/consumer_shared" | grep farmem)"

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
