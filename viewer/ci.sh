#!/usr/bin/env bash
# The viewer's windowed test: builds the viewer, runs its self-test in a
# real window (Xvfb, Mesa's software OpenGL) against the embedded simulator
# with faults injected, saves a screenshot and checks it.
#
#   bash viewer/ci.sh            # from the repository root (CI calls this)
#
# Installs Xvfb and Mesa with apt-get when they are missing. Prints
# "viewer: N passed, M failed" last; exits non-zero on any failure.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
cd "$(dirname "$0")"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
OUT="${VIEWER_OUT:-target/selftest}"
mkdir -p "$OUT"

# --- system packages -----------------------------------------------------
need=()
command -v xvfb-run >/dev/null 2>&1 || need+=(xvfb xauth)
# Mesa's software rasteriser (llvmpipe/softpipe) and the GL/EGL loaders
# that eframe's glow backend opens at run time.
for lib in libGL.so.1 libEGL.so.1; do
  ldconfig -p 2>/dev/null | grep -q "$lib" || need+=(libgl1 libegl1)
done
ls /usr/lib/*/dri/swrast_dri.so >/dev/null 2>&1 || ls /usr/lib/*/dri/kms_swrast_dri.so >/dev/null 2>&1 \
  || need+=(libgl1-mesa-dri)
# The X11 client libraries winit opens at run time.
ldconfig -p 2>/dev/null | grep -q libxkbcommon-x11.so || need+=(libxkbcommon-x11-0)
ldconfig -p 2>/dev/null | grep -q libXcursor.so || need+=(libxcursor1)
ldconfig -p 2>/dev/null | grep -q libXrandr.so || need+=(libxrandr2)
ldconfig -p 2>/dev/null | grep -q libXi.so || need+=(libxi6)
if [ ${#need[@]} -gt 0 ]; then
  # De-duplicate.
  mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
  echo "viewer: installing ${need[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo -n"
  $SUDO apt-get update -qq </dev/null
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" </dev/null >/dev/null
fi

# --- build ---------------------------------------------------------------
cargo build --release 2>&1 | tail -n 3
BIN=target/release/flamingo-viewer

# --- windowed self-test --------------------------------------------------
PNG="$OUT/screenshot.png"
rm -f "$PNG" "$PNG.json"
export LIBGL_ALWAYS_SOFTWARE=1
status=0
timeout 120 xvfb-run -a -s "-screen 0 1280x800x24" \
  "$BIN" --self-test --faults --screenshot "$PNG" --time-limit 90 </dev/null || status=$?
if [ "$status" -ne 0 ]; then
  echo "viewer: the self-test exited with status $status"
fi

# --- checks of what was drawn ---------------------------------------------
check=0
"$BIN" --check-screenshot "$PNG" || check=$?
if [ "$status" -ne 0 ] || [ "$check" -ne 0 ]; then
  exit 1
fi
