#!/usr/bin/env bash
# How long after Valkey comes up a relay started without it is ready: starts
# the relay with Valkey down, starts redis-server DOWN seconds later, and
# prints the seconds from then to the first /ready 200. Loopback only.
#   scripts/ready-after-valkey.sh [relay-binary] [down-seconds...]
#   go build -o bin/relay ./cmd/relay && scripts/ready-after-valkey.sh bin/relay 4 8 13 17
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-bin/relay}
shift || true
downs=${*:-4 8 13 17}
addr=${ADDR:-127.0.0.1:18555}
vport=${VALKEY_PORT:-6397}
for down in $downs; do
	RELAY_HTTP_ADDR=$addr RELAY_VALKEY_ADDR=127.0.0.1:$vport "$bin" >/dev/null 2>&1 &
	relay=$!
	sleep "$down"
	redis-server --port "$vport" --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
	valkey=$!
	start=$(date +%s%N)
	for _ in $(seq 1 600); do # at most 30 s
		curl -sf -o /dev/null "http://$addr/ready" && break
		sleep 0.05
	done
	end=$(date +%s%N)
	echo "Valkey down ${down} s at start: ready $(((end - start) / 1000000)) ms after it came up"
	kill "$relay" "$valkey"
	wait "$relay" "$valkey" 2>/dev/null || true
done
