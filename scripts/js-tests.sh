#!/usr/bin/env bash
# Runs the JavaScript client's tests (clients/js): unit tests, integration tests against the
# server binary, and the browser test in Debian's Chromium. Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ] && [ -z "${CHROMIUM_PATH:-}" ]; then
    apt-get update -qq && apt-get install -y -qq chromium
fi

# playwright-core drives the system Chromium; it must never download a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
# npm records what it installed in node_modules/.package-lock.json: reinstall when the lock
# file is newer.
if [ ! -f clients/js/node_modules/.package-lock.json ] ||
    [ clients/js/package-lock.json -nt clients/js/node_modules/.package-lock.json ]; then
    (cd clients/js && npm ci --no-audit --no-fund)
fi

# The server embeds clients/js/switchboard.js: build after any change to it.
cargo build --locked --quiet -p switchboard
export SWITCHBOARD_BIN="${SWITCHBOARD_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/debug/switchboard}"

cd clients/js
npm test
