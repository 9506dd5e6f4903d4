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

echo "== packages: the crates a client or a server depends on, each whole"
# The Rust client, the server library and every workspace crate they use. `cargo package`
# fails when a manifest cannot stand alone (a dependency without a version, a cycle); it does
# not build the crates (that takes minutes), so also refuse what would package but not build
# alone: a symbolic link, or a file included from outside the crate's directory in code the
# crate compiles (tests and benches are the workspace's: they use the unpublished test support).
packaged=(clients/js crates/codec crates/proto crates/auth crates/broker crates/hub crates/server
    crates/client crates/broker-redis crates/broker-nats)
names=()
for dir in "${packaged[@]}"; do
    names+=(-p "$(sed -n 's/^name = "\(.*\)"$/\1/p' "$dir/Cargo.toml" | head -n 1)")
    if git ls-files -s -- "$dir" | grep -q '^120000 '; then
        echo "$dir holds a symbolic link: its package would not build everywhere" >&2
        exit 1
    fi
    if git ls-files -- "$dir" | grep -Ev "^$dir/(tests|benches)/" | grep '\.rs$' |
        xargs -r grep -nE 'include_(str|bytes)!\(.*("\.\./\.\.|CARGO_MANIFEST_DIR"\), *"/\.\.)'; then
        echo "$dir includes a file from outside its directory" >&2
        exit 1
    fi
done
cargo package --locked --offline --no-verify --allow-dirty --quiet "${names[@]}"

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
    cargo test --workspace --locked --doc
else
    cargo test --workspace --locked --no-fail-fast
fi

echo "== docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
