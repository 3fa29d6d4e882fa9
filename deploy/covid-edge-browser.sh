#!/bin/sh
# Chromium in kiosk mode (full screen, no address bar, no dialogs) on the live covid-edge page.
# Start it from the desktop session's autostart (see docs/kiosk.md): it waits for
# `covid-edge serve` to answer, so it can start at login before the server is up.
#   COVID_EDGE_URL       page to show (default http://127.0.0.1:8000/kiosk; the upload page is /)
#   COVID_EDGE_WAIT_S    seconds to wait for the server (default 120)
set -eu

URL="${COVID_EDGE_URL:-http://127.0.0.1:8000/kiosk}"
BASE="$(printf '%s' "$URL" | sed -E 's#^(https?://[^/]+).*#\1#')"

# Wait up to two minutes for the server (the model loads in a few seconds on a Pi 4/5).
# python3 rather than curl: Raspberry Pi OS always has it.
server_up() {
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
        "$BASE/api/v1/health" >/dev/null 2>&1
}
tries=0
until server_up; do
    tries=$((tries + 1))
    if [ "$tries" -ge "${COVID_EDGE_WAIT_S:-120}" ]; then
        echo "covid-edge-browser: no server at $BASE; showing the page anyway" >&2
        break
    fi
    sleep 1
done

# Raspberry Pi OS calls it chromium-browser; Debian calls it chromium.
BROWSER="$(command -v chromium-browser || command -v chromium || true)"
if [ -z "$BROWSER" ]; then
    echo "covid-edge-browser: Chromium is not installed: sudo apt install chromium-browser" >&2
    exit 1
fi

# --incognito: no profile state, so no "restore pages?" bubble after a power cut.
exec "$BROWSER" --kiosk --incognito --noerrdialogs --disable-infobars --no-first-run \
    --disable-session-crashed-bubble --disable-translate --overscroll-history-navigation=0 \
    --check-for-update-interval=31536000 "$URL"
