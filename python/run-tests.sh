#!/usr/bin/env bash
# Builds and installs the farmem Python package, then runs its pytest suite (python/tests) and
# checks the hand-written stubs with mypy.stubtest. Safe to re-run.
#
# Environment:
#   PYTHON             interpreter to use (default python3)
#   CARGO_TARGET_DIR   cargo's target dir (default: the workspace's target/)
#   FARMEM_PY_VENV     virtualenv to create and use (default python/.venv; "none" uses PYTHON as is)
#   FARMEM_PY_PROFILE  cargo profile of the extension: dev (default: quick to build, reuses the
#                      workspace's debug build, the tests take about 40 s) or release
#   FARMEM_STRESS=1    larger randomized tests
#   extra arguments    passed to pytest (e.g. -k containers)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
mkdir -p "$CARGO_TARGET_DIR"
CARGO_TARGET_DIR="$(cd "$CARGO_TARGET_DIR" && pwd)"  # absolute: the tests run in another directory
py="${PYTHON:-python3}"
venv="${FARMEM_PY_VENV:-$here/.venv}"
profile="${FARMEM_PY_PROFILE:-dev}"

if [[ "$venv" != "none" ]]; then
    # System site-packages: numpy, pandas, ... already installed there are reused, not downloaded.
    if [[ ! -x "$venv/bin/python" ]] && ! "$py" -m venv --system-site-packages "$venv"; then
        echo "warning: cannot create a virtualenv at $venv (no venv module?); using $py itself" >&2
        rm -rf "$venv"
    fi
    if [[ -x "$venv/bin/python" ]]; then
        py="$venv/bin/python"
    fi
fi

# The build backend runs the `maturin` executable from PATH: put the interpreter's scripts
# directory (where pip installs it) first, or a machine without a system-wide maturin fails.
PATH="$("$py" -c 'import os, sys; print(os.path.dirname(sys.executable))'):$PATH"
export PATH

echo "== python: $("$py" --version) ($py)"
"$py" -m pip install --quiet --disable-pip-version-check \
    "maturin>=1.5,<2" pytest pytest-timeout numpy pandas mypy hypothesis

echo "== building and installing farmem ($profile, target dir $CARGO_TARGET_DIR)"
# No build isolation: maturin is installed above, and an isolated build would download it again.
MATURIN_PEP517_ARGS="--profile $profile" "$py" -m pip install --quiet --disable-pip-version-check \
    --no-build-isolation --force-reinstall --no-deps "$here"

# Run from a scratch directory under the target dir: `import farmem` is then the installed
# package (not python/farmem/, which has no compiled module), and the caches hypothesis and mypy
# write into the working directory stay out of the source tree.
scratch="$CARGO_TARGET_DIR/python-tests"
mkdir -p "$scratch"
cd "$scratch"
echo "== pytest"
"$py" -m pytest -p no:cacheprovider --timeout=300 -q "$here/tests" "$@"

echo "== mypy.stubtest"
"$py" -m mypy.stubtest farmem._farmem
echo "== python: all passed"
