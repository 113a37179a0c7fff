#!/usr/bin/env bash
# The test command (README.md): formatting, lints (Rust, protos, Dockerfile, compose file, Kubernetes
# manifests), then every test against a real PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-postgres.sh
scripts/ensure-tools.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
scripts/check-files.sh
# The end-to-end tests start the real binaries, so build them first.
cargo build --workspace --bins --locked
cargo test --workspace --locked
