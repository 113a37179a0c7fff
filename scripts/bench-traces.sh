#!/usr/bin/env bash
# What trace export costs: saga-bench runs `purchase_plan` against sagad and the demo participants with span
# export off, then on (both processes exporting to the `otlp_sink` example, a stand-in collector),
# alternating ROUNDS times, each run on fresh databases after a `CHECKPOINT` and a short warm-up. Prints,
# per run, saga-bench's throughput and the CPU time per saga (utime + stime over the measured run, as
# saga-bench reads it) of the sagad process, of the demo-participants process and of PostgreSQL (every
# server process); saga-bench's wait for PostgreSQL statistics that follows is cut short, nothing here
# reads them. Then the medians, and the export's CPU per saga (sagad and participants, on minus off)
# against the CPU a saga costs with export off. PostgreSQL runs the same statements either way; its CPU
# per saga still moves, with the machine's speed between runs and with the contention export adds on the
# same cores (not counted in the estimate).
#
# With BENCH_TRACES_RATIO set (e.g. 0.1), each round also runs export on with that share of sagas traced
# (`OTEL_TRACES_SAMPLER=parentbased_traceidratio`, the participants following sagad's decision): mode
# "sampled".
#
# With BENCH_TRACES_BASELINE set to a directory holding another build's sagad, demo-participants and
# saga-bench (e.g. a copy of target/release made at an earlier commit), each round also runs that build with
# export on: mode "baseline", to measure a change to what export costs against the same runs.
#
# Last, the same share measured against PostgreSQL's CPU, which holds still when the machine's speed drifts.
#
# Usage: scripts/bench-traces.sh [SAGAS (default 1000)] [ROUNDS (default 4; even, so that each mode runs
# first as often as last)] [CONCURRENCY (default 32)]
set -euo pipefail
cd "$(dirname "$0")/.."

sagas=${1:-1000}
rounds=${2:-4}
concurrency=${3:-32}
ratio=${BENCH_TRACES_RATIO:-}
modes=(off on)
[ -n "$ratio" ] && modes+=(sampled)
baseline=${BENCH_TRACES_BASELINE:-}
[ -n "$baseline" ] && modes+=(baseline)

scripts/ensure-postgres.sh
cargo build --release --locked --bin sagad --bin demo-participants --bin saga-bench
cargo build --release --locked -p e2e-tests --example otlp_sink
bin=${CARGO_TARGET_DIR:-target}/release
admin="postgres://postgres@127.0.0.1:5432/postgres"
saga_log="postgres://postgres@127.0.0.1:5432/sagad_bench_traces"
demo_db="postgres://postgres@127.0.0.1:5432/sagad_bench_traces_demo"
services=(billing device payment withdrawal gateway app notification customer inventory sales)

work=$(mktemp -d)
pids=()
stop() {
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap stop EXIT

# Waits up to 30 s for file $1 to hold a line matching $2.
await() {
  for _ in $(seq 1 300); do
    if grep -q "$2" "$1"; then return 0; fi
    sleep 0.1
  done
  echo "bench-traces: no \"$2\" in $1" >&2
  exit 1
}

"$bin/examples/otlp_sink" 127.0.0.1:0 >"$work/sink.out" &
pids+=($!)
await "$work/sink.out" "listening on"
sink=$(sed -n 's/.*listening on //p' "$work/sink.out")

# One run with export $1 (off, on, sampled or baseline); appends "mode sagas/s sagad participants
# postgresql" (CPU in µs per saga) to $work/results.
run() {
  local mode=$1 otel=() bin=$bin
  case $mode in
    on) otel=(OTEL_EXPORTER_OTLP_ENDPOINT="$sink") ;;
    baseline) otel=(OTEL_EXPORTER_OTLP_ENDPOINT="$sink") bin=$baseline ;;
    sampled) otel=(OTEL_EXPORTER_OTLP_ENDPOINT="$sink" OTEL_TRACES_SAMPLER=parentbased_traceidratio
      OTEL_TRACES_SAMPLER_ARG="$ratio") ;;
  esac
  for db in sagad_bench_traces sagad_bench_traces_demo; do
    psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
    psql "$admin" -qc "CREATE DATABASE $db"
  done
  psql "$admin" -qc "CHECKPOINT"
  local addrs=()
  for service in "${services[@]}"; do addrs+=("--$service-addr" 127.0.0.1:0); done
  env "${otel[@]}" RUST_LOG=error DEMO_DATABASE_URL="$demo_db" \
    "$bin/demo-participants" --service all "${addrs[@]}" >"$work/demo.out" 2>"$work/demo.err" &
  local demo=$!
  pids+=("$demo")
  local participants=()
  for service in "${services[@]}"; do
    await "$work/demo.out" "$service listening on"
    participants+=("SAGAD_PARTICIPANTS__${service^^}=http://$(sed -n "s/^$service listening on //p" "$work/demo.out")")
  done
  env "${otel[@]}" "${participants[@]}" RUST_LOG=error SAGAD_DATABASE_URL="$saga_log" \
    SAGAD_GRPC_ADDR=127.0.0.1:0 SAGAD_METRICS_ADDR=127.0.0.1:0 SAGAD_DEFINITIONS_DIR=definitions \
    "$bin/sagad" >"$work/sagad.out" 2>"$work/sagad.err" &
  local sagad=$!
  pids+=("$sagad")
  await "$work/sagad.out" "listening on"
  local addr="http://$(sed -n 's/^sagad listening on //p' "$work/sagad.out")"
  "$bin/saga-bench" --addr "$addr" --database-url "$saga_log" --sagas 200 --concurrency 8 >/dev/null 2>&1
  "$bin/saga-bench" --addr "$addr" --database-url "$saga_log" --sagas "$sagas" \
    --concurrency "$concurrency" --sagad-pid "$sagad" --participant-pid "$demo" >"$work/bench.out" \
    2>/dev/null &
  local bench=$!
  # Its CPU report is printed once the last saga is terminal; what follows (a wait for PostgreSQL's
  # statistics, an idle sagad's background work) is not the sagas' cost.
  until grep -qs "^  saga-bench " "$work/bench.out"; do
    kill -0 "$bench" 2>/dev/null || { echo "bench-traces: saga-bench failed" >&2; exit 1; }
    sleep 0.1
  done
  kill -TERM "$bench"
  wait "$bench" || true
  cpu() { awk -v name="$1" '$1 == name && $3 == "us" {print $2}' "$work/bench.out"; }
  echo "$mode $(awk '/throughput/ {print $2}' "$work/bench.out") $(cpu sagad) $(cpu participants)" \
    "$(cpu PostgreSQL)" | tee -a "$work/results"
  kill -TERM "$sagad" "$demo"
  wait "$sagad" "$demo" || true
}

echo "mode sagas/s, then CPU µs per saga: sagad participants postgresql ($sagas sagas, $concurrency workers, purchase_plan)"
# Every other round runs the modes in reverse order: the first run of a round tends to be the fastest (by
# up to a fifth in sagas/s on the development machine), whatever its mode.
for round in $(seq 1 "$rounds"); do
  order=("${modes[@]}")
  if ((round % 2 == 0)); then
    order=()
    for ((i = ${#modes[@]} - 1; i >= 0; i--)); do order+=("${modes[i]}"); done
  fi
  for mode in "${order[@]}"; do run "$mode"; done
done
tail -1 "$work/sink.out"
# The median of the numbers on stdin, one per line: the mean of the middle two when there is an even number.
middle() { sort -n | awk '{v[NR] = $1} END {print (v[int((NR + 1) / 2)] + v[int(NR / 2) + 1]) / 2}'; }
median() { grep "^$1 " "$work/results" | awk "{print \$$2}" | middle; }
for mode in "${modes[@]}"; do
  echo "median $mode: $(median "$mode" 2) sagas/s; CPU per saga: sagad $(median "$mode" 3) µs," \
    "participants $(median "$mode" 4) µs, PostgreSQL $(median "$mode" 5) µs" \
    "(runs $(grep "^$mode " "$work/results" | awk '{print $5}' | sort -n | awk 'NR == 1 {lo = $1} END {print lo "–" $1}') µs)"
done
# What export adds to a saga's CPU, against what a saga costs with export off (sagad, participants and
# PostgreSQL): on two saturated cores, about the share of throughput it takes.
for mode in "${modes[@]:1}"; do
  awk -v on="$(median "$mode" 3) $(median "$mode" 4)" -v off="$(median off 3) $(median off 4) $(median off 5)" \
    -v mode="$mode" 'BEGIN {
      split(on, a); split(off, b)
      added = a[1] + a[2] - b[1] - b[2]
      printf "export (%s) adds %d µs of sagad and participant CPU per saga: %.1f %% of the %d µs a saga costs with export off\n",
        mode, added, 100 * added / (b[1] + b[2] + b[3]), b[1] + b[2] + b[3]
    }'
done
# The same, measured against PostgreSQL's CPU per saga: PostgreSQL runs the same statements in every mode
# and slows down with the machine, so (sagad + participants) ÷ PostgreSQL stays put when the machine's speed
# drifts between runs, where throughput and CPU in µs do not.
ratio() { grep "^$1 " "$work/results" | awk '{print ($3 + $4) / $5}' | middle; }
for mode in "${modes[@]:1}"; do
  awk -v on="$(ratio "$mode")" -v off="$(ratio off)" -v mode="$mode" 'BEGIN {
    printf "relative to PostgreSQL: sagad and participants spend %.3f of its CPU per saga with export off, %.3f %s: export adds %.1f %% to a saga'"'"'s CPU (sagad, participants and PostgreSQL)\n",
      off, on, mode, 100 * (on - off) / (1 + off)
  }'
done
