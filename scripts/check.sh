#!/usr/bin/env bash
# Exactly what CI checks: formatting, lints, the layering rule, tests, docs.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== fmt"
cargo fmt --all -- --check

echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== layering: the codec is sans-IO"
if cargo tree -p switchboard-codec -e normal --prefix none | grep -Eq '^(tokio|mio) '; then
    echo "switchboard-codec must not depend on tokio or mio" >&2
    exit 1
fi

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
    cargo test --workspace --locked --doc
else
    cargo test --workspace --locked --no-fail-fast
fi

echo "== docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
