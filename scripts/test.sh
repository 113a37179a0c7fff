#!/usr/bin/env bash
# The test command (README.md): formatting, lints (Rust, protos, Dockerfile, compose file, Kubernetes
# manifests), then every test against a real PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-postgres.sh
scripts/ensure-tools.sh
scripts/ensure-node.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
scripts/check-files.sh
# The TypeScript SDK: its tests with the real node, and the build (sdk/typescript/dist) whose example
# participant the Rust end-to-end tests start.
(cd sdk/typescript && npm ci --no-audit --no-fund && npm test)
# The end-to-end tests start the real binaries, so build them first.
cargo build --workspace --bins --locked
# Every test but chaos, then chaos alone: it kills and freezes replicas on a schedule with a fixed retry
# budget per saga, which tests running beside it (the end-to-end tests share one binary) would eat into.
cargo test --workspace --locked -- --skip chaos::
cargo test --locked -p e2e-tests --test e2e chaos::
