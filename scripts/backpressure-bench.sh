#!/usr/bin/env bash
# backpressure-bench.sh: the load-generator figures of issue 4's acceptance
# points 4 (slow consumer) and 5 (flood), as medians of BP_RUNS runs.
#
# Configurations, run in turn (base, slow-disconnect, slow-drop-oldest,
# flood), BP_RUNS times, each on a freshly started relay (memory store) on
# 127.0.0.1:BP_PORT:
#   base              99 subscribers on 1 topic, 20,000 messages at 2,000/s
#                     from 4 publishers, 200 bytes of padding
#   slow-disconnect   the same plus --slow-subscribers 1 (never reads, 64 KB
#                     receive buffer); RELAY_SLOW_CONSUMER_POLICY=disconnect
#   slow-drop-oldest  the same with RELAY_SLOW_CONSUMER_POLICY=drop-oldest
#   flood             RELAY_TOPIC_MAILBOX_SIZE=16 RELAY_MAX_BATCH=8; 10
#                     subscribers on 1 topic, 50,000 messages from 64
#                     publishers at unlimited rate, --allow-refusals
# After each run the relay's /metrics counters relay_slow_consumer_disconnects_total
# and relay_messages_dropped_total{reason="slow_consumer"} are saved with the
# report. It prints a Markdown summary (medians) and per-run rows to stdout.
#
# Bounded: every bench run has a timeout, every relay it started is stopped.
#
# Environment:
#   BP_RUNS=3        runs per configuration
#   BP_PORT=18431    relay port (127.0.0.1 only)
#   BP_OUT=dir       keep JSON reports, metrics and logs here (default: a temp dir)
#   BP_ONLY=a,b      run only these configurations
#   BP_NOBUILD=1     use the existing bin/relay
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${BP_RUNS:-3}
PORT=${BP_PORT:-18431}
OUT=${BP_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/backpressure-bench.XXXXXX")}
ONLY=${BP_ONLY:-}
BIN="$REPO/bin/relay"
ADDR="127.0.0.1:$PORT"
mkdir -p "$OUT"
command -v jq >/dev/null || { echo "backpressure-bench: needs jq" >&2; exit 1; }
command -v curl >/dev/null || { echo "backpressure-bench: needs curl" >&2; exit 1; }

log() { printf '[backpressure-bench] %s\n' "$*" >&2; }

if [[ -z ${BP_NOBUILD:-} ]]; then
	log "building bin/relay"
	(cd "$REPO" && go build -o bin/relay ./cmd/relay)
fi

# stop_pid
. "$REPO/scripts/bench-lib.sh"

RELAY_PID=
# stop_relay: stop the relay this script started, if any.
stop_relay() {
	[[ -n $RELAY_PID ]] || return 0
	stop_pid "$RELAY_PID"
	RELAY_PID=
}
trap stop_relay EXIT

# start_relay LOG ENV...: start bin/relay serve with the extra environment
# and wait (at most 10 s) until /health answers.
start_relay() {
	local logf=$1
	shift
	if curl -fsS -o /dev/null "http://$ADDR/health" 2>/dev/null; then
		log "something already listens on $ADDR"
		exit 1
	fi
	env RELAY_WS_UPGRADE_RATE=100000 RELAY_RATE_CONNECTIONS=0 RELAY_RATE_SUBSCRIPTIONS=0 "$@" RELAY_HTTP_ADDR="$ADDR" RELAY_LOG_LEVEL=warn "$BIN" serve >"$logf" 2>&1 &
	RELAY_PID=$!
	for _ in $(seq 1 100); do
		curl -fsS -o /dev/null "http://$ADDR/health" 2>/dev/null && return 0
		sleep 0.1
	done
	log "relay did not come up; log: $logf"
	exit 1
}

metric() { # metric FILE NAME: the value of one sample line, 0 if absent
	awk -v n="$2" '$1 == n { v = $2 } END { print (v == "" ? 0 : v) + 0 }' "$1"
}

A_ARGS=(--subscribers 99 --topics 1 --publishers 4 --messages 20000 --rate 2000 --payload-bytes 200 --grace 10s)
F_ARGS=(--subscribers 10 --topics 1 --publishers 64 --messages 50000 --payload-bytes 200 --allow-refusals --grace 10s)

# run_one NAME REP: one run of configuration NAME.
run_one() {
	local name=$1 rep=$2 env=() args=()
	case $name in
	base) env=(RELAY_SLOW_CONSUMER_POLICY=disconnect) args=("${A_ARGS[@]}") ;;
	slow-disconnect) env=(RELAY_SLOW_CONSUMER_POLICY=disconnect) args=("${A_ARGS[@]}" --slow-subscribers 1) ;;
	slow-drop-oldest) env=(RELAY_SLOW_CONSUMER_POLICY=drop-oldest) args=("${A_ARGS[@]}" --slow-subscribers 1) ;;
	flood) env=(RELAY_TOPIC_MAILBOX_SIZE=16 RELAY_MAX_BATCH=8) args=("${F_ARGS[@]}") ;;
	esac
	local base="$OUT/$name-$rep"
	log "$name run $rep: ${env[*]} bench ${args[*]}"
	start_relay "$base.log" "${env[@]}"
	local rc=0
	timeout 300 "$BIN" bench --addr "$ADDR" --server-pid "$RELAY_PID" --label "$name" --quiet \
		--format json --json "$base.report.json" "${args[@]}" >/dev/null 2>"$base.bench.err" || rc=$?
	curl -fsS "http://$ADDR/metrics" >"$base.metrics" 2>/dev/null || : >"$base.metrics"
	stop_relay
	if [[ $rc -ne 0 || ! -s $base.report.json ]]; then
		log "$name run $rep failed (exit $rc): $(tail -3 "$base.bench.err")"
		return 0
	fi
	jq --argjson disc "$(metric "$base.metrics" relay_slow_consumer_disconnects_total)" \
		--argjson drop "$(metric "$base.metrics" 'relay_messages_dropped_total{reason="slow_consumer"}')" \
		--arg env "${env[*]}" \
		'. + {m_slow_disconnects: $disc, m_dropped: $drop, relay_env: $env}' "$base.report.json" >"$base.json"
}

CONFIGS=(base slow-disconnect slow-drop-oldest flood)
want() { [[ -z $ONLY || ",$ONLY," == *",$1,"* ]]; }

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for rep in $(seq 1 "$RUNS"); do
	for c in "${CONFIGS[@]}"; do
		want "$c" && run_one "$c" "$rep"
	done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# med NAME JQ-EXPR: median over the runs of NAME (the lower middle for an even count).
med() {
	local files=("$OUT/$1"-*[0-9].json)
	[[ -e ${files[0]} ]] || { echo "—"; return; }
	jq -s "[.[] | $2] | sort | .[(length - 1) / 2 | floor] | if type == \"number\" then (. * 100 | round / 100) else . end" "${files[@]}"
}
each() { # each NAME JQ-EXPR: the values per run, comma separated
	local files=("$OUT/$1"-*[0-9].json)
	[[ -e ${files[0]} ]] || { echo "—"; return; }
	jq -rs "[.[] | $2 | tostring] | join(\", \")" "${files[@]}"
}
count() { local files=("$OUT/$1"-*[0-9].json); [[ -e ${files[0]} ]] && echo "${#files[@]}" || echo 0; }

echo "Machine: $(nproc) cores, $(uname -sr); load average (1/5/15 min) at start $LOAD_START, at end $LOAD_END."
echo "Reports, metrics and logs: $OUT"
echo
echo "### Slow consumer (medians of $(count base)/$(count slow-disconnect)/$(count slow-drop-oldest) runs)"
echo
echo "| configuration | clean runs | delivery p50 ms | p99 ms | max ms | lost (the 99) | p99 vs base | slow subscriber ended (per run) | relay 4008 disconnects (per run) | relay drops (per run) | load avg 1m at start |"
echo "|---|---|---:|---:|---:|---:|---:|---|---|---|---:|"
BASE_P99=$(med base .latency_p99_ms)
for c in base slow-disconnect slow-drop-oldest; do
	want "$c" || continue
	p99=$(med "$c" .latency_p99_ms)
	ratio=$(awk -v a="$p99" -v b="$BASE_P99" 'BEGIN { if (a != "—" && b != "—" && b > 0) printf "%.2fx", a / b; else print "—" }')
	echo "| $c | $(jq -rs '[.[] | select(.clean)] | length' "$OUT/$c"-*[0-9].json)/$(count "$c") | $(med "$c" .latency_p50_ms) | $p99 | $(med "$c" .latency_max_ms) | $(med "$c" .lost) | $ratio | $(each "$c" '(.slow_outcomes // {"—": 0} | to_entries | map(.key) | join("+"))') | $(each "$c" .m_slow_disconnects) | $(each "$c" .m_dropped) | $(med "$c" .loadavg_1m) |"
done
if want flood; then
	echo
	echo "### Flood (medians of $(count flood) runs)"
	echo
	echo "| accepted/s | accepted | refused | refusal p50 ms | refusal p99 ms | refusal max ms | accepted publish p50 ms | p99 ms | lost | unexpected | failed | clean runs | load avg 1m at start |"
	echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"
	echo "| $(med flood '.publishes_per_s | round') | $(med flood .published) | $(med flood .refused) | $(med flood .refused_p50_ms) | $(med flood .refused_p99_ms) | $(med flood .refused_max_ms) | $(med flood .publish_p50_ms) | $(med flood .publish_p99_ms) | $(med flood .lost) | $(med flood .unexpected) | $(med flood .publish_errors) | $(jq -rs '[.[] | select(.clean)] | length' "$OUT"/flood-*[0-9].json)/$(count flood) | $(med flood .loadavg_1m) |"
fi
echo
echo "### Every run"
echo
echo "| run | clean | p50 ms | p99 ms | max ms | lost | accepted/s | refused | refusal p99 ms | refusal max ms | slow ended | 4008 disconnects | drops | load 1m |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"
for c in "${CONFIGS[@]}"; do
	for f in "$OUT/$c"-*[0-9].json; do
		[[ -e $f ]] || continue
		jq -r --arg run "$(basename "$f" .json)" 'def r2: (. * 100 | round) / 100; "| \($run) | \(.clean) | \(.latency_p50_ms | r2) | \(.latency_p99_ms | r2) | \(.latency_max_ms | r2) | \(.lost) | \(.publishes_per_s | round) | \(.refused) | \(.refused_p99_ms | r2) | \(.refused_max_ms | r2) | \(.slow_outcomes // {} | to_entries | map("\(.key): \(.value)") | join(", ")) | \(.m_slow_disconnects) | \(.m_dropped) | \(.loadavg_1m) |"' "$f"
	done
done
