#!/usr/bin/env bash
# Runs the Autobahn TestSuite fuzzing server against the engine's client side (the
# autobahn-client test binary, which echoes) and fails unless every case is OK and the
# summary matches autobahn/expected-results-client.json. Pass --update to rewrite that file.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/autobahn-common.sh

ensure_wstest
cargo build --release --quiet -p switchboard-test-support --bin autobahn-client

port=$(free_port)
out=autobahn/reports/client
rm -rf "$out"
mkdir -p "$out"
spec=$(mktemp)
cat >"$spec" <<JSON
{
  "url": "ws://127.0.0.1:$port",
  "outdir": "$out",
  "cases": ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"],
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
JSON

"$WSTEST" -m fuzzingserver -u 0 -s "$spec" >"$out/wstest.log" 2>&1 &
wstest_pid=$!
trap 'kill "$wstest_pid" 2>/dev/null || true; rm -f "$spec"' EXIT
wait_port "$port" 60

target/release/autobahn-client "127.0.0.1:$port"
python3 autobahn/summarize.py "$out/index.json" switchboard autobahn/expected-results-client.json "$@"
