#!/usr/bin/env bash
# Runs the issue-15 attacks (scripts/attack) against a fresh relay each, with
# default settings on loopback, for DURATION each, and prints the figures.
#   scripts/attack.sh [relay-binary] [attack...]
#   RELAY_BIN=bin/relay DURATION=30s scripts/attack.sh bin/relay history bulk slowbody
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-bin/relay}
shift || true
attacks=${*:-slowbody history bulk pings churn replay}
duration=${DURATION:-30s}
addr=${ADDR:-127.0.0.1:18080}
go build -o bin/attack ./scripts/attack
for a in $attacks; do
	log=$(mktemp)
	RELAY_HTTP_ADDR=$addr "$bin" serve >"$log" 2>&1 &
	pid=$!
	for _ in $(seq 50); do curl -fs "http://$addr/health" >/dev/null && break; sleep 0.1; done
	echo "== $a ($bin, pid $pid)"
	bin/attack -addr "$addr" -pid "$pid" -attack "$a" -duration "$duration" 2>/dev/null || true
	kill "$pid"; wait "$pid" 2>/dev/null || true
	rm -f "$log"
	sleep 2
done
