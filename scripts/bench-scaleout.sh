#!/usr/bin/env bash
# bench-scaleout.sh: `relay bench` against 1, 2 and 3 relay instances
# sharing one Valkey-compatible server (subscribers and publishers spread
# over the instances with --addr a,b,c) and Centrifugo with its Redis engine
# on 1 and 2 nodes in the same loop, and prints a Markdown section
# (deliveries/s, latency p50/p99, losses): save it as bench/SCALEOUT.md, which
# make bench-compare carries into BENCHMARKS.md.
#
# Every server listens on 127.0.0.1 and is stopped on exit. Bounded: each
# run publishes for at most 15 s; the script takes about RUNS x 5 x 25 s.
#
# Environment:
#   BENCH_RUNS=3        runs per case (the table shows medians)
#   BENCH_ARGS=...      relay bench arguments of every run (default below)
#   BENCH_KEEP=1        keep the temp dir (binary, logs, JSON reports)
#   BENCH_CENTRIFUGO=0  leave Centrifugo out
#   CENTRIFUGO_BIN=...  a Centrifugo binary already built (default: go install)
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${BENCH_RUNS:-3}
ARGS=${BENCH_ARGS:---subscribers 1500 --topics 10 --publishers 8 --rate 500 --messages 6000 --duration 15s --grace 5s}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-scaleout.XXXXXX")
PIDS=()

log() { printf '[bench-scaleout] %s\n' "$*" >&2; }

# stop_pid and centrifugo_config
. "$REPO/scripts/bench-lib.sh"

cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
	if [[ ${BENCH_KEEP:-0} == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

wait_http() {
	local url=$1 i
	for i in $(seq 1 200); do
		curl -fs "$url" >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	log "no answer from $url"
	return 1
}

VALKEY=$(command -v valkey-server || command -v redis-server)
CLI=$(command -v valkey-cli || command -v redis-cli)
log "building the relay"
(cd "$REPO" && go build -o "$WORK/relay" ./cmd/relay)

# Centrifugo with its Redis engine on 1 and 2 nodes runs in the same loop
# (BENCH_CENTRIFUGO=0 leaves it out; CENTRIFUGO_BIN names a binary already
# built, otherwise it is built with go install).
CF_VERSION=v6.9.1
CF=""
if [[ ${BENCH_CENTRIFUGO:-1} == 1 ]]; then
	if [[ -n ${CENTRIFUGO_BIN:-} ]]; then
		CF=$CENTRIFUGO_BIN
	else
		log "installing Centrifugo $CF_VERSION (go install)"
		(cd "$WORK" && GOBIN="$WORK/bin" go install "github.com/centrifugal/centrifugo/v6@$CF_VERSION") >"$WORK/centrifugo-install.log" 2>&1
		CF=$WORK/bin/centrifugo
	fi
fi

VPORT=$(free_port)
VALKEY_PORT=$VPORT # centrifugo_config
mkdir -p "$WORK/valkey"
"$VALKEY" --bind 127.0.0.1 --port "$VPORT" --save '' --appendonly yes --appendfsync everysec --dir "$WORK/valkey" >"$WORK/valkey.log" 2>&1 &
VPID=$!
PIDS+=("$VPID")
for i in $(seq 1 100); do "$CLI" -p "$VPORT" ping >/dev/null 2>&1 && break; sleep 0.05; done

# start_relays N: N relay instances on the Valkey; sets ADDRS and SPIDS.
start_relays() {
	local n=$1 i port
	ADDRS=() SPIDS=()
	for i in $(seq 1 "$n"); do
		port=$(free_port)
		RELAY_HTTP_ADDR=127.0.0.1:$port RELAY_VALKEY_ADDR=127.0.0.1:$VPORT RELAY_LOG_LEVEL=warn RELAY_MAX_CONNECTIONS=20000 RELAY_WS_UPGRADE_RATE=100000 RELAY_RATE_CONNECTIONS=0 RELAY_RATE_SUBSCRIPTIONS=0 \
			"$WORK/relay" serve >"$WORK/relay-$run-$n-$i.log" 2>&1 &
		SPIDS+=("$!")
		PIDS+=("$!")
		ADDRS+=("127.0.0.1:$port")
	done
	for a in "${ADDRS[@]}"; do wait_http "http://$a/ready"; done
}

# start_centrifugos N: N Centrifugo nodes on the same Valkey (its Redis
# engine, history on every channel as the relay keeps every message); sets
# ADDRS and SPIDS.
start_centrifugos() {
	local n=$1 i port
	ADDRS=() SPIDS=()
	for i in $(seq 1 "$n"); do
		port=$(free_port)
		centrifugo_config valkey "$port" "$WORK/centrifugo-$i.json"
		"$CF" -c "$WORK/centrifugo-$i.json" >"$WORK/centrifugo-$run-$n-$i.log" 2>&1 &
		SPIDS+=("$!")
		PIDS+=("$!")
		ADDRS+=("127.0.0.1:$port")
	done
	for a in "${ADDRS[@]}"; do wait_http "http://$a/health"; done
}

# run_case TARGET N: one run on freshly started servers and an emptied store.
run_case() {
	local target=$1 n=$2 extra=() list pid
	"$CLI" -p "$VPORT" flushall >/dev/null
	if [[ $target == relay ]]; then start_relays "$n"; else start_centrifugos "$n"; extra=(--api-key bench-api-key); fi
	list=$(IFS=,; echo "${ADDRS[*]}")
	log "run $run: $target, $n instance(s) at $list"
	# shellcheck disable=SC2086
	"$WORK/relay" bench --target "$target" --addr "$list" $ARGS "${extra[@]}" --quiet --label "scaleout-$target-$n" \
		--json "$WORK/$target-$n-$run.json" >/dev/null || log "run $run: $target with $n instance(s) failed"
	for pid in "${SPIDS[@]}"; do stop_pid "$pid"; done
}

# The order alternates every run so that neither system always runs first
# (or last) on a machine whose load drifts.
for run in $(seq 1 "$RUNS"); do
	cases=("relay 1" "centrifugo 1" "relay 2" "centrifugo 2" "relay 3")
	if ((run % 2 == 0)); then cases=("centrifugo 1" "relay 1" "centrifugo 2" "relay 2" "relay 3"); fi
	[[ -z $CF ]] && cases=("relay 1" "relay 2" "relay 3")
	for c in "${cases[@]}"; do
		# shellcheck disable=SC2086
		run_case $c
	done
done

CFV=""
[[ -n $CF ]] && CFV="Centrifugo $CF_VERSION"
python3 - "$WORK" "$RUNS" "$ARGS" "$CFV" <<'PY'
import json, statistics, sys, glob, os
work, runs, args, cfv = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
print("## Scale-out: 1, 2 and 3 relay instances on one Valkey, and Centrifugo with its Redis engine\n")
print("Generated by `scripts/bench-scaleout.sh` (`relay bench --target relay|centrifugo --addr a,b,c " + args + "`): subscribers and publishes spread over the instances in turn, every instance on one Valkey-compatible server (AOF everysec), all on this 2-core machine with the load generator. Centrifugo (" + (cfv or "not run") + ") uses its Redis engine on the same server with history on every channel. Medians of %d runs per case, the cases alternating within each run; each run on freshly started servers and an emptied store.\n" % runs)
print("| system | instances | deliveries/s | latency p50 ms | latency p99 ms | latency max ms | publishes/s | lost | duplicated | out of order | clean runs |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for target, counts in (("relay", (1, 2, 3)), ("centrifugo", (1, 2))):
    for n in counts:
        reps = []
        for f in sorted(glob.glob(os.path.join(work, "%s-%d-*.json" % (target, n)))):
            try:
                reps.append(json.load(open(f)))
            except Exception:
                pass
        if not reps:
            print("| %s | %d | no run | | | | | | | | |" % (target, n))
            continue
        med = lambda k: statistics.median(r.get(k, 0) for r in reps)
        clean = sum(1 for r in reps if r.get("clean"))
        print("| %s | %d | %.0f | %.2f | %.2f | %.1f | %.0f | %d | %d | %d | %d/%d |" % (
            target, n, med("deliveries_per_s"), med("latency_p50_ms"), med("latency_p99_ms"), med("latency_max_ms"),
            med("publishes_per_s"), med("lost"), med("duplicated"), med("out_of_order"), clean, len(reps)))
print("\nLoad average at the end: " + open("/proc/loadavg").read().split(" ")[0] + " (1 min).")
PY
