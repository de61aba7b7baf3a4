#!/usr/bin/env bash
# bench-floor.sh: this machine's floors next to the relay, in one run.
#
#   1. HTTP ingest: a bare net/http handler (bench/floor http) and the relay
#      (`relay serve`, memory store), each under `wrk -t1 -c32` posting
#      relay-sized publishes (scripts/wrk-publish.lua), ROUNDS times
#      alternating; server CPU-us per request from /proc/PID/stat
#      (utime+stime) deltas around wrk.
#      The bare handler runs twice per round: as net/http's defaults have it,
#      the floor the targets use, and with the relay's default server
#      timeouts (floor http -timeouts), which is what net/http's per-request
#      deadlines cost apart from the relay's code (FLOOR_SKIP_TIMEOUTS=1: not).
#   2. Fan-out writes: one loop writing a 180 B WebSocket frame to 1,000
#      loopback TCP connections at 100 rounds/s and flat out (bench/floor ws),
#      CPU-us per write.
#
# Prints a Markdown section on stdout (medians; every run on stderr).
# Environment: FLOOR_ROUNDS=3, FLOOR_SECONDS=8 (wrk duration), FLOOR_TOPICS=1,
# FLOOR_RELAY_ENV="RELAY_X=y ..." (extra settings for the relay),
# FLOOR_RELAY_BINS="name=path ..." (measure these relay builds, alternating,
# instead of one built from this checkout: before/after figures),
# FLOOR_CENTRIFUGO_BIN=path (also measure Centrifugo's HTTP API publish,
# memory engine with history, configured as bench-compare.sh does),
# FLOOR_SKIP_RELAY=1, FLOOR_SKIP_WS=1, FLOOR_SKIP_TIMEOUTS=1, FLOOR_PROFILE_DIR=dir (see below). Bounded: about
# ROUNDS*3*(SECONDS+3) + 20 s.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${FLOOR_ROUNDS:-3}
SECS=${FLOOR_SECONDS:-8}
TOPICS=${FLOOR_TOPICS:-1}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-floor.XXXXXX")
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT

log() { printf '[bench-floor] %s\n' "$*" >&2; }
command -v wrk >/dev/null || { echo "bench-floor: wrk is required (apt-get install -y wrk)" >&2; exit 1; }

(cd "$REPO" && go build -o "$WORK/floor" ./bench/floor)
declare -A RELAYS=()
RELAY_NAMES=()
if [[ -n ${FLOOR_RELAY_BINS:-} ]]; then
	for nb in $FLOOR_RELAY_BINS; do RELAYS[${nb%%=*}]=${nb#*=}; RELAY_NAMES+=("${nb%%=*}"); done
elif [[ ${FLOOR_SKIP_RELAY:-0} != 1 ]]; then
	(cd "$REPO" && go build -o "$WORK/relay" ./cmd/relay)
	RELAYS[relay]=$WORK/relay
	RELAY_NAMES=(relay)
fi

cpu_ticks() { awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$1/stat"; }

free_port() {
	local p
	for _ in $(seq 1 200); do
		p=$((21000 + RANDOM % 8000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
	done
	return 1
}

wait_port() {
	for _ in $(seq 1 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# start_relay NAME PORT: start relay build NAME on PORT in the background
# (memory store, FLOOR_RELAY_ENV); $! is its pid.
start_relay() {
	env RELAY_HTTP_ADDR="127.0.0.1:$2" RELAY_LOG_LEVEL=warn ${FLOOR_RELAY_ENV:-} "${RELAYS[$1]}" serve >"$WORK/relay.log" 2>&1 &
}

# wrk_run NAME PID PORT [TARGET]: one wrk run; prints "NAME req/s cpu-us/req non2xx".
wrk_run() {
	local name=$1 pid=$2 port=$3 target=${4:-relay}
	# warm-up (connections, topic actor, caches), not counted
	wrk -t1 -c32 -d1s -s "$REPO/scripts/wrk-publish.lua" "http://127.0.0.1:$port" -- "$TOPICS" "" "$target" >/dev/null 2>&1 || true
	local c0 c1 out
	c0=$(cpu_ticks "$pid")
	out=$(wrk -t1 -c32 -d"${SECS}s" -s "$REPO/scripts/wrk-publish.lua" "http://127.0.0.1:$port" -- "$TOPICS" "" "$target")
	c1=$(cpu_ticks "$pid")
	local reqs rps bad
	reqs=$(awk '/requests in/ {print $1}' <<<"$out")
	rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
	bad=$(awk '/Non-2xx/ {print $5}' <<<"$out")
	awk -v n="$name" -v r="$rps" -v q="$reqs" -v t=$((c1 - c0)) -v b="${bad:-0}" \
		'BEGIN {printf "%s %.0f %.2f %d\n", n, r, t * 10000 / q, b}'
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

: >"$WORK/http"
if [[ ${FLOOR_SKIP_HTTP:-0} != 1 ]]; then
	for r in $(seq 1 "$ROUNDS"); do
		CF=()
		[[ -n ${FLOOR_CENTRIFUGO_BIN:-} ]] && CF=(centrifugo)
		TMO=(floor-timeouts)
		[[ ${FLOOR_SKIP_TIMEOUTS:-0} == 1 ]] && TMO=()
		for target in floor "${TMO[@]}" "${RELAY_NAMES[@]}" "${CF[@]}"; do
			port=$(free_port)
			if [[ $target == floor ]]; then
				"$WORK/floor" http -addr "127.0.0.1:$port" >/dev/null &
			elif [[ $target == floor-timeouts ]]; then
				"$WORK/floor" http -timeouts -addr "127.0.0.1:$port" >/dev/null &
			elif [[ $target == centrifugo ]]; then
				cat >"$WORK/cf.json" <<CFEOF
{"http_server": {"address": "127.0.0.1", "port": $port}, "client": {"insecure": true},
 "http_api": {"key": "bench-api-key"}, "engine": {"type": "memory"},
 "channel": {"without_namespace": {"history_size": 1000000, "history_ttl": "24h"}},
 "usage_stats": {"disabled": true}, "log": {"level": "warn"}}
CFEOF
				"$FLOOR_CENTRIFUGO_BIN" -c "$WORK/cf.json" >"$WORK/relay.log" 2>&1 &
			else
				start_relay "$target" "$port"
			fi
			pid=$!
			PIDS+=("$pid")
			wait_port "$port" || { log "$target did not start"; cat "$WORK/relay.log" >&2; exit 1; }
			line=$(wrk_run "$target" "$pid" "$port" "$([[ $target == centrifugo ]] && echo centrifugo || echo relay)")
			log "round $r: $line (name req/s cpu-us/req non-201)"
			echo "$line" >>"$WORK/http"
			kill "$pid"; wait "$pid" 2>/dev/null || true
		done
	done
fi

# With FLOOR_PROFILE_DIR set (bench-compare's profile section): one more
# wrk run of the first relay under `perf record`, after the measured rounds
# (perf's own cost stays out of the figures), split by owner with
# scripts/perf-owners.py into DIR/http-ingest.relay.json, and the medians
# "floor relay" CPU µs/request into DIR/http-ingest.cpu (scripts/bench-bounds.py).
if [[ -n ${FLOOR_PROFILE_DIR:-} && -s $WORK/http && ${#RELAY_NAMES[@]} -gt 0 ]] && command -v perf >/dev/null; then
	name=${RELAY_NAMES[0]}
	port=$(free_port)
	start_relay "$name" "$port"
	pid=$!
	PIDS+=("$pid")
	if wait_port "$port"; then
		wrk -t1 -c32 -d"$((SECS + 2))s" -s "$REPO/scripts/wrk-publish.lua" "http://127.0.0.1:$port" -- "$TOPICS" "" relay >/dev/null 2>&1 &
		wpid=$!
		sleep 1
		timeout $((SECS + 20)) perf record -F 499 -g -p "$pid" -o "$WORK/http.perf" -- sleep "$SECS" >/dev/null 2>&1 || true
		wait "$wpid" || true
		perf report -i "$WORK/http.perf" --stdio --no-children --sort symbol -g none >"$WORK/http.self" 2>/dev/null &&
			python3 "$REPO/scripts/perf-owners.py" "$WORK/http.self" --own github.com/pulsar-relay/relay/ >"$FLOOR_PROFILE_DIR/http-ingest.relay.json" ||
			rm -f "$FLOOR_PROFILE_DIR/http-ingest.relay.json"
		echo "$(awk '$1=="floor" {print $3}' "$WORK/http" | median) $(awk -v t="$name" '$1==t {print $3}' "$WORK/http" | median)" >"$FLOOR_PROFILE_DIR/http-ingest.cpu"
	fi
	kill "$pid"; wait "$pid" 2>/dev/null || true
fi

load=$(cut -d' ' -f1-3 /proc/loadavg)
echo "### Floors (scripts/bench-floor.sh, $(date -u +%Y-%m-%dT%H:%MZ), load $load)"
echo
if [[ -s $WORK/http ]]; then
	echo "HTTP ingest, \`wrk -t1 -c32 -d${SECS}s\`, ${TOPICS} topic(s), medians of $ROUNDS alternating runs:"
	echo
	echo "| server | req/s | server CPU µs/request | non-2xx | CPU vs floor |"
	echo "|---|---:|---:|---:|---:|"
	fcpu=$(awk '$1=="floor" {print $3}' "$WORK/http" | median)
	for t in floor floor-timeouts "${RELAY_NAMES[@]}" centrifugo; do
		grep -q "^$t " "$WORK/http" || continue
		rps=$(awk -v t=$t '$1==t {print $2}' "$WORK/http" | median)
		cpu=$(awk -v t=$t '$1==t {print $3}' "$WORK/http" | median)
		bad=$(awk -v t=$t '$1==t {s+=$4} END {print s+0}' "$WORK/http")
		awk -v t=$t -v r="$rps" -v c="$cpu" -v f="$fcpu" -v b="$bad" \
			'BEGIN {printf "| %s | %.0f | %.2f | %d | %.2fx |\n", (t=="floor" ? "bare net/http (floor)" : (t=="floor-timeouts" ? "bare net/http with the relay'"'"'s server timeouts" : (t=="centrifugo" ? "Centrifugo, memory engine" : "relay (" t "), memory store"))), r, c, b, c / f}'
	done
	echo
fi
if [[ ${FLOOR_SKIP_WS:-0} != 1 ]]; then
	echo "Fan-out write floor: one loop, a 180 B WebSocket frame to each of 1,000 loopback TCP connections:"
	echo
	echo '```'
	"$WORK/floor" ws -conns 1000 -rate 100 -duration 5s
	"$WORK/floor" ws -conns 1000 -rate 0 -duration 3s
	"$WORK/floor" ws -conns 1000 -rate 100 -batch 4 -duration 5s
	echo '```'
fi
