#!/usr/bin/env bash
# Runs the Autobahn TestSuite fuzzing client against the server's /echo endpoint
# (cases 1–7, 9, 10) and fails unless every case is OK and the summary matches
# autobahn/expected-results-server.json; then cases 12 and 13 (permessage-deflate,
# RFC 7692) against /echo with compression on, matched against
# autobahn/expected-results-server-deflate.json. Pass --update to rewrite those files.
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
kill "$server_pid" 2>/dev/null || true

# permessage-deflate: a server that negotiates it on /echo, and cases 12 and 13 in two
# wstest processes at once (each is one Python process; they take minutes apiece).
port=$(free_port)
out=autobahn/reports/server-deflate
rm -rf "$out"
mkdir -p "$out"
SWITCHBOARD_LOG=warn target/release/switchboard serve --listen "127.0.0.1:$port" \
    --echo-compression --no-demo &
server_pid=$!
wait_port "$port" 30
pids=()
for part in 12 13; do
    mkdir -p "$out/$part"
    cat >"$spec.$part" <<JSON
{
  "outdir": "$out/$part",
  "servers": [{"agent": "switchboard", "url": "ws://127.0.0.1:$port/echo"}],
  "cases": ["$part.*"],
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
JSON
    "$WSTEST" -m fuzzingclient -s "$spec.$part" >"$out/$part/wstest.log" 2>&1 &
    pids+=($!)
done
for i in 0 1; do
    wait "${pids[$i]}" || {
        tail -20 "$out"/*/wstest.log
        exit 1
    }
done
rm -f "$spec".12 "$spec".13
python3 autobahn/merge.py "$out" 12 13
python3 autobahn/summarize.py "$out/index.json" switchboard \
    autobahn/expected-results-server-deflate.json "$@"
