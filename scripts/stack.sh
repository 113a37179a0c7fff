#!/usr/bin/env bash
# Runs the whole stack locally: PostgreSQL (started or installed if needed), the demo participants
# (billing, device, payment on ports 50061-50063) and sagad on port 50051. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-postgres.sh
# sagad's saga log database; demo-participants creates its own (sagad_demo) when missing.
admin="postgres://postgres@127.0.0.1:5432/postgres"
if ! psql "$admin" -Atqc "SELECT 1 FROM pg_database WHERE datname = 'sagad'" | grep -q 1; then
  psql "$admin" -qc "CREATE DATABASE sagad"
fi

cargo build --release --locked --bins
target=${CARGO_TARGET_DIR:-target}/release

"$target/demo-participants" --service all &
participants=$!
trap 'kill "$participants" 2>/dev/null; wait "$participants" 2>/dev/null' EXIT
"$target/sagad" "$@"
