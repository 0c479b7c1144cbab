#!/usr/bin/env bash
# The real-window frame-pacing script of docs/benchmarks.md ("Real window"): the editor under
# Xvfb on the bundled model, driven by xdotool, with NVG_FRAME_LOG on; then the summary.
#
#   apt-get install xvfb xdotool libgl1-mesa-dri   # once
#   cargo build && bash docs/tools/real-window.sh [LOG] [renderer]
#
# Scenario (the pointer positions assume the default 1280×860 window at the screen's origin):
# wait 14 s for the model; click "New seed" six times, 2.8 s apart; pick stage 3 and paint a 4 s
# structure-brush stroke; then three times: "New seed" and at once a 0.4 s stroke, so that it is
# painted while the run is in flight. Extra environment (say NVG_WORKER_NICE=0) passes through.
set -euo pipefail
cd "$(dirname "$0")/../.."
LOG=${1:-frames.log}
RENDERER=${2:-glow}
BIN=${BIN:-target/debug/nvg-studio}
export DISPLAY=${DISPLAY:-:99}
if ! xdpyinfo >/dev/null 2>&1 && ! xdotool getdisplaygeometry >/dev/null 2>&1; then
    Xvfb "$DISPLAY" -screen 0 1280x900x24 >/dev/null 2>&1 &
    XVFB=$!
    trap 'kill $XVFB 2>/dev/null || true' EXIT
    sleep 1
fi
CFG=$(mktemp -d)   # a fresh autosave/config folder, so no earlier document is recovered
XDG_DATA_HOME=$CFG XDG_CONFIG_HOME=$CFG NVG_FRAME_LOG=$LOG "$BIN" edit --renderer "$RENDERER" >/dev/null 2>&1 &
APP=$!
sleep 14
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
kill $APP; wait $APP 2>/dev/null || true
rm -rf "$CFG"
"$BIN" bench --what frame-log --frame-log "$LOG"
