#!/usr/bin/env bash
# Builds the Python package in a fresh virtual environment and runs its tests.
# Works from a clean clone, with CI=true and no stdin. Called by .ci/run.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TERM_COLOR=never
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
PY="${PYTHON:-python3}"

VENV="$(mktemp -d "${TMPDIR:-/tmp}/flamingo-py-ci.XXXXXX")"
trap 'rm -rf "$VENV"' EXIT

echo "--- venv ($("$PY" --version)) in $VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet maturin pytest numpy

echo "--- maturin build --release (abi3 wheel)"
rm -rf target/wheels
"$VENV/bin/maturin" build --release --interpreter "$VENV/bin/python" </dev/null
WHEEL="$(ls target/wheels/flamingo_client-*-abi3-*.whl | head -n1)"
echo "wheel: $WHEEL"
"$VENV/bin/python" -m pip install --quiet --force-reinstall --no-deps "$WHEEL"

echo "--- pytest"
# Run from the tests folder against the installed wheel, not the source tree.
set +e
(cd tests && timeout 600 "$VENV/bin/python" -m pytest -q -p no:cacheprovider --rootdir=. . </dev/null)
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests" >&2
    exit 1
fi
exit "$rc"
