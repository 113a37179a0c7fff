#!/usr/bin/env bash
# The engine benchmark (BENCHMARKS.md). From a release build it starts, on fresh databases: the noop
# participant, the demo participants and one sagad; then runs saga-bench at 8, 32 and 128 workers for the
# 4-step `noop` saga (sagad and its saga log alone) and for `purchase_plan` (five barrier transactions
# at the demo participants). Each run prints sagas/s, p50/p90/p99, saga-log writes and PostgreSQL
# transactions per saga, and the CPU time per saga of sagad, PostgreSQL, the participants and the bench.
# Last, the memory bound: 10,000 sagas held in flight at once (sagad's max_in_flight), sagad's resident
# memory, and what one more start answers.
#
# Usage: scripts/bench.sh [SAGAS_PER_RUN (default 3000)] [CONCURRENCY ...]
#        SAGAD_METRICS_ADDR= scripts/bench.sh ...   (the same with sagad's metrics off)
#        BENCH_DB_PREFIX=name scripts/bench.sh ...  (databases name and name_demo; default sagad_bench)
# Run it on an otherwise idle machine: sagad's and the participants' CPU time is read by process id, but
# PostgreSQL's is every server process's (see crates/saga-bench/src/cpu.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

sagas=${1:-3000}
shift || true
levels=("$@")
[ ${#levels[@]} -gt 0 ] || levels=(8 32 128)

scripts/ensure-postgres.sh
cargo build --release --locked --bin sagad --bin demo-participants --bin saga-bench
bin=${CARGO_TARGET_DIR:-target}/release

admin="postgres://postgres@127.0.0.1:5432/postgres"
db_prefix=${BENCH_DB_PREFIX:-sagad_bench}
for db in "$db_prefix" "${db_prefix}_demo"; do
  psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
  psql "$admin" -qc "CREATE DATABASE $db"
done
saga_log="postgres://postgres@127.0.0.1:5432/$db_prefix"

work=$(mktemp -d)
pids=()
stop() {
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap stop EXIT

# sagad loads the shipped definitions and the benchmark's own.
mkdir "$work/definitions"
cp definitions/*.yaml crates/saga-bench/definitions/*.yaml "$work/definitions/"

# Starts "$@" in the background, its output in $work/$name.out; waits for its "listening on" line.
start() {
  local name=$1
  shift
  "$@" >"$work/$name.out" 2>"$work/$name.err" &
  pids+=($!)
  for _ in $(seq 1 300); do
    if grep -q "listening on" "$work/$name.out"; then return 0; fi
    sleep 0.1
  done
  echo "bench: $name did not start:" >&2
  cat "$work/$name.err" >&2
  exit 1
}
address() { grep "$1 listening on" "$work/$2.out" | head -1 | sed 's/.*listening on //'; }

start noop "$bin/saga-bench" noop-participant --listen 127.0.0.1:0
noop_pid=${pids[-1]}
start demo env DEMO_DATABASE_URL="postgres://postgres@127.0.0.1:5432/${db_prefix}_demo" RUST_LOG=error \
  "$bin/demo-participants" --service all \
  --billing-addr 127.0.0.1:0 --device-addr 127.0.0.1:0 --payment-addr 127.0.0.1:0 --withdrawal-addr 127.0.0.1:0
demo_pid=${pids[-1]}
for service in billing device payment withdrawal; do
  while ! grep -q "$service listening on" "$work/demo.out"; do sleep 0.1; done
done
# Metrics on a free port (the default 9464 may be taken); SAGAD_METRICS_ADDR= in the caller's environment
# turns them off, to measure what they cost.
start sagad env RUST_LOG=error SAGAD_DATABASE_URL="$saga_log" SAGAD_GRPC_ADDR=127.0.0.1:0 \
  SAGAD_METRICS_ADDR="${SAGAD_METRICS_ADDR-127.0.0.1:0}" \
  SAGAD_DEFINITIONS_DIR="$work/definitions" \
  SAGAD_PARTICIPANTS__NOOP="http://$(address noop noop)" \
  SAGAD_PARTICIPANTS__BILLING="http://$(address billing demo)" \
  SAGAD_PARTICIPANTS__DEVICE="http://$(address device demo)" \
  SAGAD_PARTICIPANTS__PAYMENT="http://$(address payment demo)" \
  SAGAD_PARTICIPANTS__WITHDRAWAL="http://$(address withdrawal demo)" \
  "$bin/sagad"
sagad_pid=${pids[-1]}
addr="http://$(address sagad sagad)"

run() {
  local saga_type=$1 payload=$2 concurrency=$3
  echo
  echo "=== $saga_type, $sagas sagas, $concurrency workers"
  "$bin/saga-bench" --addr "$addr" --database-url "$saga_log" --saga-type "$saga_type" \
    --payload "$payload" --sagas "$sagas" --concurrency "$concurrency" \
    --sagad-pid "$sagad_pid" --participant-pid "$noop_pid" --participant-pid "$demo_pid"
}

# A short warm-up, so connection pools and prepared statements exist before the first measured run.
"$bin/saga-bench" --addr "$addr" --database-url "$saga_log" --saga-type noop --payload '{}' \
  --sagas 200 --concurrency 8 >/dev/null 2>&1
for c in "${levels[@]}"; do run noop '{}' "$c"; done
for c in "${levels[@]}"; do run purchase_plan '{"userId":"bench","planId":"pro"}' "$c"; done

echo
echo "=== memory: 10000 noop sagas held in flight"
"$bin/saga-bench" hold --addr "$addr" --sagas 10000 --hold 10m --sagad-pid "$sagad_pid"
