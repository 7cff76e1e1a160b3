#!/usr/bin/env bash
# Client-visible latency during a rolling upgrade vs steady state, measured
# with tally-bench (open loop) against a 3-node cluster of separate tallyd
# processes on loopback:
#   1. steady state: DURATION_S seconds on the old binary;
#   2. the same load while every node is rolled to the new binary (followers
#      first, the leader last: transfer-leader, SIGTERM, start the new
#      binary on the same data dir, wait until it caught up).
# Prints tally-bench's summary of both runs (p50/p99/max, rejected, unknown).
#
#   bench/rolling-upgrade.sh OLD_TALLYD NEW_TALLYD [RATE] [DURATION_S]
#
# tally-bench and tallyctl are taken from the new binary's directory. Data
# under a temp dir, removed at the end; every process started is stopped.
set -euo pipefail
old="$1"
new="$2"
rate="${3:-500}"
duration="${4:-40}"
bin="$(dirname "$new")"
dir="$(mktemp -d /var/tmp/tally-roll-XXXX)"
base=$((21000 + RANDOM % 5000))
declare -A pid
cleanup() {
  for id in "${!pid[@]}"; do kill -9 "${pid[$id]}" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
addr() { echo "127.0.0.1:$((base + $1))"; }
endpoints="$(addr 1),$(addr 2),$(addr 3)"
ctl() { "$bin/tallyctl" --endpoints "$endpoints" "$@"; }
start() { # id binary
  mkdir -p "$dir/n$1"
  "$2" run --node-id "$1" --cluster-id roll --listen "$(addr "$1")" --data-dir "$dir/n$1" \
    >>"$dir/n$1/tallyd.log" 2>&1 &
  pid[$1]=$!
}
wait_caught_up() { # id release
  for _ in $(seq 1 600); do
    st=$(ctl --json cluster status 2>/dev/null || true)
    if echo "$st" | python3 -c "
import json,sys
s=json.load(sys.stdin); n=[x for x in s['nodes'] if x['node_id']==$1]
sys.exit(0 if n and n[0]['version']=='$2' and n[0].get('lag',1)<=50 else 1)" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "node $1 did not catch up" >&2; return 1
}
for id in 1 2 3; do start "$id" "$old"; done
sleep 1
ctl cluster init --member "1=$(addr 1)" --member "2=$(addr 2)" --member "3=$(addr 3)"
sleep 2
old_release=$("$old" --version | awk '{print $2}')
new_release=$("$new" --version | awk '{print $2}')
bench() { "$bin/tally-bench" --endpoints "$endpoints" --workload deposit --mode open \
  --rate "$rate" --batch 1 --duration-s "$duration" "$@"; }
echo "== steady state on $old_release: $rate commands/s for $duration s"
bench
echo "== rolling $old_release -> $new_release under the same load"
bench >"$dir/roll.txt" 2>&1 &
bench_pid=$!
sleep 5
leader=$(ctl --json cluster status | python3 -c "import json,sys; print(json.load(sys.stdin)['leader_id'])")
for id in $(echo 1 2 3 | tr ' ' '\n' | grep -v "^$leader$") "$leader"; do
  now=$(ctl --json cluster status | python3 -c "import json,sys; print(json.load(sys.stdin)['leader_id'])")
  if [ "$now" = "$id" ]; then
    other=$(echo 1 2 3 | tr ' ' '\n' | grep -v "^$id$" | head -n 1)
    ctl cluster transfer-leader "$other" >/dev/null
  fi
  kill -TERM "${pid[$id]}"
  wait "${pid[$id]}" 2>/dev/null || true
  start "$id" "$new"
  wait_caught_up "$id" "$new_release"
  echo "node $id on $new_release at $(date +%T.%N | cut -c1-12)"
  sleep 3
done
wait "$bench_pid" || true
cat "$dir/roll.txt"
ctl cluster status | tail -n 1
