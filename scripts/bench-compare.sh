#!/usr/bin/env bash
# bench-compare.sh: measure the relay side by side with Centrifugo v6.9.1 on
# this machine and rewrite BENCHMARKS.md.
#
# What it does, in order (every server listens on 127.0.0.1 only):
#   1. installs Centrifugo v6.9.1 into a temp dir with `go install` (never into
#      the repo), and a Valkey-compatible server (valkey-server or
#      redis-server; apt-get when neither is installed and we are root);
#   2. builds the relay from this checkout;
#   3. runs each scenario RUNS times, alternating relay and Centrifugo (the
#      order flips every run), each run on a freshly started server: first
#      both with their memory engines, then both backed by Valkey;
#   4. turns the JSON reports into medians and ratios (`relay bench
#      summarize`) and writes BENCHMARKS.md.
#
# Bounded: a run never starts after BUDGET seconds from the start (default
# 1600 s, so the whole script ends under 30 minutes); skipped runs are
# listed in BENCHMARKS.md. Every server it started is stopped on exit.
#
# Environment:
#   BENCH_RUNS=3          runs per scenario and target (medians need >= 3)
#   BENCH_VALKEY_INGEST_RUNS=5  runs per target (or BENCH_RUNS if higher) of ingest-valkey and
#                         ingest-valkey-1topic (with the Valkey and actor floors and
#                         Centrifugo under the relay's sysmon setting after each
#                         pair): three processes share the two cores
#                         there, and one run's publishes/s moves by a third
#   BENCH_BUDGET_S=1600   no new run starts after this many seconds
#   BENCH_OUT=BENCHMARKS.md   where to write the report (relative paths: to the repo root)
#   BENCH_KEEP=1          keep the temp dir (binaries, logs, JSON reports)
#   CENTRIFUGO_BIN=path   use this Centrifugo binary instead of installing one
#   BENCH_FLOOR_ROUNDS=7  alternating wrk rounds of the HTTP floors (each: the
#                         bare handler, it with the relay's timeouts, the relay,
#                         Centrifugo); more than BENCH_RUNS because one 5 s wrk
#                         run's CPU per request moves by up to a third with the
#                         machine, more than the servers differ
#   BENCH_WD_RUNS=1       runs per cell of the write-delay matrix
#   BENCH_TRANSPORT_RUNS=1  runs per relay-only transport row (fanout-poll,
#                         fanout-sse, idle-5k-ws, idle-5k-poll, idle-5k-sse)
#   BENCH_IDLE_LARGE_RUNS=1 runs per target of idle-50k (held by several
#                         server processes at once when one may not open
#                         50,100 files) or idle-19k
#   BENCH_SCENARIOS=a,b   run only these labels (and "profile" for the perf
#                         profiles, "floor" for scripts/bench-floor.sh,
#                         "write-delay" for the RELAY_WRITE_DELAY matrix);
#                         default: all
#   BENCH_SERVER_GOMAXPROCS=N  GOMAXPROCS for both servers (default: Go's,
#                         the number of CPUs); the report says so
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${BENCH_RUNS:-3}
VALKEY_INGEST_RUNS=${BENCH_VALKEY_INGEST_RUNS:-$((RUNS > 5 ? RUNS : 5))}
BUDGET=${BENCH_BUDGET_S:-1600}
OUT=${BENCH_OUT:-BENCHMARKS.md}
[[ $OUT == /* ]] || OUT="$REPO/$OUT"
CF_VERSION=v6.9.1
START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-compare.XXXXXX")
RES="$WORK/results"
LOGS="$WORK/logs"
NOTES="$WORK/notes.md"
mkdir -p "$RES" "$LOGS" "$WORK/bin"
: >"$NOTES"

SERVER_PIDS=()

log() { printf '[bench-compare %4ds] %s\n' "$(($(date +%s) - START))" "$*" >&2; }
note() { printf -- '- %s\n' "$*" >>"$NOTES"; log "note: $*"; }

# stop_pid and centrifugo_config
. "$REPO/scripts/bench-lib.sh"

cleanup() {
	local pid
	for pid in "${SERVER_PIDS[@]}"; do
		stop_pid "$pid"
	done
	if [[ ${BENCH_KEEP:-0} == 1 ]]; then
		log "kept $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

elapsed() { echo $(($(date +%s) - START)); }

# wanted LABEL: whether BENCH_SCENARIOS (empty: all) selects LABEL.
wanted() {
	[[ -z ${BENCH_SCENARIOS:-} || ",$BENCH_SCENARIOS," == *",$1,"* ]]
}

# ---------------------------------------------------------------- installs
command -v go >/dev/null || { echo "bench-compare: go is required" >&2; exit 1; }
command -v curl >/dev/null || { echo "bench-compare: curl is required" >&2; exit 1; }

if [[ -n ${CENTRIFUGO_BIN:-} ]]; then
	CF="$CENTRIFUGO_BIN"
	log "using Centrifugo at $CF"
else
	log "installing Centrifugo $CF_VERSION into $WORK/bin (go install)"
	(cd "$WORK" && GOBIN="$WORK/bin" go install "github.com/centrifugal/centrifugo/v6@$CF_VERSION") \
		>"$LOGS/centrifugo-install.log" 2>&1 || { cat "$LOGS/centrifugo-install.log" >&2; exit 1; }
	CF="$WORK/bin/centrifugo"
fi

VALKEY_BIN=$(command -v valkey-server || command -v redis-server || true)
if [[ -z $VALKEY_BIN && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
	log "installing a Valkey-compatible server with apt-get"
	{ apt-get update -qq && { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valkey-server ||
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }; } >"$LOGS/apt.log" 2>&1 || true
	VALKEY_BIN=$(command -v valkey-server || command -v redis-server || true)
fi
[[ -n $VALKEY_BIN ]] || note "no valkey-server or redis-server could be installed: the Valkey scenarios were skipped"

log "building the relay"
(cd "$REPO" && go build -o "$WORK/bin/relay" ./cmd/relay && go build -o "$WORK/bin/floor" ./bench/floor)
RELAY="$WORK/bin/relay"
# A measurement build, never shipped: the same relay without net/http's
# per-request background read (nethttp_nobg_overlay), run on
# many-topics-memory after each pair to weigh that goroutine's cost.
RELAY_NOBG=""
if nethttp_nobg_overlay "$WORK/nobg" >"$LOGS/nobg-build.log" 2>&1 &&
	(cd "$REPO" && go build -overlay "$WORK/nobg/overlay.json" -o "$WORK/bin/relay-nobg" ./cmd/relay) >>"$LOGS/nobg-build.log" 2>&1; then
	RELAY_NOBG="$WORK/bin/relay-nobg"
else
	note "the relay without net/http's background read could not be built ($(tail -n 1 "$LOGS/nobg-build.log")): its many-topics runs were skipped"
fi

# The load generator is `relay bench` (package loadgen), from the same build.
BENCH=("$RELAY" bench)
BENCH_NAME="relay bench"

# ---------------------------------------------------------------- servers
VALKEY_PORT=""
VALKEY_PID=""

start_valkey() {
	VALKEY_PORT=$(free_port)
	mkdir -p "$WORK/valkey"
	"$VALKEY_BIN" --bind 127.0.0.1 --port "$VALKEY_PORT" --dir "$WORK/valkey" --save '' \
		--appendonly yes --appendfsync everysec --protected-mode yes >"$LOGS/valkey.log" 2>&1 &
	VALKEY_PID=$!
	SERVER_PIDS+=("$VALKEY_PID")
	if wait_tcp "$VALKEY_PORT" "$VALKEY_PID"; then
		log "$(basename "$VALKEY_BIN") on 127.0.0.1:$VALKEY_PORT"
		return 0
	fi
	echo "bench-compare: $(basename "$VALKEY_BIN") did not start" >&2
	cat "$LOGS/valkey.log" >&2
	return 1
}

# flush_valkey: empty the store between runs (each run has its own topic
# names anyway; this keeps memory and AOF size the same for every run).
flush_valkey() {
	[[ -n $VALKEY_PORT ]] || return 0
	exec 3<>"/dev/tcp/127.0.0.1/$VALKEY_PORT"
	printf '*1\r\n$8\r\nFLUSHALL\r\n' >&3
	local reply
	read -r -t 5 reply <&3 || true
	exec 3<&-
}

SERVER_PID=""
SERVER_PORT=""
RELAY_EXTRA_ENV=()    # extra RELAY_* settings for the next relay servers
SERVER_RUNTIME_ENV=() # Go runtime settings (GOGC, GODEBUG, ...) for the next servers, relay and Centrifugo alike
# The setting `relay serve` gives itself (internal/sysmon.Setting), for Centrifugo's runs under the
# relay's runtime policy.
SYSMON_GODEBUG=GODEBUG=schedtrace=2147483647
# BENCH_SERVER_GOMAXPROCS: GOMAXPROCS for both servers (relay and
# Centrifugo alike; the load generator keeps the default). Unset: Go's
# default, the number of CPUs.
SERVER_ENV=()
[[ -n ${BENCH_SERVER_GOMAXPROCS:-} ]] && SERVER_ENV=(GOMAXPROCS="$BENCH_SERVER_GOMAXPROCS")

# start_server TARGET ENGINE TAG: start a fresh server; sets SERVER_PID and SERVER_PORT.
start_server() {
	local target=$1 engine=$2 tag=$3
	SERVER_PORT=$(free_port)
	if [[ $target == relay ]]; then
		local valkey_env=()
		[[ $engine == valkey ]] && valkey_env=(RELAY_VALKEY_ADDR="127.0.0.1:$VALKEY_PORT")
		env "${SERVER_ENV[@]}" "${SERVER_RUNTIME_ENV[@]}" RELAY_HTTP_ADDR="127.0.0.1:$SERVER_PORT" RELAY_MAX_CONNECTIONS=20000 RELAY_WS_UPGRADE_RATE=100000 RELAY_RATE_CONNECTIONS=0 RELAY_RATE_SUBSCRIPTIONS=0 RELAY_LOG_LEVEL=warn \
			"${valkey_env[@]}" "${RELAY_EXTRA_ENV[@]}" "$RELAY" serve >"$LOGS/$tag.log" 2>&1 &
		SERVER_PID=$!
		SERVER_PIDS+=("$SERVER_PID")
		wait_http "$SERVER_PORT" /ready "$SERVER_PID" && return 0
	elif [[ $target == floor || $target == actorfloor ]]; then
		local kind=valkey
		[[ $target == actorfloor ]] && kind=actor
		"$WORK/bin/floor" "$kind" -addr "127.0.0.1:$SERVER_PORT" -valkey "127.0.0.1:$VALKEY_PORT" >"$LOGS/$tag.log" 2>&1 &
		SERVER_PID=$!
		SERVER_PIDS+=("$SERVER_PID")
		wait_http "$SERVER_PORT" /health "$SERVER_PID" && return 0
	else
		centrifugo_config "$engine" "$SERVER_PORT" "$WORK/centrifugo-$engine.json"
		env "${SERVER_ENV[@]}" "${SERVER_RUNTIME_ENV[@]}" "$CF" -c "$WORK/centrifugo-$engine.json" >"$LOGS/$tag.log" 2>&1 &
		SERVER_PID=$!
		SERVER_PIDS+=("$SERVER_PID")
		wait_http "$SERVER_PORT" /health "$SERVER_PID" && return 0
	fi
	stop_pid "$SERVER_PID"
	return 1
}

# ---------------------------------------------------------------- runs
declare -A SCEN_ARGS SCEN_ENGINE
SCEN_ORDER=()
FAILED_START=()

# run_one LABEL TARGET ENGINE RUN ARGS...: one run on a fresh server.
# Returns 0 when a report was written, 1 otherwise.
run_one() {
	local label=$1 target=$2 engine=$3 run=$4
	shift 4
	local tag="$label.$target.$run"
	if (($(elapsed) > BUDGET)); then
		note "$tag skipped: time budget of ${BUDGET}s used up"
		return 1
	fi
	flush_valkey
	if ! start_server "$target" "$engine" "$tag"; then
		note "$tag: the $target server did not start ($(tail -n 3 "$LOGS/$tag.log" | tr '\n' ' '))"
		return 1
	fi
	local extra=() speaks=$target
	[[ $target == centrifugo ]] && extra=(--api-key bench-api-key)
	[[ $target == floor || $target == actorfloor ]] && speaks=relay # bench/floor valkey and actor speak the relay's contract
	[[ $engine == valkey && -n $VALKEY_PID ]] && extra+=(--store-pid "$VALKEY_PID")
	log "$tag: ${*}"
	local rc=0
	"${BENCH[@]}" --target "$speaks" --addr "127.0.0.1:$SERVER_PORT" --server-pid "$SERVER_PID" \
		--label "$label" --json "$RES/$tag.json" --progress 5s "${extra[@]}" "$@" \
		>"$LOGS/$tag.out" 2>"$LOGS/$tag.err" || rc=$?
	stop_pid "$SERVER_PID"
	if ((rc != 0)); then
		note "$tag: bench exited $rc: $(tail -n 2 "$LOGS/$tag.err" | tr '\n' ' ')"
		rm -f "$RES/$tag.json"
		return 1
	fi
	return 0
}

# scenario LABEL ENGINE ARGS...: RUNS runs per target, alternating.
scenario() { scenario_n "$RUNS" "$@"; }

# scenario_n N LABEL ENGINE ARGS...: N runs per target, alternating.
scenario_n() {
	local n=$1 label=$2 engine=$3
	shift 3
	wanted "$label" || return 0
	SCEN_ORDER+=("$label")
	SCEN_ARGS[$label]="$*"
	SCEN_ENGINE[$label]=$engine
	local run
	for run in $(seq 1 "$n"); do
		if ((run % 2 == 1)); then
			run_one "$label" relay "$engine" "$run" "$@" || true
			run_one "$label" centrifugo "$engine" "$run" "$@" || true
		else
			run_one "$label" centrifugo "$engine" "$run" "$@" || true
			run_one "$label" relay "$engine" "$run" "$@" || true
		fi
		[[ -z $AFTER_PAIR ]] || "$AFTER_PAIR" "$label" "$@"
	done
}
AFTER_PAIR="" # a command scenario_n runs after each relay/Centrifugo pair, with the scenario's LABEL ARGS...

# ws_floor_run: the fan-out write floor (bench/floor ws: one loop writing a
# 180 B WebSocket frame to 1,000 loopback sockets at 100 rounds/s) taken
# between the fanout-memory runs, so that the fan-out target (CPU per
# delivery against the floor) compares figures from the same minutes; the
# floor moves by a fifth between minutes on this machine. Appends its
# CPU µs per write to $WORK/ws-floor.
ws_floor_run() {
	"$WORK/bin/floor" ws -conns 1000 -rate 100 -duration 5s 2>>"$LOGS/ws-floor.err" |
		sed -n 's/.* \([0-9.]*\) CPU-us\/write.*/\1/p' >>"$WORK/ws-floor" || true
}

# limit_search LABEL ENGINE RATES...: fan-out with the rate stepped up; each
# target stops after its first failed step: not clean, p99 > 250 ms, or under
# 90% of the rate actually sent (the same rule as `bench summarize`).
LIMIT_SECONDS=3
limit_search() {
	local label=$1 engine=$2
	shift 2
	wanted "$label" || return 0
	local rates=("$@") target rate
	SCEN_ORDER+=("$label")
	SCEN_ARGS[$label]="--subscribers 1000 --topics 1 --publishers 16 --rate R --messages R*$LIMIT_SECONDS --duration $((2 * LIMIT_SECONDS))s --grace 3s"
	SCEN_ENGINE[$label]=$engine
	declare -A stopped=()
	for rate in "${rates[@]}"; do
		for target in relay centrifugo; do
			[[ -n ${stopped[$target]:-} ]] && continue
			if ! run_one "$label" "$target" "$engine" "r$rate" --subscribers 1000 --topics 1 --publishers 16 \
				--rate "$rate" --messages $((rate * LIMIT_SECONDS)) --duration $((2 * LIMIT_SECONDS))s --grace 3s; then
				stopped[$target]=1
				continue
			fi
			if ! jq -e '.clean and .latency_p99_ms <= 250 and .publishes_per_s >= 0.9 * .rate' "$RES/$label.$target.r$rate.json" >/dev/null 2>&1; then
				stopped[$target]=1
			fi
		done
	done
}

FANOUT=(--subscribers 1000 --topics 1 --publishers 4 --rate 100 --messages 1000 --duration 15s --grace 5s)
MANY=(--subscribers 5000 --topics 1000 --publishers 8 --rate 2000 --messages 10000 --duration 10s --grace 5s)
INGEST=(--subscribers 10 --topics 10 --publishers 32 --messages 200000 --duration 5s --grace 5s)
INGEST_1TOPIC=(--subscribers 10 --topics 1 --publishers 32 --messages 200000 --duration 5s --grace 5s)
IDLE=(--subscribers 10000 --topics 1 --messages 0 --hold 10s)
INGEST_BULK=(--subscribers 10 --topics 10 --publishers 8 --bulk 50 --messages 300000 --duration 5s --grace 5s)

command -v jq >/dev/null || note "jq is missing: the fan-out limit search ran every step"

# relay_has_bulk: whether this relay build serves POST /api/v1/messages/bulk.
relay_has_bulk() {
	start_server relay memory probe-bulk || return 1
	local code
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X POST -H 'Content-Type: application/json' \
		-d '{"messages":[]}' "http://127.0.0.1:$SERVER_PORT/api/v1/messages/bulk" || true)
	stop_pid "$SERVER_PID"
	[[ $code != 404 && $code != 405 && $code != 000 ]]
}

# idle_large: the IDLE shape at the largest count this machine's limits
# allow: 50,000 when the open-file hard limit and the ephemeral port range
# fit it, else 19,000 (a 20,000 hard limit), else none. Each connection is
# one descriptor in the server and one in the load generator (both Go
# processes raise their soft limit to the hard one), and every load
# generator socket takes an ephemeral port of 127.0.0.1, its only source
# address. When one process cannot hold 50,000 but the hard limit allows at
# least 10,000, 50,000 are held by several servers at once (idle_split).
# BENCH_IDLE_LARGE_RUNS runs per target (default 1: each run holds the
# connections 10 s and takes about a minute on this machine).
idle_large() {
	wanted idle-19k || wanted idle-50k || return 0
	local hard lo hi ports n ran="" raise
	hard=$(ulimit -Hn)
	[[ $hard == unlimited ]] && hard=1000000000
	if ((hard < 50100)); then
		# Try to raise it for the servers and load generators this script
		# starts (children inherit it); where that is refused, say why.
		if raise=$( (ulimit -n 50100) 2>&1); then
			ulimit -n 50100
			hard=50100
			raise="raised to 50100 by this script"
		else
			raise="\`ulimit -n 50100\` failed here as $(id -un): ${raise##*: }"
		fi
	else
		raise="not raised by this script"
	fi
	read -r lo hi </proc/sys/net/ipv4/ip_local_port_range
	ports=$((hi - lo + 1))
	for n in 50000 19000; do
		local label="idle-$((n / 1000))k"
		wanted "$label" || continue
		[[ -n $ran && -z ${BENCH_SCENARIOS:-} ]] && continue # by default only the largest that fits
		# N connections: N descriptors plus the processes' own (listeners,
		# publishers, files), N ephemeral ports plus slack.
		if ((hard >= n + 100 && ports >= n + 1000)); then
			RELAY_EXTRA_ENV=(RELAY_MAX_CONNECTIONS=$((n + 1000)))
			scenario_n "${BENCH_IDLE_LARGE_RUNS:-1}" "$label" memory --subscribers "$n" --topics 1 --messages 0 --hold 10s
			RELAY_EXTRA_ENV=()
			ran=$label
			note "$label: ${BENCH_IDLE_LARGE_RUNS:-1} run(s) per target (BENCH_IDLE_LARGE_RUNS), fewer than the other side-by-side scenarios to keep the script under 30 minutes; the relay with RELAY_MAX_CONNECTIONS=$((n + 1000))"
		elif ((n == 50000 && hard >= 10000)); then
			idle_split "$label" "$n" "$hard" "$raise" "$ports" && ran=$label
		elif ((n != 50000)); then # 50,000: the note below
			note "$label not run: $n idle connections need an open-file hard limit (\`ulimit -Hn\`) of at least $((n + 100)) and $((n + 1000)) ephemeral ports; here the limit was $hard and the port range $lo-$hi ($ports ports)"
		fi
	done
	if [[ $ran != idle-50k ]]; then
		note "idle-50k not run: 50,000 idle connections (issue 13) need \`ulimit -n\` >= 50,100 for both the server and the load generator, and at least 51,000 ephemeral ports: the load generator dials from 127.0.0.1 only, so widen net.ipv4.ip_local_port_range (here $lo-$hi, $ports ports). This machine's open-file hard limit was $hard ($raise), so the largest idle scenario run was ${ran:-none}."
	fi
}

# idle_split LABEL N HARD RAISE PORTS: N idle connections held at the same
# time by K servers of each target, K the fewest whose share fits the
# open-file hard limit HARD with 1,000 to spare. Each server has its own
# load generator (a process may not open more files either), all K started
# together; `relay bench merge` turns their reports into one, whose KB per
# connection is the servers' summed growth over the N connections. Every
# load generator dials one server from 127.0.0.1, so it needs N/K ephemeral
# ports: Linux shares a port between sockets to different destinations. A
# sampler counts the servers' open descriptors every 0.2 s, to show all N
# were held at once. Returns 1 when no run of either target was merged.
idle_split() {
	local label=$1 n=$2 hard=$3 raise=$4 ports=$5 k share run target merged=0
	k=$(((n + hard - 1001) / (hard - 1000)))
	share=$(((n + k - 1) / k))
	if ((ports < share + 1000)); then
		note "$label not run: $k servers of $share connections each need $((share + 1000)) ephemeral ports, the range has $ports"
		return 1
	fi
	SCEN_ORDER+=("$label")
	SCEN_ARGS[$label]="--subscribers $n --topics 1 --messages 0 --hold 10s, held by $k server processes at once ($share each)"
	SCEN_ENGINE[$label]=memory
	RELAY_EXTRA_ENV=(RELAY_MAX_CONNECTIONS=$((share + 1000)))
	for run in $(seq 1 "${BENCH_IDLE_LARGE_RUNS:-1}"); do
		local order="relay centrifugo" # alternating, as scenario_n does
		((run % 2 == 0)) && order="centrifugo relay"
		for target in $order; do
			split_hold_run "$label" "$target" "$run" "$k" "$share" && merged=1
		done
	done
	RELAY_EXTRA_ENV=()
	note "$label: held by $k server processes of each target at once, $share connections each, each with its own load generator: one process may open at most $hard files here ($raise). KB per connection is the $k servers' summed RSS growth over the connections held (\`relay bench merge\`); ${BENCH_IDLE_LARGE_RUNS:-1} run(s) per target; the relays with RELAY_MAX_CONNECTIONS=$((share + 1000))"
	((merged))
}

# split_hold_run LABEL TARGET RUN K SHARE: one run of idle_split.
split_hold_run() {
	local label=$1 target=$2 run=$3 k=$4 share=$5 i tag="$label.$target.$run"
	if (($(elapsed) > BUDGET)); then
		note "$tag skipped: time budget of ${BUDGET}s used up"
		return 1
	fi
	local pids=() ports=() gens=() parts=() extra=() rc=0 fail=""
	[[ $target == centrifugo ]] && extra=(--api-key bench-api-key)
	for i in $(seq 1 "$k"); do
		if ! start_server "$target" memory "$tag.p$i"; then
			fail="the $target server $i of $k did not start ($(tail -n 3 "$LOGS/$tag.p$i.log" | tr '\n' ' '))"
			break
		fi
		pids+=("$SERVER_PID")
		ports+=("$SERVER_PORT")
	done
	if [[ -z $fail ]]; then
		log "$tag: $k servers, $share connections each"
		(
			max=0
			while sleep 0.2; do
				sum=0
				for pid in "${pids[@]}"; do
					sum=$((sum + $(ls "/proc/$pid/fd" 2>/dev/null | wc -l)))
				done
				((sum > max)) && { max=$sum; echo "$max" >"$WORK/$tag.fds"; }
			done
		) &
		local sampler=$!
		for i in $(seq 0 $((k - 1))); do
			"${BENCH[@]}" --target "$target" --addr "127.0.0.1:${ports[$i]}" --server-pid "${pids[$i]}" \
				--label "$label" --json "$WORK/$tag.p$i.json" --quiet "${extra[@]}" \
				--subscribers "$share" --topics 1 --messages 0 --hold 10s \
				>"$LOGS/$tag.p$i.out" 2>"$LOGS/$tag.p$i.err" &
			gens+=($!)
			parts+=("$WORK/$tag.p$i.json")
		done
		for i in "${!gens[@]}"; do
			wait "${gens[$i]}" || { rc=$?; fail="load generator $((i + 1)) of $k exited $rc: $(tail -n 2 "$LOGS/$tag.p$i.err" | tr '\n' ' ')"; }
		done
		kill "$sampler" 2>/dev/null || true
		wait "$sampler" 2>/dev/null || true
	fi
	for i in "${pids[@]}"; do
		stop_pid "$i"
	done
	if [[ -z $fail ]] && ! "${BENCH[@]}" merge "${parts[@]}" >"$RES/$tag.json" 2>"$LOGS/$tag.merge.err"; then
		fail="merge failed: $(tail -n 2 "$LOGS/$tag.merge.err" | tr '\n' ' ')"
	fi
	if [[ -n $fail ]]; then
		note "$tag: $fail"
		rm -f "$RES/$tag.json"
		return 1
	fi
	note "$tag: at most $(cat "$WORK/$tag.fds" 2>/dev/null || echo "?") descriptors open in the $k $target servers at once (the connections plus each server's own)"
}

log "memory engines"
# fanout_1p_run: the relay once more on fanout-memory with GOMAXPROCS=1,
# right after the floor: one P runs the topic actor and the connection
# actors it wakes, so no frame crosses between cores. Set against the same
# floor, it separates the relay's code path from the cost of handing each
# delivery to the other core. Reports go to $ONEP_DIR (not a side-by-side
# scenario).
ONEP_DIR=$WORK/one-p
ONEP_RUN=0
# variant_run LABEL DIR N BIN TARGETS ENGINE [ENV...] -- ARGS...: each of
# TARGETS ("relay", "centrifugo" or both, or a floor), the relay as binary
# BIN, once more on ENGINE (memory or valkey) with the Go runtime settings
# ENV and the load generator's ARGS (run N of LABEL), for figures next to a
# side-by-side scenario; the reports go to DIR.
variant_run() {
	local label=$1 dir=$2 n=$3 relay=$RELAY targets=$5 engine=$6 target
	RELAY=$4
	shift 6
	SERVER_RUNTIME_ENV=()
	while (($#)) && [[ $1 != -- ]]; do
		SERVER_RUNTIME_ENV+=("$1")
		shift
	done
	shift
	mkdir -p "$dir"
	for target in $targets; do
		if run_one "$label" "$target" "$engine" "$n" "$@"; then
			mv "$RES/$label.$target.$n.json" "$dir/"
		fi
	done
	RELAY=$relay
	SERVER_RUNTIME_ENV=()
}
fanout_1p_run() {
	ONEP_RUN=$((ONEP_RUN + 1))
	variant_run fanout-memory-1p "$ONEP_DIR" "$ONEP_RUN" "$RELAY" relay memory GOMAXPROCS=1 -- "${FANOUT[@]}"
}
after_fanout_pair() {
	ws_floor_run
	fanout_1p_run
}
AFTER_PAIR=after_fanout_pair scenario fanout-memory memory "${FANOUT[@]}"
scenario ingest-memory memory "${INGEST[@]}"
scenario idle-10k memory "${IDLE[@]}"
idle_large
# After each many-topics-memory pair the relay runs it twice more, in the
# same minutes: with GOGC=off (the heap is never collected over a run this
# short: what the relay costs, and how late its slowest deliveries are,
# without the collector's mark phases), and built without net/http's
# per-request background read (RELAY_NOBG: what that goroutine, its start,
# which wakes the other core's thread, and its abort by a past read
# deadline, costs at 2,000 publishes/s). Then Centrifugo runs it once more
# with the setting `relay serve` gives itself (internal/sysmon:
# GODEBUG=schedtrace=2147483647, so Go's sysmon thread never sleeps deeply
# and a system call no longer wakes it into 20 µs polls): the two servers
# under the same runtime policy. Reports go to $NOGC_DIR, $NOBG_DIR and
# $SYSMON_DIR.
NOGC_DIR=$WORK/no-gc
NOBG_DIR=$WORK/no-bg-read
SYSMON_DIR=$WORK/sysmon-awake
MANY_PAIR=0
after_many_pair() {
	MANY_PAIR=$((MANY_PAIR + 1))
	variant_run many-topics-memory-nogc "$NOGC_DIR" "$MANY_PAIR" "$RELAY" relay memory GOGC=off -- "${MANY[@]}"
	[[ -z $RELAY_NOBG ]] ||
		variant_run many-topics-memory-nobg "$NOBG_DIR" "$MANY_PAIR" "$RELAY_NOBG" relay memory -- "${MANY[@]}"
	variant_run many-topics-memory-sysmon "$SYSMON_DIR" "$MANY_PAIR" "$RELAY" centrifugo memory "$SYSMON_GODEBUG" -- "${MANY[@]}"
}
AFTER_PAIR=after_many_pair scenario many-topics-memory memory "${MANY[@]}"
if ! wanted ingest-bulk-memory; then
	:
elif relay_has_bulk; then
	scenario ingest-bulk-memory memory "${INGEST_BULK[@]}"
else
	note "the relay does not serve POST /api/v1/messages/bulk yet: ingest-bulk-memory was not run"
fi
limit_search fanout-limit-memory memory 100 150 200 300 450 700 1000 1500

# valkey_floor_run LABEL ARGS...: after each pair of a Valkey ingest
# scenario LABEL, the same load (ARGS) against the Valkey floor (bench/floor valkey: the least
# a relay-shaped server does per publish, one script call storing and
# announcing it, one pattern subscription, writes coalesced per subscriber)
# and against the actor floor (bench/floor actor: the same work with the
# relay's actors and hand-offs, stock protoactor-go), in alternating order,
# on the same Valkey in the same minutes. What the Valkey floor reaches
# against Centrifugo is what this machine allows any server of this shape
# with this load generator; the actor floor's distance to it is what the
# relay's actor design costs, and the relay's distance to the actor floor
# what its own work costs. Centrifugo runs it once more too, with the
# setting `relay serve` gives itself (GODEBUG=schedtrace=2147483647,
# internal/sysmon; label LABEL-sysmon): the relay's ratio to Centrifugo
# under the same runtime policy. The three runs' order rotates. Reports go
# to $VFLOOR_DIR.
VFLOOR_DIR=$WORK/valkey-floor
VFLOOR_RUN=0
valkey_floor_run() {
	local label=$1 target
	shift
	VFLOOR_RUN=$((VFLOOR_RUN + 1))
	local order=(floor actorfloor cfsysmon)
	order=("${order[@]:VFLOOR_RUN % 3}" "${order[@]:0:VFLOOR_RUN % 3}")
	for target in "${order[@]}"; do
		if [[ $target == cfsysmon ]]; then
			variant_run "$label-sysmon" "$VFLOOR_DIR" "$VFLOOR_RUN" "$RELAY" centrifugo valkey "$SYSMON_GODEBUG" -- "$@"
		else
			variant_run "$label" "$VFLOOR_DIR" "$VFLOOR_RUN" "$RELAY" "$target" valkey -- "$@"
		fi
	done
}

if [[ -n $VALKEY_BIN ]] && { wanted ingest-valkey || wanted ingest-valkey-1topic || wanted fanout-valkey || wanted many-topics-valkey; } && start_valkey; then
	log "Valkey-backed"
	AFTER_PAIR=valkey_floor_run scenario_n "$VALKEY_INGEST_RUNS" ingest-valkey valkey "${INGEST[@]}"
	AFTER_PAIR=valkey_floor_run scenario_n "$VALKEY_INGEST_RUNS" ingest-valkey-1topic valkey "${INGEST_1TOPIC[@]}"
	scenario fanout-valkey valkey "${FANOUT[@]}"
	scenario many-topics-valkey valkey "${MANY[@]}"
fi

# ---------------------------------------------------------------- transports
# Relay only (Centrifugo has no long-poll or SSE subscriber to compare):
# the fan-out shape with long-poll and SSE subscribers, whose WebSocket row
# is fanout-memory's relay runs (the same arguments), and an idle hold of
# 5,000 subscribers on each of ws, poll and sse. The per-client caps are
# raised for these runs, as every load generator connection comes from
# 127.0.0.1, one client: long-poll waiters (RELAY_POLL_MAX_WAITERS_PER_CLIENT,
# default 50) and connections that are not WebSockets
# (RELAY_MAX_HTTP_CONNECTIONS_PER_CLIENT, default 1024, and
# RELAY_MAX_HTTP_CONNECTIONS, default 4096; each waiter or stream holds one).
# BENCH_TRANSPORT_RUNS runs per row (default 1, to keep the script's
# default run under 30 minutes).
IDLE_T=(--subscribers 5000 --topics 1 --messages 0 --hold 10s)
TR_DIR="$WORK/transports"
mkdir -p "$TR_DIR"
# relay_only LABEL ARGS...: BENCH_TRANSPORT_RUNS relay runs, memory engine.
relay_only() {
	local label=$1 run
	shift
	wanted "$label" || return 0
	SCEN_ORDER+=("$label")
	SCEN_ARGS[$label]="$*"
	SCEN_ENGINE[$label]="memory (relay only)"
	RELAY_EXTRA_ENV=(RELAY_POLL_MAX_WAITERS_PER_CLIENT=20000 RELAY_MAX_HTTP_CONNECTIONS=10000
		RELAY_MAX_HTTP_CONNECTIONS_PER_CLIENT=10000)
	for run in $(seq 1 "${BENCH_TRANSPORT_RUNS:-1}"); do
		if run_one "$label" relay memory "$run" "$@"; then
			mv "$RES/$label.relay.$run.json" "$TR_DIR/"
		fi
	done
	RELAY_EXTRA_ENV=()
}
relay_only fanout-poll "${FANOUT[@]}" --transport poll
relay_only fanout-sse "${FANOUT[@]}" --transport sse
relay_only idle-5k-ws "${IDLE_T[@]}" --transport ws
relay_only idle-5k-poll "${IDLE_T[@]}" --transport poll
relay_only idle-5k-sse "${IDLE_T[@]}" --transport sse
TR_MD=""
if compgen -G "$TR_DIR/*.json" >/dev/null; then
	TR_MD="$WORK/transports.md"
	python3 - "$TR_DIR" "$RES" >"$TR_MD" <<'PY' || TR_MD=""
import glob, json, os, statistics, sys
tr_dir, res = sys.argv[1], sys.argv[2]
def load(pattern):
    return [json.load(open(f)) for f in sorted(glob.glob(pattern))]
rows = [
    ("fan-out", "ws", "fanout-memory", load(os.path.join(res, "fanout-memory.relay.*.json"))),
    ("fan-out", "poll", "fanout-poll", load(os.path.join(tr_dir, "fanout-poll.relay.*.json"))),
    ("fan-out", "sse", "fanout-sse", load(os.path.join(tr_dir, "fanout-sse.relay.*.json"))),
    ("idle hold", "ws", "idle-5k-ws", load(os.path.join(tr_dir, "idle-5k-ws.relay.*.json"))),
    ("idle hold", "poll", "idle-5k-poll", load(os.path.join(tr_dir, "idle-5k-poll.relay.*.json"))),
    ("idle hold", "sse", "idle-5k-sse", load(os.path.join(tr_dir, "idle-5k-sse.relay.*.json"))),
]
print("| shape | transport | label | runs | subscribers | sent msgs/s | deliveries/s | server CPU µs/delivery | latency p50 ms | latency p99 ms | server KB per connection (socket / waiter / stream) | held when sampled | lost | clean | machine load at start (1 min) | Centrifugo |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|")
for shape, transport, label, rs in rows:
    if not rs:
        print("| %s | %s | %s | 0 | | | | | | | | | | not run in this run | | |" % (shape, transport, label))
        continue
    med = lambda k: statistics.median(r.get(k) or 0 for r in rs)
    fan = shape == "fan-out"
    cells = [
        "%.0f" % med("publishes_per_s") if fan else "—",
        "%.0f" % med("deliveries_per_s") if fan else "—",
        "%.2f" % med("cpu_us_per_delivery") if fan else "—",
        "%.1f" % med("latency_p50_ms") if fan else "—",
        "%.1f" % med("latency_p99_ms") if fan else "—",
        "%.1f" % med("kb_per_connection") if not fan else "—",
        "%.0f" % med("held") if not fan else "—",
    ]
    cf = "side by side in fanout-memory above" if label == "fanout-memory" else "none (relay only)"
    print("| %s | %s | %s | %d | %d | %s | %d | %d/%d | %.2f | %s |" % (shape, transport, label, len(rs),
          rs[0].get("subscribers") or 0, " | ".join(cells), sum(r.get("lost") or 0 for r in rs),
          sum(1 for r in rs if r.get("clean")), len(rs), med("loadavg_1m"), cf))
PY
fi

# ---------------------------------------------------------------- floors
# This machine's floors in the same run (scripts/bench-floor.sh): a bare
# net/http handler, the relay and Centrifugo under wrk -t1 -c32, and one
# loop writing a 180 B WebSocket frame to 1,000 loopback sockets.
FLOOR_MD=""
# Self time by owner of the profiled runs (scripts/perf-owners.py), read by
# scripts/bench-bounds.py: the floor script's relay run and profile_run's.
PROF_DIR=$WORK/owners
mkdir -p "$PROF_DIR"
FLOOR_PROF=()
wanted profile && FLOOR_PROF=(FLOOR_PROFILE_DIR="$PROF_DIR")
if wanted floor && command -v wrk >/dev/null; then
	if (($(elapsed) > BUDGET)); then
		note "floors skipped: time budget of ${BUDGET}s used up"
	else
		log "floors (scripts/bench-floor.sh)"
		FLOOR_MD="$WORK/floor.md"
		env "${FLOOR_PROF[@]}" FLOOR_ROUNDS=${BENCH_FLOOR_ROUNDS:-7} FLOOR_SECONDS=5 FLOOR_RELAY_BINS="relay=$RELAY" FLOOR_CENTRIFUGO_BIN="$CF" \
			bash "$REPO/scripts/bench-floor.sh" >"$FLOOR_MD" 2>"$LOGS/floor.err" ||
			{ note "bench-floor failed: $(tail -n 2 "$LOGS/floor.err" | tr '\n' ' ')"; FLOOR_MD=""; }
	fi
elif wanted floor; then
	note "wrk is not installed (apt-get install -y wrk): no floors"
fi

# ---------------------------------------------------------------- write delay
# The relay alone at RELAY_WRITE_DELAY 0, 5 ms and 20 ms, 1,000 subscribers
# on one topic, offered 100 and 400 msgs/s: CPU per delivery and p99.
WD_MD=""
if wanted write-delay; then
	mkdir -p "$WORK/wd"
	for run in $(seq 1 "${BENCH_WD_RUNS:-1}"); do
		for wd in 0 5ms 20ms; do
			for rate in 100 400; do
				RELAY_EXTRA_ENV=(RELAY_WRITE_DELAY=$wd)
				if run_one "wd" relay memory "$wd.$rate.$run" --subscribers 1000 --topics 1 --publishers 16 \
					--rate "$rate" --messages $((rate * 4)) --duration 8s --grace 3s; then
					mv "$RES/wd.relay.$wd.$rate.$run.json" "$WORK/wd/$wd.$rate.$run.json"
				fi
			done
		done
	done
	RELAY_EXTRA_ENV=()
	WD_MD="$WORK/wd.md"
	python3 - "$WORK/wd" >"$WD_MD" <<'PY' || WD_MD=""
import glob, json, os, statistics, sys
rows = {}
for f in glob.glob(os.path.join(sys.argv[1], "*.json")):
    wd, rate, _ = os.path.basename(f)[:-5].split(".")
    rows.setdefault((wd, int(rate)), []).append(json.load(open(f)))
print("| RELAY_WRITE_DELAY | offered msgs/s | runs | sent/s | CPU µs/delivery | p50 ms | p99 ms | lost | clean |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
order = {"0": 0, "5ms": 1, "20ms": 2}
for (wd, rate) in sorted(rows, key=lambda k: (k[1], order.get(k[0], 9))):
    rs = rows[(wd, rate)]
    med = lambda k: statistics.median(r.get(k) or 0 for r in rs)
    print("| %s | %d | %d | %.0f | %.2f | %.1f | %.1f | %d | %d/%d |" % (wd, rate, len(rs), med("publishes_per_s"),
          med("cpu_us_per_delivery"), med("latency_p50_ms"), med("latency_p99_ms"),
          sum(r.get("lost") or 0 for r in rs), sum(1 for r in rs if r.get("clean")), len(rs)))
PY
fi

# ---------------------------------------------------------------- profiles
# profile_run LABEL ENGINE SECONDS ARGS...: one more run of a scenario with
# `perf record` on the server for SECONDS while it works, so the report can
# say where each server's CPU goes (Go binaries carry their symbols; perf
# needs no change to either server).
PROFILED=()
profile_run() {
	local label=$1 engine=$2 secs=$3 target
	shift 3
	for target in relay centrifugo; do
		local tag="profile.$label.$target"
		if (($(elapsed) > BUDGET)); then
			note "$tag skipped: time budget of ${BUDGET}s used up"
			continue
		fi
		flush_valkey
		start_server "$target" "$engine" "$tag" || { note "$tag: the $target server did not start"; continue; }
		local extra=()
		[[ $target == centrifugo ]] && extra=(--api-key bench-api-key)
		log "$tag: perf record for ${secs}s"
		"${BENCH[@]}" --target "$target" --addr "127.0.0.1:$SERVER_PORT" --server-pid "$SERVER_PID" --quiet \
			--label "$tag" "${extra[@]}" "$@" >"$LOGS/$tag.out" 2>"$LOGS/$tag.err" &
		local bench_pid=$!
		sleep 1
		timeout $((secs + 20)) perf record -F 499 -g -p "$SERVER_PID" -o "$WORK/$tag.perf" -- sleep "$secs" >"$LOGS/$tag.perf.log" 2>&1 || true
		wait "$bench_pid" || true
		stop_pid "$SERVER_PID"
		[[ -s $WORK/$tag.perf ]] || { note "$tag: perf recorded nothing ($(tail -n 1 "$LOGS/$tag.perf.log"))"; continue; }
		# Each report reads whole files (no early-closing reader, so no
		# SIGPIPE under pipefail); a failed report only loses that section.
		perf report -i "$WORK/$tag.perf" --stdio --children --sort symbol -g none --percent-limit 4 \
			>"$WORK/$tag.children" 2>/dev/null || true
		perf report -i "$WORK/$tag.perf" --stdio --no-children --sort dso -g none \
			>"$WORK/$tag.dsos" 2>/dev/null || true
		perf report -i "$WORK/$tag.perf" --stdio --children --sort symbol -g none \
			>"$WORK/$tag.all" 2>/dev/null || true
		awk '/%/ && !/\[k\]/ && n < 30 {n++; c=$1; s=$2; $1=""; $2=""; $3=""; sub(/^ +/, ""); sub(/ +- +- *$/, "");
			printf "| %s | %s | `%s` |\n", c, s, $0}' "$WORK/$tag.children" >"$WORK/$tag.top"
		awk '/%/ && !/^#/ {printf "%s %s; ", $2, $1}' "$WORK/$tag.dsos" >"$WORK/$tag.dso"
		awk '!found && $0 ~ /\] syscall\.write +-/ {print $1; found=1}' "$WORK/$tag.all" >"$WORK/$tag.write"
		# Self time by owner (scripts/perf-owners.py): the server's own
		# packages against the libraries, Go's runtime and the kernel.
		local own=github.com/pulsar-relay/relay/
		[[ $target == centrifugo ]] && own=github.com/centrifugal/
		perf report -i "$WORK/$tag.perf" --stdio --no-children --sort symbol -g none >"$WORK/$tag.self" 2>/dev/null &&
			python3 "$REPO/scripts/perf-owners.py" "$WORK/$tag.self" --own "$own" >"$PROF_DIR/$label.$target.json" 2>>"$LOGS/$tag.perf.log" ||
			rm -f "$PROF_DIR/$label.$target.json"
		PROFILED+=("$label.$target")
	done
}

if ! wanted profile; then
	:
elif command -v perf >/dev/null; then
	profile_run fanout-memory memory 8 "${FANOUT[@]}"
	profile_run many-topics-memory memory 6 "${MANY[@]}"
	if [[ -n $VALKEY_PORT ]]; then
		profile_run ingest-valkey valkey 4 "${INGEST[@]}"
		profile_run ingest-valkey-1topic valkey 4 "${INGEST_1TOPIC[@]}"
	fi
else
	note "perf is not installed: no CPU profiles (apt-get install linux-perf)"
fi

# ---------------------------------------------------------------- report
shopt -s nullglob
reports=("$RES"/*.json)
if ((${#reports[@]} == 0)) && [[ -z $FLOOR_MD && -z $WD_MD && -z $TR_MD ]] && ((${#PROFILED[@]} == 0)); then
	echo "bench-compare: no run produced a report; BENCHMARKS.md left as it was" >&2
	cat "$NOTES" >&2
	exit 1
fi
SUMMARY="(no side-by-side scenario was selected in this run)"
((${#reports[@]} == 0)) || SUMMARY=$("${BENCH[@]}" summarize --step-prefix fanout-limit --max-p99-ms 250 \
	--goal "ingest-memory cpu_us_per_publish <= 1" \
	--goal "ingest-valkey publishes_per_s >= 1.5" \
	--goal "ingest-valkey-1topic publishes_per_s >= 1.5" \
	--goal "many-topics-memory latency_p99_ms <= 1" \
	--goal "many-topics-memory cpu_us_per_delivery <= 0.8" \
	--goal "idle-10k kb_per_connection <= 0.5" \
	--goal "idle-50k kb_per_connection <= 0.5" \
	"${reports[@]}")

cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
mem_total=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)
valkey_version=$([[ -n $VALKEY_BIN ]] && "$VALKEY_BIN" --version | head -1 || echo "none")
commit=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(cd "$REPO" && git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo " (with uncommitted changes)" || true)

{
	cat <<EOF
# Benchmarks: the relay and Centrifugo side by side

Generated by \`scripts/bench-compare.sh\` (\`make bench-compare\`) on $(date -u +%Y-%m-%dT%H:%MZ)
from relay commit \`$commit\`$dirty, in $(elapsed) s. Do not edit by hand: rerun the script.

## Machine

- CPU: $cpu_model, \`nproc\` = $(nproc)
- Memory: $mem_total; kernel $(uname -r); $(go version | cut -d' ' -f3-4)
- Load average (1, 5, 15 min) when the script started: $LOAD_START; when it ended: $(cut -d' ' -f1-3 /proc/loadavg).
  Each table also shows the median 1-minute load when its runs started; with
  2 cores, anything much above 2 means other work was competing for the CPU.
- Centrifugo $CF_VERSION (built with \`go install github.com/centrifugal/centrifugo/v6@$CF_VERSION\`)
- Valkey-compatible server: $valkey_version

The load generator, the server under test and (for the Valkey scenarios) the
store share these 2 cores, and the machine is shared with other work, so the
numbers are noisy: each scenario ran $RUNS times per system ($VALKEY_INGEST_RUNS for the two
Valkey ingest scenarios, whose single runs move most), alternating relay
and Centrifugo (the order flips every run), each run on a freshly started
server, and the tables show medians. Server CPU (utime+stime of the server
process from /proc, over the publish phase and the wait for the last
deliveries) is the fairest figure here, since the load generator's own CPU
use does not count against the server.

## How each figure is measured

- The load generator is \`$BENCH_NAME\` (package \`loadgen\`). Subscriber *i*
  listens to topic *i* mod *T*; message *j* goes to topic *j* mod *T*. Each
  payload is \`{"seq","sent_ns","pub"}\`; latency is from just before the
  publish request to the moment the subscriber decoded the delivery, on one
  monotonic clock.
- lost: acknowledged (201 / API result) messages a subscriber of their topic
  never received within the grace period; duplicated: received twice;
  out of order: a seq lower than one already received from the same publisher
  on the same topic (each publisher waits for its answer before the next
  publish, so that order is owed).
- server CPU µs/delivery: server CPU over the publish phase / deliveries.
- server KB/connection: (RSS after 10 s idle with all connections open − RSS
  before connecting) / connections still open when the RSS was sampled
  (\`held\` in the JSON report: a long-poll refused by the server or a
  dropped stream holds nothing and is not counted).
- A run is clean when nothing was lost, duplicated or reordered and no publish,
  connect or subscriber failed.
- The ingest scenarios saturate both cores (server, load generator and store
  together; the load generator alone spends about 16 µs of CPU
  per publish). Their publishes/s is then set by how much CPU each server
  needs per publish, so read server CPU µs/publish first.

## Servers

$(if [[ -n ${BENCH_SERVER_GOMAXPROCS:-} ]]; then echo "Both servers ran with GOMAXPROCS=$BENCH_SERVER_GOMAXPROCS (BENCH_SERVER_GOMAXPROCS); the load generator with Go's default."; else echo "Both servers ran with Go's default GOMAXPROCS ($(nproc))."; fi)

- relay: \`RELAY_HTTP_ADDR=127.0.0.1:PORT RELAY_MAX_CONNECTIONS=20000 RELAY_WS_UPGRADE_RATE=100000 RELAY_RATE_CONNECTIONS=0 RELAY_RATE_SUBSCRIPTIONS=0 RELAY_LOG_LEVEL=warn [RELAY_VALKEY_ADDR=127.0.0.1:VPORT] relay serve\`
- Centrifugo: \`centrifugo -c config.json\` with anonymous clients allowed
  (\`client.insecure\`), history kept on every channel like the relay keeps
  every message (\`channel.without_namespace.history_size: 1000000\`,
  \`history_ttl: 24h\`), \`engine.type\` memory or redis
  (\`engine.redis.address: ["redis://127.0.0.1:VPORT"]\`), log level warn:

\`\`\`json
$(centrifugo_config memory PORT /dev/stdout)
\`\`\`

- Valkey-compatible store: \`$(basename "${VALKEY_BIN:-valkey-server}") --bind 127.0.0.1 --port VPORT --save '' --appendonly yes --appendfsync everysec\`,
  emptied (FLUSHALL) before every run.

## Scenarios and commands

Each run: \`$BENCH_NAME --target relay|centrifugo --addr 127.0.0.1:PORT --server-pid PID --label LABEL --json FILE [--api-key KEY] [--store-pid VALKEY_PID]\` plus
the arguments below (\`--store-pid\` on the Valkey-backed runs: the store's CPU per publish over the
same phase, next to the server's and the load generator's, is the machine's whole budget per publish):

| label | store | arguments |
|---|---|---|
EOF
	for label in "${SCEN_ORDER[@]}"; do
		printf '| %s | %s | `%s` |\n' "$label" "${SCEN_ENGINE[$label]}" "${SCEN_ARGS[$label]}"
	done
	cat <<EOF

Medians and ratios: \`$BENCH_NAME summarize --step-prefix fanout-limit --max-p99-ms 250 --goal ... results/*.json\`.
For ratios, below 1 is better for the relay on latency, CPU, memory and
error figures; above 1 is better on rates. "ahead" calls a difference within
5% level.

## Results

$SUMMARY
EOF
	if [[ -n $TR_MD && -s $TR_MD ]]; then
		cat <<EOF

## Relay subscriber transports: WebSocket, long-poll and SSE (relay only)

Relay only: Centrifugo has no long-poll or SSE subscriber transport to
compare, so these rows have no Centrifugo figures. Fan-out: the fanout-memory
arguments (\`${FANOUT[*]}\`) with
\`--transport ws|poll|sse\`; its ws row is fanout-memory's relay runs.
Idle hold: \`${IDLE_T[*]} --transport ws|poll|sse\`
(one long-poll waiter or SSE stream per subscriber, each on its own
connection; for poll that is one \`POST /api/v1/poll\` waiting with
\`timeout: 30\`). The relay ran with
\`RELAY_POLL_MAX_WAITERS_PER_CLIENT=20000 RELAY_MAX_HTTP_CONNECTIONS=10000 RELAY_MAX_HTTP_CONNECTIONS_PER_CLIENT=10000\`
for these rows: every load generator connection comes from 127.0.0.1, one
client, and the defaults (50 waiters, 1,024 connections that are not
WebSockets per client) would refuse the rest with 429 or 503. Medians of
${BENCH_TRANSPORT_RUNS:-1} run(s) per poll, sse and idle row
(BENCH_TRANSPORT_RUNS; fewer than the side-by-side scenarios to keep the
script short) and of $RUNS for the fan-out ws row.

EOF
		cat "$TR_MD"
	fi
	if [[ -s $WORK/ws-floor ]] || [[ -n $FLOOR_MD && -s $FLOOR_MD ]]; then
		printf '\n## Floors: what this machine costs without the relay\n\n'
	fi
	if [[ -s $WORK/ws-floor ]]; then
		PYTHONPATH="$REPO/scripts" python3 - "$WORK/ws-floor" "$RES" "$ONEP_DIR" <<'PY' || true
import statistics, sys
from benchlib import median_of
floor = [float(x) for x in open(sys.argv[1]).read().split()]
def med(target, d=sys.argv[2], label="fanout-memory"):
    return median_of(d, label, target, "cpu_us_per_delivery")
f = statistics.median(floor)
print("### Fan-out at 100 msgs/s against the write floor, same minutes\n")
print(f"The write floor (`bench/floor ws -conns 1000 -rate 100 -duration 5s`) was taken after each pair of")
print(f"fanout-memory runs: {', '.join(f'{x:.2f}' for x in floor)} CPU µs/write, median {f:.2f}.\n")
print("| server | CPU µs/delivery (median) | vs the write floor |\n|---|---:|---:|")
for name, target in (("relay", "relay"), ("Centrifugo", "centrifugo")):
    m = med(target)
    if m is not None:
        print(f"| {name} | {m:.2f} | {m / f:.2f}x |")
m = med("relay", sys.argv[3], "fanout-memory-1p")
if m is not None:
    print(f"| relay with GOMAXPROCS=1 (one P: no hand-off between cores; run after each floor) | {m:.2f} | {m / f:.2f}x |")
print()
PY
	fi
	if [[ -n $FLOOR_MD && -s $FLOOR_MD ]]; then
		cat "$FLOOR_MD"
	fi
	if compgen -G "$VFLOOR_DIR/*.json" >/dev/null; then
		PYTHONPATH="$REPO/scripts" python3 - "$RES" "$VFLOOR_DIR" <<'PY' || true
import sys
from benchlib import median_of, reports
keys = ["publishes_per_s", "cpu_us_per_publish", "store_cpu_us_per_publish", "loadgen_cpu_us_per_publish"]
print("\n## Valkey ingest against the Valkey floor and the actor floor, same minutes\n")
print("After each relay/Centrifugo pair of the two Valkey ingest scenarios, the same load ran against")
print("`bench/floor valkey` on the same Valkey: the least a relay-shaped server does per publish (one")
print("script call that XADDs and PUBLISHes it, answered 201 once stored; one pattern subscription;")
print("each subscriber's frames coalesced into one write). It leaves out everything else the relay")
print("does (validation, limits, epochs, trimming, expiry, idempotency, back-pressure, metrics).")
print("Then against `bench/floor actor`: the same work in the relay's shape,")
print("on stock protoactor-go: a topic actor per topic and a connection actor per subscriber, with")
print("the relay's hand-offs per publish (handler to topic actor; one write of the batch queued")
print("meanwhile on a goroutine of its own, one script call storing it and announcing its frames;")
print("back to the topic actor and each handler; the announcement to the topic actor and on to each")
print("connection actor, one write each), and none of the relay's guarantees. The Valkey floor's")
print("distance to the actor floor is what the actor design costs; the actor floor's to the relay")
print("what the relay's own work costs. Then (the three in rotating order) Centrifugo with")
print("`GODEBUG=schedtrace=2147483647`, the setting `relay serve` and the floors give themselves")
print("(internal/sysmon, item 54; Centrifugo ships without it): the two servers under the same")
print("runtime policy. The three processes share the machine's cores, so publishes/s follows the")
print("sum of their CPU per publish. Medians, ratios to Centrifugo at its defaults; the last")
print("column is the sum.\n")
print("| scenario | server | runs | publishes/s | vs Centrifugo | server CPU µs/publish | Valkey CPU µs/publish | load generator CPU µs/publish | all three |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
SYSMON_CF = "Centrifugo with the relay's sysmon setting"
rates = {}  # (label, row name) -> median publishes/s
for label in ("ingest-valkey", "ingest-valkey-1topic"):
    cf = median_of(sys.argv[1], label, "centrifugo", "publishes_per_s")
    for name, d, lab, target in (("relay", sys.argv[1], label, "relay"),
                                 ("actor floor", sys.argv[2], label, "actorfloor"),
                                 ("Valkey floor", sys.argv[2], label, "floor"),
                                 (SYSMON_CF, sys.argv[2], label + "-sysmon", "centrifugo"),
                                 ("Centrifugo", sys.argv[1], label, "centrifugo")):
        n = len(reports(d, lab, target))
        if not n:
            continue
        m = [median_of(d, lab, target, k) for k in keys]
        if m[0] is None:
            continue
        vs = f"{m[0] / cf:.2f}x" if cf else "—"
        cpu = [f"{v:.1f}" if v else "—" for v in m[1:]]
        total = f"{sum(m[1:]):.1f}" if all(m[1:]) else "—"
        print(f"| {label} | {name} | {n} | {m[0]:.0f} | {vs} | {cpu[0]} | {cpu[1]} | {cpu[2]} | {total} |")
        rates[label, name] = m[0]
print()
for label in ("ingest-valkey", "ingest-valkey-1topic"):
    r, c = rates.get((label, "relay")), rates.get((label, SYSMON_CF))
    if r and c:
        print(f"{label}, both servers without sysmon's deep sleep: the relay makes {r / c:.2f}x Centrifugo's publishes/s.")
print()
PY
	fi
	if compgen -G "$NOGC_DIR/*.json" >/dev/null || compgen -G "$NOBG_DIR/*.json" >/dev/null || compgen -G "$SYSMON_DIR/*.json" >/dev/null; then
		PYTHONPATH="$REPO/scripts" python3 - "$RES" "$NOGC_DIR" "$NOBG_DIR" "$SYSMON_DIR" <<'PY' || true
import sys
from benchlib import median_of, reports
def med(d, label, target):
    """Medians of CPU per delivery and p99 over the reports, and their count."""
    n = sum(1 for r in reports(d, label, target) if r.get("cpu_us_per_delivery"))
    return (median_of(d, label, target, "cpu_us_per_delivery"), median_of(d, label, target, "latency_p99_ms"), n)
sysmon_cf = med(sys.argv[4], "many-topics-memory-sysmon", "centrifugo")
rows = [("relay", med(sys.argv[1], "many-topics-memory", "relay")),
        ("relay with GOGC=off (run after each pair)", med(sys.argv[2], "many-topics-memory-nogc", "relay")),
        ("relay built without net/http's background read (run after each pair)",
         med(sys.argv[3], "many-topics-memory-nobg", "relay")),
        ("Centrifugo with GODEBUG=schedtrace=2147483647, the relay's own setting (run after each pair)", sysmon_cf),
        ("Centrifugo", med(sys.argv[1], "many-topics-memory", "centrifugo"))]
cf_cpu, cf_p99, _ = rows[-1][1]
ratio = lambda v, base: f"{v / base:.2f}x" if v and base else "—"
print("\n## Many topics: the relay without the collector and without net/http's background read, and Centrifugo without sysmon's deep sleep, same minutes\n")
print("The relay ran many-topics-memory twice more after each relay/Centrifugo pair: with `GOGC=off`,")
print("the same work without the collector's mark phases (the heap is not collected over a run")
print("this short), and built with `go build -overlay` from a copy of net/http that never starts")
print("its per-request background read (`nethttp_nobg_overlay` in scripts/bench-lib.sh; a")
print("measurement build, never shipped: a handler's context is then not canceled when its client")
print("leaves). net/http starts that goroutine at each request body's end, which wakes the other")
print("core's thread, and aborts it with a past read deadline before the next request; no handler")
print("can avoid it. Then Centrifugo ran it once more with `GODEBUG=schedtrace=2147483647`, the")
print("setting `relay serve` gives itself (internal/sysmon, item 54). Go's sysmon thread sleeps")
print("deeply while every P is idle, and the next system call wakes it and resets its poll to every")
print("20 µs for at least 50 polls (runtime/proc.go: `sysmon`, `entersyscallWakeSysmon`): at 2,000")
print("requests/s, idle between them, that is tens of thread wake-ups per request. With a schedtrace")
print("period set, sysmon never sleeps deeply and backs off to 10 ms polls. Centrifugo ships without")
print("it. Ratios are to Centrifugo's medians at its defaults.\n")
print("| server | runs | CPU µs/delivery | vs Centrifugo | latency p99 ms | vs Centrifugo |\n|---|---:|---:|---:|---:|---:|")
for name, (cpu, p99, n) in rows:
    if cpu is not None:
        print(f"| {name} | {n} | {cpu:.2f} | {ratio(cpu, cf_cpu)} | {p99 or 0:.2f} | {ratio(p99, cf_p99)} |")
r_cpu, c_cpu = rows[0][1][0], sysmon_cf[0]
if r_cpu and c_cpu:
    print(f"\nBoth without sysmon's deep sleep: the relay's CPU per delivery is {r_cpu / c_cpu:.2f}x Centrifugo's.")
print()
PY
	fi
	if [[ -n $WD_MD && -s $WD_MD ]]; then
		cat <<EOF

## Write delay (relay only)

\`RELAY_WRITE_DELAY\` lets a connection collect frames before one socket write.
1,000 subscribers on 1 topic, 16 publishers, 4 s of messages at the offered
rate (\`--subscribers 1000 --topics 1 --publishers 16 --rate R --messages 4R --duration 8s --grace 3s\`);
medians of ${BENCH_WD_RUNS:-1} run(s) per cell (BENCH_WD_RUNS).

EOF
		cat "$WD_MD"
	fi
	if ((${#PROFILED[@]} > 0)); then
		cat <<EOF

## Where the server CPU goes

One extra run of a scenario per server with \`perf record -F 499 -g -p PID -- sleep N\`
while it works (fanout-memory: 8 s of delivery; many-topics-memory: 6 s;
ingest-valkey and ingest-valkey-1topic: 4 s of publishing). Cumulative share of the sampled CPU (the function and everything
it calls) and self share, user-space functions at 4% or more; the split by
binary shows how much is kernel time (on loopback the kernel's send path also
carries the receiver's TCP work).

EOF
		for p in "${PROFILED[@]}"; do
			printf '### %s, %s\n\nBy binary: %s\n' "${p%.*}" "${p##*.}" "$(cat "$WORK/profile.$p.dso")"
			if [[ -s $WORK/profile.$p.write ]]; then
				printf '\nUnder `syscall.write` (write(2) on sockets): %s of the sampled CPU.\n' "$(cat "$WORK/profile.$p.write")"
			fi
			printf '\n| cumulative | self | function |\n|---:|---:|---|\n'
			cat "$WORK/profile.$p.top"
			printf '\n'
		done
		python3 "$REPO/scripts/bench-bounds.py" "$PROF_DIR" "$RES" "$WORK/ws-floor" "$(nproc)" 2>>"$LOGS/bounds.err" || true
	fi
	# Where issue 13's targets stand, hand-written; the log of the changes
	# behind them (bench/NOTES.md) stays out of the report.
	if [[ -s $REPO/bench/STATUS.md ]]; then
		printf '\n'
		cat "$REPO/bench/STATUS.md"
	fi
	if [[ -s $NOTES ]]; then
		printf '\n## Notes from this run\n\n'
		cat "$NOTES"
	fi
	# The scale-out section comes from its own script
	# (scripts/bench-scaleout.sh, about 7 minutes): its last output is kept
	# in bench/SCALEOUT.md and carried over.
	if [[ -s $REPO/bench/SCALEOUT.md ]]; then
		printf '\n'
		cat "$REPO/bench/SCALEOUT.md"
	fi
} >"$OUT"

log "wrote $OUT"
