#!/usr/bin/env bash
# bench-relay.sh: one relay scenario RUNS times on fresh servers, medians.
# For before/after figures of one change (bench-compare.sh is the full,
# side-by-side report).
#
#   scripts/bench-relay.sh LABEL [relay bench arguments...]
#
# Environment: RELAY_BIN (default: build ./cmd/relay), RUNS=3,
# SERVER_ENV="RELAY_X=y ..." (extra settings for the server),
# VALKEY=1 (start redis-server/valkey-server for the relay's store).
# Prints one line per run and a median line:
#   LABEL pubs/s deliveries/s cpu-us/delivery cpu-us/publish p50 p99 lost kb/conn clean
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
LABEL=$1
shift
RUNS=${RUNS:-3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-relay.XXXXXX")
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT
if [[ -z ${RELAY_BIN:-} ]]; then
	(cd "$REPO" && go build -o "$WORK/relay" ./cmd/relay)
	RELAY_BIN=$WORK/relay
fi
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
VENV=()
if [[ ${VALKEY:-0} == 1 ]]; then
	VB=$(command -v valkey-server || command -v redis-server)
	VPORT=$(free_port)
	"$VB" --bind 127.0.0.1 --port "$VPORT" --save '' --appendonly yes --appendfsync everysec --dir "$WORK" >"$WORK/valkey.log" 2>&1 &
	PIDS+=($!)
	wait_port "$VPORT"
	VENV=(RELAY_VALKEY_ADDR="127.0.0.1:$VPORT")
fi
for r in $(seq 1 "$RUNS"); do
	[[ ${VALKEY:-0} == 1 ]] && { redis-cli -p "$VPORT" FLUSHALL >/dev/null 2>&1 || true; }
	port=$(free_port)
	env RELAY_HTTP_ADDR="127.0.0.1:$port" RELAY_MAX_CONNECTIONS=60000 RELAY_WS_UPGRADE_RATE=100000 RELAY_RATE_CONNECTIONS=0 RELAY_RATE_SUBSCRIPTIONS=0 RELAY_LOG_LEVEL=warn "${VENV[@]}" ${SERVER_ENV:-} \
		"$RELAY_BIN" serve >"$WORK/server.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	wait_port "$port" || { cat "$WORK/server.log" >&2; exit 1; }
	"$RELAY_BIN" bench --target relay --addr "127.0.0.1:$port" --server-pid "$pid" --quiet --label "$LABEL" \
		--json "$WORK/r$r.json" "$@" >"$WORK/r$r.out" 2>"$WORK/r$r.err" || { cat "$WORK/r$r.err" >&2; }
	kill "$pid"; wait "$pid" 2>/dev/null || true
	[[ -s $WORK/r$r.json ]] || continue
	jq -r --arg l "$LABEL" '[$l, (.publishes_per_s|floor), (.deliveries_per_s|floor), .cpu_us_per_delivery, .cpu_us_per_publish,
		.latency_p50_ms, .latency_p99_ms, .lost, .kb_per_connection, .clean] | map(tostring) | join(" ")' "$WORK/r$r.json"
done | tee "$WORK/lines"
python3 - "$WORK/lines" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
if rows:
    med = [statistics.median(float(r[i]) for r in rows) for i in range(1, 9)]
    print(rows[0][0], "median(%d)" % len(rows), " ".join("%.4g" % m for m in med),
          "clean %d/%d" % (sum(r[9] == "true" for r in rows), len(rows)))
PY
