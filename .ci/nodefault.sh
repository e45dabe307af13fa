#!/usr/bin/env bash
# The library without default features (no simulator), as applications build
# it. `cargo build` and `cargo clippy --lib` use no dev-dependencies, so they
# compile the library exactly as a dependent crate does, with `sim` off. The
# unit tests are a test build: the crate's dev-dependency on itself turns
# `sim` back on there, so this step checks that they compile and pass when
# the default features are off.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

cargo build --no-default-features
cargo clippy --no-default-features --lib -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --no-default-features
timeout 900 cargo test --release --no-default-features --lib
