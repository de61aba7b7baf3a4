# bench-lib.sh: shell functions the bench scripts share; source it.

# stop_pid PID: TERM, then KILL after 10 s. Only for processes the
# sourcing script started.
stop_pid() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for i in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# free_port: a port below the ephemeral range that nothing listens on.
free_port() {
	local p i
	for i in $(seq 1 200); do
		p=$((20000 + RANDOM % 10000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	echo "no free port found" >&2
	return 1
}

# wait_tcp PORT PID: until 127.0.0.1:PORT accepts a connection (at most
# 10 s) or PID dies.
wait_tcp() {
	local port=$1 pid=$2 i
	for i in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || return 1
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# wait_http PORT PATH PID: until GET answers 200 (at most 20 s) or PID dies.
wait_http() {
	local port=$1 path=$2 pid=$3 i
	for i in $(seq 1 200); do
		kill -0 "$pid" 2>/dev/null || return 1
		if [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$port$path" || true) == 200 ]]; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

# centrifugo_config ENGINE PORT FILE: Centrifugo on 127.0.0.1:PORT with
# history on every channel, as the relay keeps every message (1M per topic,
# 24 h, the relay's defaults); ENGINE memory, or valkey (its Redis engine
# on 127.0.0.1:$VALKEY_PORT).
centrifugo_config() {
	local engine=$1 port=$2 file=$3 engine_json
	if [[ $engine == valkey ]]; then
		engine_json="{\"type\": \"redis\", \"redis\": {\"address\": [\"redis://127.0.0.1:$VALKEY_PORT\"]}}"
	else
		engine_json='{"type": "memory"}'
	fi
	cat >"$file" <<JSON
{
  "http_server": {"address": "127.0.0.1", "port": $port},
  "client": {"insecure": true},
  "http_api": {"key": "bench-api-key"},
  "engine": $engine_json,
  "channel": {"without_namespace": {"history_size": 1000000, "history_ttl": "24h"}},
  "health": {"enabled": true},
  "usage_stats": {"disabled": true},
  "log": {"level": "warn"}
}
JSON
}

# nethttp_nobg_overlay DIR: write DIR/overlay.json for `go build -overlay`,
# replacing Go's net/http/server.go with a copy that never starts the
# per-request background read (the goroutine net/http starts at a request
# body's end to see the client go away, and aborts with a past read
# deadline before the next request). For measurement builds only: without
# it a handler's context is not canceled when its client leaves. Fails
# when this Go's server.go has no background-read start of the known shape.
nethttp_nobg_overlay() {
	local dir=$1 src
	src="$(go env GOROOT)/src/net/http/server.go"
	mkdir -p "$dir"
	python3 - "$src" "$dir/server.go" <<'PY' || return 1
import sys
s = open(sys.argv[1]).read()
old = """		if requestBodyRemains(req.Body) {
			registerOnHitEOF(req.Body, w.conn.r.startBackgroundRead)
		} else {
			w.conn.r.startBackgroundRead()
		}
"""
if s.count(old) != 1:
    sys.exit("net/http's server.go has no background-read start of the known shape")
open(sys.argv[2], "w").write(s.replace(old, ""))
PY
	printf '{"Replace": {"%s": "%s"}}\n' "$src" "$dir/server.go" >"$dir/overlay.json"
}
