#!/usr/bin/env bash
# Client-visible latency during a rolling upgrade vs steady state, measured
# with tally-bench (open loop) against a 3-node cluster of separate tallyd
# processes on loopback:
#   1. steady state: DURATION_S seconds on the old binary;
#   2. the same load while `tallyctl cluster upgrade --apply` rolls every
#      node to the new binary (followers first, the leader last:
#      transfer-leader, then the restart hook below: SIGTERM, start the new
#      binary on the same data dir; tallyctl waits until it caught up).
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
cleanup() {
  for f in "$dir"/n*/pid; do
    if [ -f "$f" ]; then kill -9 "$(cat "$f")" 2>/dev/null || true; fi
  done
  rm -rf "$dir"
}
trap cleanup EXIT
addr() { echo "127.0.0.1:$((base + $1))"; }
endpoints="$(addr 1),$(addr 2),$(addr 3)"
ctl() { "$bin/tallyctl" --endpoints "$endpoints" "$@"; }
for id in 1 2 3; do
  mkdir -p "$dir/n$id"
  "$old" run --insecure --node-id "$id" --cluster-id roll --listen "$(addr "$id")" --data-dir "$dir/n$id" \
    >>"$dir/n$id/tallyd.log" 2>&1 &
  echo $! >"$dir/n$id/pid"
done
# The restart hook `tallyctl cluster upgrade --apply` runs per node.
{
  echo '#!/bin/sh'
  echo 'set -e'
  echo "dir='$dir'; new='$new'"
  echo 'id=$TALLY_NODE_ID; pid=$(cat "$dir/n$id/pid")'
  echo 'kill -TERM "$pid"'
  echo 'while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done'
  echo 'nohup "$new" run --insecure --node-id "$id" --cluster-id roll --listen "$TALLY_NODE_ADDR" \'
  echo '  --data-dir "$dir/n$id" >>"$dir/n$id/tallyd.log" 2>&1 </dev/null &'
  echo 'echo $! >"$dir/n$id/pid"'
} >"$dir/hook.sh"
chmod +x "$dir/hook.sh"
sleep 1
ctl cluster init --member "1=$(addr 1)" --member "2=$(addr 2)" --member "3=$(addr 3)"
sleep 2
new_release=$("$new" --version | awk '{print $2}')
bench() {
  "$bin/tally-bench" --endpoints "$endpoints" --workload deposit --mode open \
    --rate "$rate" --batch 1 --duration-s "$duration" "$@"
}
echo "== steady state on $("$old" --version): $rate commands/s for $duration s"
bench
echo "== rolling to $new_release under the same load (tallyctl cluster upgrade --apply)"
bench >"$dir/roll.txt" 2>&1 &
bench_pid=$!
sleep 8
ctl cluster upgrade --plan --release "$new_release"
time ctl cluster upgrade --apply --release "$new_release" --restart-hook "$dir/hook.sh"
wait "$bench_pid" || true
cat "$dir/roll.txt"
ctl cluster status | tail -n 1
