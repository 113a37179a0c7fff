#!/usr/bin/env bash
# Runs the whole stack locally: PostgreSQL (started or installed if needed), the demo participants
# (billing, device, payment, withdrawal, gateway, app, notification, customer, inventory, sales on ports
# 50061-50070; the app service's package files under the system's temporary directory) and sagad on port
# 50051 (Prometheus metrics on 9464), from a release build (the first build takes a few minutes). Ctrl-C
# stops both. Extra arguments go to sagad.
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
"$target/sagad" "$@" &
sagad=$!
# Ctrl-C or SIGTERM stops both (each drains gracefully); so does either one exiting on its own.
trap 'kill -TERM "$sagad" "$participants" 2>/dev/null' INT TERM
wait -n "$sagad" "$participants" || true
kill -TERM "$sagad" "$participants" 2>/dev/null || true
wait
