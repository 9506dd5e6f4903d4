#!/usr/bin/env bash
# Runs the Autobahn TestSuite fuzzing client against the server's /echo endpoint
# (cases 1–7, 9, 10) and fails unless every case is OK and the summary matches
# autobahn/expected-results-server.json. Pass --update to rewrite that file.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/autobahn-common.sh

ensure_wstest
cargo build --release --quiet -p switchboard

port=$(free_port)
out=autobahn/reports/server
rm -rf "$out"
mkdir -p "$out"
spec=$(mktemp)
cat >"$spec" <<JSON
{
  "outdir": "$out",
  "servers": [{"agent": "switchboard", "url": "ws://127.0.0.1:$port/echo"}],
  "cases": ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"],
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
JSON

SWITCHBOARD_LOG=warn target/release/switchboard serve --listen "127.0.0.1:$port" &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true; rm -f "$spec"' EXIT
wait_port "$port" 30

"$WSTEST" -m fuzzingclient -s "$spec" >"$out/wstest.log" 2>&1 || {
    tail -20 "$out/wstest.log"
    exit 1
}
python3 autobahn/summarize.py "$out/index.json" switchboard autobahn/expected-results-server.json "$@"
