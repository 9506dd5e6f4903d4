#!/usr/bin/env bash
# Switchboard against its peers (tokio-tungstenite, fastwebsockets, ws, uWebSockets.js,
# Socket.IO), in the same run on the same machine, with `switchboard bench` as the client of
# all of them. Writes the raw results under --out, then docs/benchmarks.md and
# docs/images/bench-*.png (docs/benchmarks.md says how to read them).
#
# Usage: scripts/bench-peers.sh [--runs N] [--quick] [--only CASE,...] [--servers SERVER,...]
#                               [--out DIR]
#
#   --runs N        runs of every (case, server); the report shows medians (default 3)
#   --quick         1 run with short durations and fewer connections, to try the script;
#                   its report goes to DIR/report/ instead of docs/
#   --only LIST     comma-separated cases (default: all); results of other cases kept from
#                   earlier runs in DIR are reported too
#   --servers LIST  comma-separated servers (default: all); the cases' results of the others
#                   are left out
#   --out DIR       raw results, logs and machine info (default target/bench-peers, with
#                   --quick target/bench-peers-quick)
#
# Cases: echo-64 echo-16k fanout-1k fanout-10k fanout-max idle-memory open-rate.
# Servers: switchboard switchboard-wss tungstenite fastwebsockets ws uws socketio
# (switchboard-wss: Switchboard over TLS, in echo-64 and fanout-1k only).
# Needs cargo, node and npm (for the Node servers), taskset and 2 cores. About 20 minutes
# from a fresh clone (builds included) on 2 cores, 9 once built; --quick about 2 once built.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS=$ROOT/benches/peers
ALL_CASES=(echo-64 echo-16k fanout-1k fanout-10k fanout-max idle-memory open-rate)
ALL_SERVERS=(switchboard tungstenite fastwebsockets ws uws socketio)
# Switchboard again, over TLS: only where the report compares wss with ws.
TLS_SERVER=switchboard-wss
TLS_CASES=(echo-64 fanout-1k)

RUNS=3
QUICK=0
ONLY=""
SERVERS=""
OUT=""

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

while [[ $# -gt 0 ]]; do
    case $1 in
        --runs) RUNS=${2:?--runs needs a number}; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --only) ONLY=${2:?--only needs a list of cases}; shift 2 ;;
        --servers) SERVERS=${2:?--servers needs a list of servers}; shift 2 ;;
        --out) OUT=${2:?--out needs a directory}; shift 2 ;;
        -h | --help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage ;;
    esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "--runs: expected a positive number" >&2; exit 2; }
if [[ $QUICK == 1 ]]; then RUNS=1; fi
# A quick run keeps its results apart, so that it never mixes with a full run's.
if [[ -z $OUT ]]; then
    OUT=$ROOT/target/bench-peers$([[ $QUICK == 1 ]] && echo -quick || true)
fi

CASES=("${ALL_CASES[@]}")
if [[ -n $ONLY ]]; then
    IFS=, read -r -a CASES <<<"$ONLY"
    for c in "${CASES[@]}"; do
        [[ " ${ALL_CASES[*]} " == *" $c "* ]] || { echo "unknown case: $c" >&2; exit 2; }
    done
fi
SELECTED=("${ALL_SERVERS[@]}" "$TLS_SERVER")
if [[ -n $SERVERS ]]; then
    IFS=, read -r -a SELECTED <<<"$SERVERS"
    for s in "${SELECTED[@]}"; do
        [[ " ${ALL_SERVERS[*]} $TLS_SERVER " == *" $s "* ]] || { echo "unknown server: $s" >&2; exit 2; }
    done
fi
# The Node servers need node and their packages; the others do not.
NEED_NODE=0
for s in "${SELECTED[@]}"; do
    case $s in ws | uws | socketio) NEED_NODE=1 ;; esac
done

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

START=$SECONDS
mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)

# Results depend on no SWITCHBOARD_* variable of the caller's environment.
while read -r var; do unset "$var"; done < <(compgen -e | grep '^SWITCHBOARD_' || true)

# ---------------------------------------------------------------------------------------------
# Tools, dependencies and builds.

TOOLS=(cargo taskset)
[[ $NEED_NODE == 0 ]] || TOOLS+=(node npm)
for tool in "${TOOLS[@]}"; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
CORES=$(nproc)
if ((CORES >= 2)); then
    SERVER_CPUS=0 LOAD_CPUS=1 BOTH_CPUS=0-1
else
    log "warning: 1 core: server and load tool share it, figures mean little"
    SERVER_CPUS=0 LOAD_CPUS=0 BOTH_CPUS=0
fi

FONT=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
if [[ ! -f $FONT ]]; then
    if command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
        log "installing fonts-dejavu-core (for the plots)"
        apt-get install -y -qq fonts-dejavu-core >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null && apt-get install -y -qq fonts-dejavu-core >/dev/null; }
    else
        die "$FONT is missing: install Debian's fonts-dejavu-core"
    fi
fi

if [[ $NEED_NODE == 1 && ( ! -f $PEERS/node/node_modules/.package-lock.json ||
    $PEERS/node/package-lock.json -nt $PEERS/node/node_modules/.package-lock.json ) ]]; then
    log "npm ci (benches/peers/node)"
    (cd "$PEERS/node" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi

log "building switchboard (release)"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p switchboard
log "building the peers (release)"
PEER_TARGET=$PEERS/rust/target
cargo build --release --quiet --locked --manifest-path "$PEERS/rust/Cargo.toml" \
    --target-dir "$PEER_TARGET"
SB=$(cd "$ROOT" && realpath -m "${CARGO_TARGET_DIR:-target}")/release/switchboard
PEER_BIN=$PEER_TARGET/release
log "built in $((SECONDS - START)) s"

"$SB" bench --help >/dev/null 2>&1 || die "$SB has no bench command"

# 10,000 connections need as many descriptors in the server and the load tool.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---------------------------------------------------------------------------------------------
# Switchboard's configuration: limits off, a namespace `bench` that anyone may publish to, with
# no history, presence or join/leave events (the peers keep none of them either).

SB_CONFIG=$OUT/switchboard.toml
cat >"$SB_CONFIG" <<'EOF'
[limits]
max_connections = 0
max_connections_per_ip = 0
handshake_rate = "off"
message_rate = "off"
byte_rate = "off"

[namespaces.bench]
history_size = 0
presence = false
join_leave = false
allow_publish = true
anonymous = "publish"
EOF
"$SB" config check "$SB_CONFIG" >/dev/null || die "$SB_CONFIG rejected"

# ---------------------------------------------------------------------------------------------
# Servers.

STARTED=()
cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port below the ephemeral range (so no client socket holds it) that nothing listens on.
free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
}

# Where switchboard-wss writes its certificate: `serve --dev-tls` writes a certificate it
# generates for localhost and 127.0.0.1 to $TMPDIR/switchboard-dev-cert.pem, and the load tool
# trusts it with --ca.
TLS_DIR=$OUT/tls
TLS_CA=$TLS_DIR/switchboard-dev-cert.pem

# start_server SERVER PORT CPUS LOG: starts it in the background, sets SERVER_PID.
start_server() {
    local server=$1 port=$2 cpus=$3 log=$4
    local pin=(taskset -c "$cpus")
    local sb_serve=(serve --config "$SB_CONFIG" --listen "127.0.0.1:$port" --no-demo
        --max-connections 0 --max-connections-per-ip 0 --handshake-rate off
        --rate-limit-messages off --rate-limit-bytes off)
    case $server in
        switchboard) SWITCHBOARD_LOG=warn "${pin[@]}" "$SB" "${sb_serve[@]}" >"$log" 2>&1 & ;;
        switchboard-wss)
            mkdir -p "$TLS_DIR"
            rm -f "$TLS_CA"
            TMPDIR=$TLS_DIR SWITCHBOARD_LOG=warn "${pin[@]}" "$SB" "${sb_serve[@]}" --dev-tls \
                >"$log" 2>&1 &
            ;;
        tungstenite) "${pin[@]}" "$PEER_BIN/peer-tungstenite" --port "$port" >"$log" 2>&1 & ;;
        fastwebsockets) "${pin[@]}" "$PEER_BIN/peer-fastwebsockets" --port "$port" >"$log" 2>&1 & ;;
        ws) "${pin[@]}" node "$PEERS/node/ws.mjs" --port "$port" >"$log" 2>&1 & ;;
        uws) "${pin[@]}" node "$PEERS/node/uws.mjs" --port "$port" >"$log" 2>&1 & ;;
        socketio) "${pin[@]}" node "$PEERS/node/socketio.mjs" --port "$port" >"$log" 2>&1 & ;;
    esac
    # taskset execs the server: $! is the server's own process id.
    SERVER_PID=$!
    STARTED+=("$SERVER_PID")
    local tries=0
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        kill -0 "$SERVER_PID" 2>/dev/null || return 1
        ((++tries < 300)) || return 1
        sleep 0.05
    done
    # The port accepts once bound; the certificate is whole once the warning that names its
    # file is logged.
    if [[ $server == "$TLS_SERVER" ]]; then
        until grep -q 'DEVELOPMENT TLS' "$log" && [[ -s $TLS_CA ]]; do
            kill -0 "$SERVER_PID" 2>/dev/null || return 1
            ((++tries < 300)) || return 1
            sleep 0.05
        done
    fi
}

# Stops the server started last: SIGTERM, then SIGKILL if it is still there after 5 s.
stop_server() {
    local tries=0
    kill "$SERVER_PID" 2>/dev/null || true
    while kill -0 "$SERVER_PID" 2>/dev/null && ((++tries <= 100)); do
        sleep 0.05
    done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    local keep=() pid
    for pid in "${STARTED[@]}"; do
        [[ $pid == "$SERVER_PID" ]] || keep+=("$pid")
    done
    STARTED=("${keep[@]+"${keep[@]}"}")
}

# ---------------------------------------------------------------------------------------------
# Cases: which servers take part, where they run, and the load tool's arguments.

if [[ $QUICK == 1 ]]; then
    ECHO_TIME=(--duration 1s --warmup 500ms) FANOUT_TIME=(--duration 2s --grace 1s)
    IDLE_CONNS=2000 OPEN_CONNS=1000
else
    ECHO_TIME=(--duration 3s --warmup 1s) FANOUT_TIME=(--duration 5s --grace 1s)
    IDLE_CONNS=10000 OPEN_CONNS=5000
fi

# case_servers CASE: the servers of the case that --servers selected.
case_servers() {
    local servers=() s
    case $1 in
        # Only Switchboard acknowledges publishes, which --rate 0 paces itself by.
        fanout-max) servers=(switchboard) ;;
        *) servers=("${ALL_SERVERS[@]}") ;;
    esac
    [[ " ${TLS_CASES[*]} " != *" $1 "* ]] || servers+=("$TLS_SERVER")
    for s in "${servers[@]}"; do
        [[ " ${SELECTED[*]} " != *" $s "* ]] || printf '%s ' "$s"
    done
}

# The server gets core 0, the load tool core 1; with 10,000 subscribers the server may use
# both (a publish is 10,000 writes), the load tool staying on core 1.
case_server_cpus() {
    case $1 in
        fanout-10k) echo "$BOTH_CPUS" ;;
        *) echo "$SERVER_CPUS" ;;
    esac
}

# case_args CASE: the scenario and its options (the same for every server).
case_args() {
    case $1 in
        echo-64) echo echo --connections 100 --size 64 --in-flight 16 "${ECHO_TIME[@]}" ;;
        echo-16k) echo echo --connections 100 --size 16384 --in-flight 1 "${ECHO_TIME[@]}" ;;
        fanout-1k)
            echo fanout --subscribers 1000 --channels 1 --rate 100 --size 1024 "${FANOUT_TIME[@]}"
            ;;
        fanout-10k)
            echo fanout --subscribers 10000 --channels 1 --rate 5 --size 1024 \
                "${FANOUT_TIME[@]}" --local-addrs 4
            ;;
        fanout-max)
            echo fanout --subscribers 1000 --channels 1 --rate 0 --size 100 "${FANOUT_TIME[@]}"
            ;;
        idle-memory) echo connect --connections "$IDLE_CONNS" --hold 2s --local-addrs 4 ;;
        open-rate) echo connect --connections "$OPEN_CONNS" --hold 1s --local-addrs 4 ;;
    esac
}

# endpoint CASE SERVER: URL path, protocol and extra options.
endpoint() {
    local case=$1 server=$2
    if [[ $server == socketio ]]; then
        echo "/socket.io/?EIO=4&transport=websocket socketio"
        return
    fi
    case $case in
        echo-*) echo "/echo raw" ;;
        idle-memory)
            if [[ $server == switchboard* ]]; then echo "/ws switchboard --subscribe"; else echo "/broadcast raw"; fi
            ;;
        *)
            if [[ $server == switchboard* ]]; then echo "/ws switchboard"; else echo "/broadcast raw"; fi
            ;;
    esac
}

# The figure printed as progress.
main_key() {
    case $1 in
        echo-*) echo msg_per_s ;;
        fanout-max) echo deliveries_per_s ;;
        fanout-*) echo p99 ;;
        idle-memory) echo server_rss_per_conn_bytes ;;
        open-rate) echo open_per_s ;;
    esac
}

# The machine is shared: what other processes take of the server's core during a measurement
# is recorded with it. other_cpu_sample CPUS prints "busy total server" clock ticks (busy
# includes time stolen by the hypervisor), only for a server on one core.
other_cpu_sample() {
    [[ $1 =~ ^[0-9]+$ && -r /proc/$SERVER_PID/stat ]] || return 0
    local server
    server=$(sed 's/.*) //' "/proc/$SERVER_PID/stat" | awk '{ print $12 + $13 }')
    awk -v c="cpu$1" -v s="$server" \
        '$1 == c { t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t, s }' /proc/stat
}

# other_cpu_pct BEFORE AFTER: percent of the server's core busy with anything but the server
# between the two samples, or null.
other_cpu_pct() {
    local b0 t0 s0 b1 t1 s1
    read -r b0 t0 s0 <<<"$1"
    read -r b1 t1 s1 <<<"$2"
    if [[ -z ${s0:-} || -z ${s1:-} ]] || ((t1 <= t0)); then
        echo null
        return
    fi
    awk -v b="$((b1 - b0))" -v s="$((s1 - s0))" -v t="$((t1 - t0))" \
        'BEGIN { o = (b - s) * 100 / t; if (o < 0) o = 0; printf "%.1f", o }'
}

json_string() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=$(printf '%s' "$s" | tr -d '\000-\037')
    printf '"%s"' "$s"
}

# run_one CASE SERVER RUN RESULTS: one measurement, appended to RESULTS as a JSON line.
run_one() {
    local case=$1 server=$2 run=$3 results=$4
    local cpus port url path protocol extra args tag out err line status
    cpus=$(case_server_cpus "$case")
    port=$(free_port)
    read -r path protocol extra <<<"$(endpoint "$case" "$server")"
    url="ws://127.0.0.1:$port$path"
    read -r -a args <<<"$(case_args "$case")"
    # At most 100 handshakes at a time: tokio's listen backlog is 128, and a burst past a
    # server's backlog measures the kernel's 1 s SYN retransmission instead of the server.
    args+=(--concurrency 100)
    # Switchboard's channels in the configuration's `bench` namespace (the load tool's default
    # prefix is in `chat`, which keeps history and presence); the raw and Socket.IO peers
    # have no channels and ignore it, so the command stays the same for every server.
    args+=(--channel-prefix bench:)
    [[ -z $extra ]] || args+=("$extra")
    if [[ $server == "$TLS_SERVER" ]]; then
        url="wss://127.0.0.1:$port$path"
        args+=(--ca "$TLS_CA")
    fi
    tag="$case/$server/run$run"
    out=$OUT/logs/$case-$server-$run.json
    err=$OUT/logs/$case-$server-$run.err
    local fields
    fields="\"case\":\"$case\",\"server\":\"$server\",\"run\":$run"
    fields+=",\"command\":$(json_string "switchboard bench ${args[*]}")"
    fields+=",\"server_cpus\":\"$cpus\",\"load_cpus\":\"$LOAD_CPUS\""

    if ! start_server "$server" "$port" "$cpus" "$OUT/logs/$case-$server-$run.server.log"; then
        stop_server
        log "$tag: server did not start (see logs/$case-$server-$run.server.log)"
        echo "{$fields,\"error\":\"server did not start\"}" >>"$results"
        return
    fi
    status=0
    local before after
    before=$(other_cpu_sample "$cpus")
    timeout --kill-after=5 180 taskset -c "$LOAD_CPUS" "$SB" bench "${args[@]}" \
        --url "$url" --protocol "$protocol" --pid "$SERVER_PID" --json >"$out" 2>"$err" ||
        status=$?
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        [[ $status != 0 ]] || status=1
        echo "server exited during the run" >>"$err"
    fi
    after=$(other_cpu_sample "$cpus")
    fields+=",\"other_cpu_pct\":$(other_cpu_pct "$before" "$after")"
    stop_server
    line=$(tr -d '\n' <"$out")
    if [[ $status == 0 && $line == "{"*"}" && $line != "{}" ]]; then
        echo "{$fields,${line#\{}" >>"$results"
        local key figure
        key=$(main_key "$case")
        figure=$(grep -o "\"$key\":[0-9.e+-]*" <<<"$line" | head -1 | cut -d: -f2)
        log "$tag: $key ${figure:-?}"
    else
        local reason
        reason=$(grep -v '^\s*$' "$err" | tail -1)
        reason=${reason:-exit status $status}
        log "$tag: failed: $reason"
        echo "{$fields,\"error\":$(json_string "$reason")}" >>"$results"
    fi
}

# ---------------------------------------------------------------------------------------------
# Measure.

log "loopback-probe"
PHYSICAL=$(taskset -c "$BOTH_CPUS" "$PEER_BIN/loopback-probe")

for case in "${CASES[@]}"; do
    read -r -a servers <<<"$(case_servers "$case")"
    if ((${#servers[@]} == 0)); then
        log "$case: no server selected"
        continue
    fi
    results=$OUT/results-$case.jsonl
    : >"$results"
    case_start=$SECONDS
    for ((run = 1; run <= RUNS; run++)); do
        # Interleaved: every server once per run, starting one further each run so that no
        # server always follows the same one.
        n=${#servers[@]}
        for ((i = 0; i < n; i++)); do
            run_one "$case" "${servers[(i + run - 1) % n]}" "$run" "$results"
        done
    done
    log "$case done in $((SECONDS - case_start)) s"
done

# ---------------------------------------------------------------------------------------------
# Report.

mem_kib=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
cat >"$OUT/machine.json" <<EOF
{
  "date": $(json_string "$(date -u '+%Y-%m-%d %H:%M UTC')"),
  "cpu_model": $(json_string "$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"),
  "cores": $CORES,
  "memory": $(json_string "$((mem_kib / 1024 / 1024)) GiB"),
  "kernel": $(json_string "$(uname -sr)"),
  "rustc": $(json_string "$(rustc --version)"),
  "node": $(json_string "$(if [[ $NEED_NODE == 1 ]]; then node --version; else echo "not used"; fi)"),
  "switchboard": $(json_string "$("$SB" --version)"),
  "runs": $RUNS,
  "quick": $([[ $QUICK == 1 ]] && echo true || echo false),
  "physical": $PHYSICAL
}
EOF

if [[ $QUICK == 1 ]]; then
    REPORT=$OUT/report/benchmarks.md IMAGES=$OUT/report/images
    mkdir -p "$OUT/report"
else
    REPORT=$ROOT/docs/benchmarks.md IMAGES=$ROOT/docs/images
fi
result_files=()
for case in "${ALL_CASES[@]}"; do
    [[ ! -s $OUT/results-$case.jsonl ]] || result_files+=(--results "$OUT/results-$case.jsonl")
done
"$PEER_BIN/bench-report" "${result_files[@]}" --machine "$OUT/machine.json" \
    --template "$PEERS/report/template.md" --out "$REPORT" --images "$IMAGES" >&2
log "done in $((SECONDS - START)) s: $REPORT"
