#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ one after another, each for a set time, and fails if any
# crashes. Not run by CI: a meaningful run takes minutes per target. See docs/fuzzing.md.
#
#   scripts/fuzz.sh [seconds-per-target] [target...]   (default: 60 s, every target)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and a C++ compiler for libFuzzer.
# cargo-fuzz passes nightly-only flags to rustc (-Zsanitizer=address, the sanitizer-coverage
# passes that guide libFuzzer); RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them, so
# no nightly toolchain is needed. It affects only these builds.
#
# The committed seeds in fuzz/corpus/<target> are read, never written: what the fuzzer
# finds goes to fuzz/target/fuzz-corpus/<target> (kept between runs, ignored by git), and a
# crashing input to fuzz/artifacts/<target>/, whose path the failure message names.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(frame_header server_read client_read handshake_request proto_decode hub_ops)
fi

export RUSTC_BOOTSTRAP=1
nice -n 10 cargo fuzz build

failed=()
for target in "${targets[@]}"; do
    work="target/fuzz-corpus/$target"
    mkdir -p "$work"
    echo "== $target: ${seconds}s"
    # One job, one worker: the machine is shared; libFuzzer stops at the time limit and
    # exits non-zero on a crash, a leak, a timeout or running out of memory.
    if nice -n 10 cargo fuzz run "$target" "$work" "corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 2>"target/fuzz-$target.log"; then
        grep -E '^#[0-9]+[[:space:]]+DONE' "target/fuzz-$target.log" | tail -1 || true
        grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "target/fuzz-$target.log" || true
    else
        echo "$target FAILED; see fuzz/target/fuzz-$target.log" >&2
        grep -E 'panicked at|^SUMMARY|Test unit written' "target/fuzz-$target.log" >&2 || true
        failed+=("$target")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "crashed: ${failed[*]}" >&2
    exit 1
fi
echo "no crash in ${targets[*]}"
