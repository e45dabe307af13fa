#!/usr/bin/env bash
# The viewer's tests: formatting, the unit tests and the headless tests that
# click (cargo test), then the windowed self-test in a real window (Xvfb,
# Mesa's software OpenGL) against the embedded simulator with faults
# injected, which clicks through a microscopist's steps, saves screenshots
# of the main states and a snapshot TIFF, and the checks of what it saved.
#
#   bash viewer/ci.sh            # from the repository root (CI calls this)
#
# Installs Xvfb and Mesa with apt-get when they are missing. Also checks the
# formatting and runs the viewer's unit tests. Prints
# "viewer: N passed, M failed" last; exits non-zero on any failure.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
cd "$(dirname "$0")"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
OUT="${VIEWER_OUT:-target/selftest}"
mkdir -p "$OUT"

# --- system packages -----------------------------------------------------
need=()
# The shared-library cache, read once (grep -q on a pipe would end the
# writer early, which pipefail reports as a failure).
libs="$(ldconfig -p 2>/dev/null || true)"
have_lib() { grep -qF "$1" <<<"$libs"; }
command -v xvfb-run >/dev/null 2>&1 || need+=(xvfb xauth)
# The GL/EGL loaders eframe's glow backend opens at run time, and Mesa's
# software rasteriser behind them.
have_lib libGL.so.1 || need+=(libgl1)
have_lib libEGL.so.1 || need+=(libegl1)
compgen -G "/usr/lib/*/dri/swrast_dri.so" >/dev/null || need+=(libgl1-mesa-dri)
# The X11 client libraries winit opens at run time.
have_lib libxkbcommon-x11.so || need+=(libxkbcommon-x11-0)
have_lib libXcursor.so || need+=(libxcursor1)
have_lib libXrandr.so || need+=(libxrandr2)
have_lib libXi.so || need+=(libxi6)
if [ ${#need[@]} -gt 0 ]; then
  echo "viewer: installing ${need[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo -n"
  $SUDO apt-get update -qq </dev/null
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" </dev/null >/dev/null
fi

# --- build ---------------------------------------------------------------
cargo fmt --check
cargo build --release
# Unit tests, and the headless tests that click (src/ui_tests.rs).
cargo test --release --quiet
BIN="${CARGO_TARGET_DIR:-target}/release/flamingo-viewer"

# --- windowed self-test --------------------------------------------------
PNG="$OUT/screenshot.png"
rm -f "$PNG" "$PNG.json"
export LIBGL_ALWAYS_SOFTWARE=1
status=0
timeout 120 xvfb-run -a -s "-screen 0 1280x800x24" \
  "$BIN" --self-test --faults --workflow ../fixtures/ZStack.txt --screenshot "$PNG" --time-limit 90 </dev/null || status=$?
if [ "$status" -ne 0 ]; then
  echo "viewer: the self-test exited with status $status"
fi

# --- checks of what was drawn ---------------------------------------------
check=0
"$BIN" --check-screenshot "$PNG" || check=$?
if [ "$status" -ne 0 ] || [ "$check" -ne 0 ]; then
  exit 1
fi
