#!/usr/bin/env bash
# remote-server.sh HELLO_BIN WORK_DIR SERVER_BIN BUILD_CMD...
#
# Builds farmem-server (BUILD_CMD), starts it on 127.0.0.1 with a port the kernel picks and a
# token file, then runs `hello --server ADDR --token T` against it (Config::server/token through
# the C ABI), and once more with a wrong token, which must fail with FM_AUTH. The server is
# stopped on exit. Prints "remote-server: PASS" only when both held.
set -euo pipefail

hello=$1
work=$2
server=$3
shift 3

fail() {
  echo "remote-server: FAILED: $*"
  exit 1
}

"$@"
mkdir -p "$work"
token="farmem-cpp-test-$$-$RANDOM"
printf '%s\n' "$token" >"$work/token"
"$server" --listen 127.0.0.1:0 --capacity 256MiB --token-file "$work/token" >"$work/server.out" \
  2>"$work/server.err" &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true' EXIT

addr=""
for _ in $(seq 1 300); do
  addr=$(sed -n 's/^farmem-server listening on //p' "$work/server.out")
  [[ -n "$addr" ]] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.err"; fail "farmem-server exited"; }
  sleep 0.1
done
[[ -n "$addr" ]] || fail "farmem-server did not report its address within 30 s"
echo "remote-server: farmem-server at $addr"

"$hello" --server "$addr" --token "$token" | tee "$work/hello.out"
grep -qx 'remote: yes' "$work/hello.out" || fail "hello against the server did not go remote"
grep -qx 'hello: PASS' "$work/hello.out" || fail "hello against the server"

set +e
"$hello" --server "$addr" --token "not-$token" >"$work/wrong.out" 2>&1
status=$?
set -e
# Only the error line: the rest ends in hello's own verdict for that (expected) failure.
[[ $status -ne 0 ]] || fail "a wrong token was accepted"
grep 'farmem error FM_AUTH' "$work/wrong.out" || fail "a wrong token did not give FM_AUTH"
kill -0 "$server_pid" 2>/dev/null || fail "the server died after a client with a wrong token"
echo "remote-server: PASS"
