#!/usr/bin/env bash
# The real-window frame-pacing script of docs/benchmarks.md ("Real window"): the editor under
# Xvfb on the bundled model, driven by xdotool, with NVG_FRAME_LOG on; then the summary.
#
#   apt-get install xvfb xdotool libgl1-mesa-dri   # once
#   cargo build && bash docs/tools/real-window.sh [LOG] [renderer]
#
# LOG defaults to frames.log in the current folder; the editor's stderr goes to LOG.stderr.
# Scenario (the pointer positions assume the default 1280×860 window at the screen's origin):
# wait 14 s for the model; click "New seed" six times, 2.8 s apart; pick stage 3 and paint a 4 s
# structure-brush stroke; then three times: "New seed" and at once a 0.4 s stroke, so that it is
# painted while the run is in flight. Extra environment (say NVG_WORKER_NICE=0) passes through.
set -euo pipefail
LOG=$(realpath -m "${1:-frames.log}")
RENDERER=${2:-glow}
cd "$(dirname "$0")/../.."
BIN=$(realpath -m "${BIN:-${CARGO_TARGET_DIR:-target}/debug/nvg-studio}")
command -v Xvfb >/dev/null && command -v xdotool >/dev/null || { echo "needs Xvfb and xdotool (apt-get install xvfb xdotool)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "$BIN: not built (cargo build)" >&2; exit 1; }

APP="" XVFB="" CFG=""
cleanup() {
    if [ -n "$APP" ]; then kill "$APP" 2>/dev/null || true; wait "$APP" 2>/dev/null || true; fi
    if [ -n "$XVFB" ]; then kill "$XVFB" 2>/dev/null || true; fi
    if [ -n "$CFG" ]; then rm -rf "$CFG"; fi
}
trap cleanup EXIT

export DISPLAY=${DISPLAY:-:99}
if ! xdotool getdisplaygeometry >/dev/null 2>&1; then
    Xvfb "$DISPLAY" -screen 0 1280x900x24 >"$LOG.xvfb" 2>&1 &
    XVFB=$!
    for _ in $(seq 1 50); do xdotool getdisplaygeometry >/dev/null 2>&1 && break; sleep 0.1; done
    xdotool getdisplaygeometry >/dev/null 2>&1 || { echo "Xvfb did not start on $DISPLAY (see $LOG.xvfb)" >&2; exit 1; }
fi
CFG=$(mktemp -d)   # a fresh autosave/config folder, so no earlier document is recovered
XDG_DATA_HOME=$CFG XDG_CONFIG_HOME=$CFG NVG_FRAME_LOG=$LOG "$BIN" edit --renderer "$RENDERER" 2>"$LOG.stderr" >/dev/null &
APP=$!
sleep 14
kill -0 "$APP" 2>/dev/null || { echo "the editor exited early (see $LOG.stderr)" >&2; exit 1; }
for _ in 1 2 3 4 5 6; do xdotool mousemove 92 737 click 1; sleep 2.8; done
xdotool mousemove 610 90 click 1; sleep 0.5
xdotool mousemove 400 300 mousedown 1
for i in $(seq 1 200); do xdotool mousemove $((400 + (i * 3) % 500)) $((300 + (i * 7) % 400)); sleep 0.02; done
xdotool mouseup 1; sleep 3
for _ in 1 2 3; do
    xdotool mousemove 92 737 click 1; sleep 0.05
    xdotool mousemove 450 350 mousedown 1
    for i in $(seq 1 40); do xdotool mousemove $((450 + (i * 11) % 300)) $((350 + (i * 5) % 300)); sleep 0.01; done
    xdotool mouseup 1; sleep 2.5
done
cleanup
APP="" XVFB="" CFG=""
"$BIN" bench --what frame-log --frame-log "$LOG"
