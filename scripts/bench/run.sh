#!/usr/bin/env bash
# Runs the measured scenarios of BENCHMARKS.md (1, 2, 3, 7) and leaves JSON reports in $OUT.
# Usage: scripts/bench/run.sh [1|2|3|7 ...]   (default: 1 7 3; 2 takes a minute more)
# Needs: cargo build --release; redis-server for scenario 7 (apt-get install -y redis-server).
set -euo pipefail
cd "$(dirname "$0")/../.."
B=./target/release/xpool
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
export XPOOL_LOG=warn NO_COLOR=1

machine() {
  echo "nproc: $(nproc)"; free -h | sed -n 2p
  grep -m1 'model name' /proc/cpuinfo; echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
}

s1() {
  # Overhead: AXB binds through the daemon vs the same binds straight to the simulator.
  for t in grpc direct; do
    $B bench --spawn --target $t --mode axb --concurrency 32 --duration 15 --warmup 2 \
      --numbers 100 --label "s1 $t peak" --json "$OUT/s1-$t-peak.json"
  done
  # Latency at about half of the daemon's peak, both paths at the same offered rate.
  local half=${HALF_RATE:-450}
  for t in grpc direct; do
    $B bench --spawn --target $t --mode axb --concurrency 32 --duration 15 --warmup 2 \
      --numbers 100 --rate "$half" --label "s1 $t at $half/s" --json "$OUT/s1-$t-$half.json"
  done
}

s2() {
  # Rate-limit fidelity: platform at 500/s with 30 ms latency, daemon app at 500/s, 800/s offered.
  $B bench --spawn --target grpc --mode axb --concurrency 1000 --duration 60 --warmup 2 \
    --numbers 100 --rate 800 --deadline-ms 1000 --app-rate 500 --sim-latency-ms 30 \
    --sim-rps-limit 500 --label "s2" --json "$OUT/s2.json"
}

s3() {
  cargo bench --bench allocator 2>&1 | tee "$OUT/s3-criterion.txt" | grep 'time:'
}

s7() {
  # xpool X mode (local only, durable on ack) vs the Redis Lua allocator (AOF, fsync always).
  for t in grpc redis; do
    $B bench --spawn --target $t --mode x --concurrency 32 --duration 15 --warmup 2 \
      --numbers 1000 --parties 20000 --mix bind=70,unbind=30 --label "s7 $t" \
      --json "$OUT/s7-$t.json"
  done
}

machine
for s in "${@:-1 7 3}"; do for one in $s; do machine | tail -1; "s$one"; done; done
