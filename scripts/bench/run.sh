#!/usr/bin/env bash
# Runs the scenarios of BENCHMARKS.md (1–10) and leaves JSON reports in $OUT.
# Usage: scripts/bench/run.sh [all | 1 2 3 4 5 6 7 8 9 10 ...]   (default: 1 7 3)
#   `all` takes about 30 minutes on 2 cores: 4, 5 and 6 preload 1M / 200k / 500k bindings.
#   SIZE=small runs every scenario at a size that only checks it runs and reports (a few
#   minutes for `all`; CI does this as a smoke test). Its figures mean nothing.
# Needs: cargo build --release (or XPOOL=path/to/xpool); redis-server for scenario 7 (apt-get
# install -y redis-server; without it, scenario 7 is skipped with a message); etcd for scenario
# 10 (apt-get install -y etcd-server, or ETCD=path/to/etcd; without it, skipped likewise).
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${XPOOL:-./target/release/xpool}
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
export XPOOL_LOG=warn NO_COLOR=1

small() { [ "${SIZE:-full}" = small ]; }
# Measured seconds and warm-up: $1 at full size, a second or two at SIZE=small.
secs() { if small; then echo 2; else echo "$1"; fi; }
warm() { if small; then echo 0.5; else echo "${1:-2}"; fi; }

machine() {
  echo "nproc: $(nproc)"; free -h | sed -n 2p
  grep -m1 'model name' /proc/cpuinfo; echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
}

s1() {
  # Overhead: AXB binds through the daemon vs the same binds straight to the simulator.
  for t in grpc direct; do
    $B bench --spawn --target $t --mode axb --concurrency 32 --duration "$(secs 15)" \
      --warmup "$(warm)" --numbers 100 --label "s1 $t peak" --json "$OUT/s1-$t-peak.json"
  done
  # Latency at about half of the daemon's peak, both paths at the same offered rate.
  local half=${HALF_RATE:-450}
  for t in grpc direct; do
    $B bench --spawn --target $t --mode axb --concurrency 32 --duration "$(secs 15)" \
      --warmup "$(warm)" --numbers 100 --rate "$half" --label "s1 $t at $half/s" \
      --json "$OUT/s1-$t-$half.json"
  done
}

s2() {
  # Rate-limit fidelity: platform at 500/s with 30 ms latency, daemon app at 500/s, 800/s offered.
  local clients=1000
  if small; then clients=100; fi
  $B bench --spawn --target grpc --mode axb --concurrency $clients --duration "$(secs 60)" \
    --warmup "$(warm)" --numbers 100 --rate 800 --deadline-ms 1000 --app-rate 500 --sim-latency-ms 30 \
    --sim-rps-limit 500 --label "s2" --json "$OUT/s2.json"
}

s3() {
  # The allocator alone (criterion). SIZE=small runs each benchmark once, as a test.
  if small; then
    cargo test --bench allocator 2>&1 | tee "$OUT/s3-criterion.txt" | grep -c Success
  else
    cargo bench --bench allocator 2>&1 | tee "$OUT/s3-criterion.txt" | grep 'time:'
  fi
}

s4() {
  # Memory and start-up: X mode (local only), 100k numbers, 1M live bindings preloaded through
  # gRPC, 30 s of Bind/Get on top (RSS while serving), then SIGTERM and a restart over the same
  # store: time from spawn to the first successful Bind, and RSS after it. The Bind/Get load is
  # offered at a fixed 6,667 calls/s, so that it adds 100k Binds (1.1M live, the target's size)
  # on any machine that keeps up; closed loop, a fast machine added 300k.
  local numbers=100000 preload=1000000 rate=6667
  if small; then numbers=200 preload=2000 rate=0; fi
  $B bench --spawn --target grpc --mode x --numbers $numbers --max-bindings-per-x 5000 \
    --preload $preload --concurrency 32 --duration "$(secs 30)" --warmup "$(warm)" \
    --rate $rate --mix bind=50,get=50 --restart --label "s4" --json "$OUT/s4.json"
}

s5() {
  # Expiry burst: AXB against the simulator (no limits), 200k bindings preloaded in area 010 with
  # one shared deadline, 300 Binds/s in area 011 from 10 s before it to 50 s after; the expiry
  # marks them EXPIRED after the skew grace (5 s, the daemon's default) and unbinds each upstream
  # (defensive_unbind, the default). The watch waits up to 15 min more for the last one to leave.
  # --preload-expire-in must cover the preload (200k at 650-1900/s) plus 12 s, or the run stops.
  local preload=200000 expire_in=${EXPIRE_IN:-240} before=10 duration=60
  # Small: a margin for a debug build on a busy CI machine (2,000 preloads took 11 s there,
  # past a 10 s deadline; the run stops when the preload outlasts it, which a smoke must not).
  if small; then preload=500 expire_in=25 before=2 duration=8; fi
  $B bench --spawn --target grpc --mode axb --numbers 200 --areas 2 --max-bindings-per-x 5000 \
    --preload $preload --preload-expire-in $expire_in --before-deadline $before \
    --duration $duration --skew-grace-seconds "${SKEW_GRACE:-5}" --warmup "$(warm)" \
    --concurrency 32 --rate 300 --label "s5" --json "$OUT/s5.json"
}

s6() {
  # Reconciliation: AXB, 10k numbers × 50 bindings (500k), bound through the daemon so the
  # simulator and the store agree, then one timed full reconcile and the daemon's RSS around it.
  local numbers=10000 preload=500000
  if small; then numbers=20 preload=1000; fi
  $B bench --spawn --target grpc --mode axb --numbers $numbers --max-bindings-per-x 50 \
    --preload $preload --concurrency 32 --duration 0 --reconcile --label "s6" \
    --json "$OUT/s6.json"
}

s7() {
  # xpool X mode (local only, durable on ack) vs the Redis Lua allocator (AOF, fsync always).
  if ! command -v "${REDIS_SERVER:-redis-server}" >/dev/null; then
    echo "scenario 7 skipped: no redis-server (apt-get install -y redis-server)"
    return 0
  fi
  for t in grpc redis; do
    $B bench --spawn --target $t --mode x --concurrency 32 --duration "$(secs 15)" \
      --warmup "$(warm)" --redis-server "${REDIS_SERVER:-redis-server}" \
      --numbers 1000 --parties 20000 --mix bind=70,unbind=30 --label "s7 $t" \
      --json "$OUT/s7-$t.json"
  done
}

s8() {
  # X-mode routing: 1,000 Block callins/s through the push receiver while 500 Binds/s run (X
  # mode, 2,000 numbers, fresh parties), against the same Binds without the callins.
  for callins in 0 1000; do
    $B bench --spawn --target grpc --mode x --concurrency 32 --duration "$(secs 20)" \
      --warmup "$(warm)" \
      --numbers 2000 --rate 500 --mix bind=100 --callins $callins --callin-targets 1000 \
      --label "s8 callins=$callins" --json "$OUT/s8-$callins.json"
  done
}

s9() {
  # What a Bind costs beside the gRPC hop alone: the same lean client (one HTTP/2 connection,
  # 32 calls in flight) sends Health/Check, then X-mode Binds with fresh parties, then the
  # Redis peer's allocation (redis-benchmark's shape: 32 connections) for its server cost.
  for mix in health=100 bind=100; do
    $B bench --spawn --target grpc --mode x --concurrency 32 --connections 1 \
      --duration "$(secs 15)" --warmup "$(warm)" --numbers 2000 --mix "$mix" \
      --label "s9 ${mix%=*}" --json "$OUT/s9-${mix%=*}.json"
  done
  if command -v "${REDIS_SERVER:-redis-server}" >/dev/null; then
    $B bench --spawn --target redis --mode x --concurrency 32 --duration "$(secs 15)" \
      --warmup "$(warm)" --numbers 2000 --redis-server "${REDIS_SERVER:-redis-server}" \
      --label "s9 redis" --json "$OUT/s9-redis.json"
  fi
}

s10() {
  # Cluster mode (issue 14): X-mode Binds (local only, no platform: the write path alone) from
  # 32 clients through 3 replicas on one 3-member etcd cluster, the clients' connections spread
  # over the replicas, against one daemon at the same concurrency; then, with the load on, the
  # app's leader SIGKILLed 10 times: kill → first successful Bind through a surviving replica,
  # the killed replica restarted (same store) and back in the cluster before the next kill.
  # The replicas' lease TTL is the daemon's default, 5 s (LEASE_TTL to change it).
  if ! command -v "${ETCD:-etcd}" >/dev/null; then
    echo "scenario 10: etcd not installed (apt-get install -y etcd-server): skipping"
    return 0
  fi
  local failovers=10 ttl=${LEASE_TTL:-5}
  if small; then failovers=2 ttl=${LEASE_TTL:-2}; fi
  $B bench --spawn --target grpc --mode x --concurrency 32 --duration "$(secs 20)" \
    --warmup "$(warm)" --numbers 1000 --label "s10 single node" --json "$OUT/s10-single.json"
  $B bench --spawn --target grpc --mode x --concurrency 32 --duration "$(secs 20)" \
    --warmup "$(warm)" --numbers 1000 --cluster 3 --etcd "${ETCD:-etcd}" --lease-ttl "$ttl" \
    --failovers $failovers --label "s10 cluster" --json "$OUT/s10-cluster.json"
}

machine
scenarios="${*:-1 7 3}"
if [ "$scenarios" = all ]; then scenarios="1 2 3 4 5 6 7 8 9 10"; fi
for one in $scenarios; do
  echo "== scenario $one ($(date -u +%H:%M:%S), $(machine | tail -1))"
  "s$one"
done
