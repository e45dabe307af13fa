#!/usr/bin/env bash
# Installs the `flamingo` tool with the README's command into a temporary
# root and checks that the installed binary runs. Run from anywhere; needs
# only the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
# Reuse the repository's build directory (cargo install would otherwise
# build everything again in a temporary one).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT

# The README's install command, into the temporary root: the `dist`
# profile (no debug information).
cargo install --locked --path . --example flamingo --profile dist --root "$root"

bin="$root/bin/flamingo"
version="$("$bin" --version)"
echo "$version"
want="flamingo $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
if [ "$version" != "$want" ]; then
    echo "install-check: expected '$want', got '$version'" >&2
    exit 1
fi
# Without debug information the tool is a few megabytes (about 20 MB with).
size=$(wc -c <"$bin")
echo "installed size: $size bytes"
if [ "$size" -gt 8000000 ]; then
    echo "install-check: the installed tool is $size bytes; expected under 8 MB (debug info?)" >&2
    exit 1
fi
# The installed tool works without a microscope: it checks a workflow file
# against saved settings and has its simulator.
"$bin" workflow check fixtures/ZStack.txt --settings fixtures/ScopeSettings.txt
"$bin" sim --help >/dev/null
"$bin" record --help >/dev/null
echo "install-check: ok"
