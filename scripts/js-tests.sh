#!/usr/bin/env bash
# Runs the JavaScript client's tests (clients/js): unit tests, integration tests against the
# server binary, and the browser test in Debian's Chromium; then checks `switchboard bench`
# against the real peer servers of benches/peers/node. Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ] && [ -z "${CHROMIUM_PATH:-}" ]; then
    apt-get update -qq && apt-get install -y -qq chromium
fi

# playwright-core drives the system Chromium; it must never download a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
# npm records what it installed in node_modules/.package-lock.json: reinstall when the lock
# file is newer.
for dir in clients/js benches/peers/node; do
    if [ ! -f "$dir/node_modules/.package-lock.json" ] ||
        [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
        (cd "$dir" && npm ci --no-audit --no-fund)
    fi
done

# The server embeds clients/js/switchboard.js: build after any change to it.
cargo build --locked --quiet -p switchboard
export SWITCHBOARD_BIN="${SWITCHBOARD_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/debug/switchboard}"

(cd clients/js && npm test)

# The load generator's raw and Socket.IO protocols, against ws, uWebSockets.js and Socket.IO.
node benches/peers/node/smoke.mjs
