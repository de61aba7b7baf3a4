#!/usr/bin/env bash
# perf-counts.sh [TOPICS]: runtime operations per publish, the relay against
# the actor floor (bench/floor actor), counted with uprobes rather than timed,
# so a noisy machine does not move them.
#
# For each server: a fresh redis-server, the server on a copy of its binary
# (so the load generator, which is the relay binary too, is not counted),
# `relay bench --subscribers 10 --topics TOPICS --publishers 32` against it,
# and `perf record -a` over 3 s of the run on one probe per runtime function
# below plus one on the server's publish handler. Each count is divided by
# the handler's: calls per publish. The probes slow both servers by about
# half; the counts per publish stay (two runs agree within a few percent).
#
# Needs root (uprobes), perf, redis-server, curl and Go. Every probe it adds is
# removed on exit. Servers listen on 127.0.0.1 only; each run is bounded
# (6 s of publishing, at most 400,000 messages).
set -euo pipefail
TOPICS=${1:-10}
REPO=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/bench-lib.sh
. "$REPO/scripts/bench-lib.sh"
WORK=$(mktemp -d /tmp/perf-counts.XXXXXX)
VALKEY_PORT=$(free_port) SERVER_PORT=$(free_port)
while [[ $SERVER_PORT == "$VALKEY_PORT" ]]; do SERVER_PORT=$(free_port); done

FUNCS=(mallocgc 'timer).modify' 'timer).stop' selectgo newproc1 gopark chansend chanrecv)

PIDS=() # what count started, stopped on exit even when a step fails
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	perf probe -q -d 'pcrelay:*' -d 'pcfloor:*' 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

(cd "$REPO" && go build -o "$WORK/relay" ./cmd/relay && go build -o "$WORK/floor" ./bench/floor)
cp "$WORK/relay" "$WORK/relay-server"

# probes GROUP BINARY ANCHOR: one probe per FUNCS entry and one on ANCHOR,
# each named GROUP_NAME (perf wants event names unique across groups).
probes() {
	local group=$1 bin=$2 anchor=$3 f name
	for f in "${FUNCS[@]}"; do
		name=$(tr -d ').*' <<<"$f")
		[[ $f == timer* ]] && f="(*$f"
		perf probe -q -x "$bin" -a "$group:${group}_$name=runtime.$f"
	done
	perf probe -q -x "$bin" -a "$group:${group}_anchor=$anchor"
}
probes pcrelay "$WORK/relay-server" 'github.com/pulsar-relay/relay/gateway.(*Server).handlePublish'
probes pcfloor "$WORK/floor" 'main.(*actorFloor).publish'

# count NAME GROUP SERVER-COMMAND...: one run; prints "name function calls/publish" lines.
count() {
	local name=$1 group=$2 vk srv bench
	shift 2
	rm -rf "$WORK/vk" && mkdir "$WORK/vk"
	redis-server --bind 127.0.0.1 --port $VALKEY_PORT --dir "$WORK/vk" --save '' \
		--appendonly yes --appendfsync everysec >"$WORK/vk.log" 2>&1 &
	vk=$!
	PIDS+=("$vk")
	wait_tcp $VALKEY_PORT "$vk" || { echo "perf-counts: redis-server did not start" >&2; return 1; }
	"$@" >"$WORK/$name.log" 2>&1 &
	srv=$!
	PIDS+=("$srv")
	wait_http $SERVER_PORT /health "$srv" || { echo "perf-counts: $name did not start: $(tail -n 1 "$WORK/$name.log")" >&2; return 1; }
	"$WORK/relay" bench --target relay --addr "127.0.0.1:$SERVER_PORT" --subscribers 10 --topics "$TOPICS" \
		--publishers 32 --messages 400000 --duration 6s --grace 5s --quiet --json "$WORK/$name.json" >/dev/null 2>&1 &
	bench=$!
	PIDS+=("$bench")
	sleep 2
	perf record -q -a -e "$group:*" -o "$WORK/$name.perf" -- sleep 3 >/dev/null 2>&1
	wait "$bench" || true
	stop_pid "$srv"
	stop_pid "$vk"
	perf script -i "$WORK/$name.perf" -F event 2>/dev/null | sort | uniq -c |
		awk -v n="$name" -v g="$group" '{sub(/:$/, "", $2); sub(/^[^:]*:/, "", $2); sub("^" g "_", "", $2); c[$2] = $1} END {
			for (k in c) if (k != "anchor" && c["anchor"] > 0) printf "%s %s %.2f\n", n, k, c[k] / c["anchor"] }'
}

{
	count relay pcrelay env RELAY_HTTP_ADDR=127.0.0.1:$SERVER_PORT RELAY_VALKEY_ADDR=127.0.0.1:$VALKEY_PORT \
		RELAY_LOG_LEVEL=warn "$WORK/relay-server" serve
	count "actor-floor" pcfloor "$WORK/floor" actor -addr 127.0.0.1:$SERVER_PORT -valkey 127.0.0.1:$VALKEY_PORT
} >"$WORK/counts.txt"

echo "Runtime calls per publish, $TOPICS topic(s), 32 publishers, 10 subscribers"
echo
echo "| function | relay | actor floor |"
echo "|---|---:|---:|"
awk '{v[$2, $1] = $3; f[$2] = 1} END {
	for (k in f) printf "| %s | %s | %s |\n", k, ((k, "relay") in v ? v[k, "relay"] : "0"), ((k, "actor-floor") in v ? v[k, "actor-floor"] : "0") }' \
	"$WORK/counts.txt" | sort
