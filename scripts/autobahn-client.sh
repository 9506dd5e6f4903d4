#!/usr/bin/env bash
# Runs the Autobahn TestSuite fuzzing server against the engine's client side (the
# autobahn-client test binary, which echoes) and fails unless every case is OK and the
# summary matches autobahn/expected-results-client.json; then cases 12 and 13
# (permessage-deflate, RFC 7692) with the client offering compression, matched against
# autobahn/expected-results-client-deflate.json. Pass --update to rewrite those files.
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
kill "$wstest_pid" 2>/dev/null || true

# permessage-deflate: cases 12 and 13, each with its own fuzzing server and client at once
# (each wstest is one Python process; they take minutes apiece).
out=autobahn/reports/client-deflate
rm -rf "$out"
mkdir -p "$out"
servers=()
clients=()
trap 'kill "${servers[@]}" 2>/dev/null || true; rm -f "$spec" "$spec".12 "$spec".13' EXIT
for part in 12 13; do
    port=$(free_port)
    mkdir -p "$out/$part"
    cat >"$spec.$part" <<JSON
{
  "url": "ws://127.0.0.1:$port",
  "outdir": "$out/$part",
  "cases": ["$part.*"],
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
JSON
    "$WSTEST" -m fuzzingserver -u 0 -s "$spec.$part" >"$out/$part/wstest.log" 2>&1 &
    servers+=($!)
    wait_port "$port" 60
    target/release/autobahn-client "127.0.0.1:$port" --deflate >"$out/$part/client.log" 2>&1 &
    clients+=($!)
done
for i in 0 1; do
    wait "${clients[$i]}" || {
        tail -20 "$out"/*/client.log
        exit 1
    }
done
python3 autobahn/merge.py "$out" 12 13
python3 autobahn/summarize.py "$out/index.json" switchboard \
    autobahn/expected-results-client-deflate.json "$@"
