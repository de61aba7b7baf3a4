package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulsar-relay/relay/gateway"
)

// limitMetrics are the gateway's budgets (gateway.LimitObserver).
type limitMetrics struct {
	httpConns   prometheus.Gauge
	httpRefused prometheus.Counter
	bodyBytes   prometheus.Gauge
	upgraders   prometheus.Gauge
	hits        *prometheus.CounterVec
	hitsBy      map[string]prometheus.Counter
}

// knownLimitReasons are the reason label values of relay_limit_hits_total.
var knownLimitReasons = []string{"body_budget", "decode_slots", "history_bytes", "login_slots", "ws_read_rate", "ws_upgrade_rate"}

func newLimitMetrics(f factory) *limitMetrics {
	l := &limitMetrics{
		httpConns: f.gauge("relay_http_connections",
			"Open TCP connections that are not WebSockets (bounded by RELAY_MAX_HTTP_CONNECTIONS)."),
		httpRefused: f.counter("relay_http_connections_refused_total",
			"Connections refused with a canned 503 because RELAY_MAX_HTTP_CONNECTIONS were open."),
		bodyBytes: f.gauge("relay_http_body_bytes_in_flight",
			"Request body bytes reserved by requests being read or handled (bounded by RELAY_MAX_BODY_BYTES_IN_FLIGHT)."),
		upgraders: f.gauge("relay_ws_upgrade_clients",
			"Client addresses whose WebSocket upgrade pace (RELAY_WS_UPGRADE_RATE) is held: those that connected within the last second or so (at most 65,536)."),
		hits: f.counterVec("relay_limit_hits_total",
			"Requests refused, cut or paced by a budget, by reason (body_budget: 503, body bytes in flight over budget; decode_slots: 503, a large body waited past the publish timeout for one of the GOMAXPROCS/2 decode slots; history_bytes: a history page or a long-poll answer ended early by RELAY_HISTORY_MAX_BYTES; login_slots: 503, a login waited past the publish timeout for one of the GOMAXPROCS/2 password-check slots; ws_read_rate: a WebSocket's reading paused by RELAY_WS_READ_RATE; ws_upgrade_rate: an upgrade waited for, or was refused by, RELAY_WS_UPGRADE_RATE).",
			"reason"),
	}
	l.hitsBy = counters(l.hits, knownLimitReasons)
	return l
}

var _ gateway.LimitObserver = (*Registry)(nil)

// HTTPConnections moves relay_http_connections.
func (r *Registry) HTTPConnections(delta int) { r.limits.httpConns.Add(float64(delta)) }

// WSUpgradeClients sets relay_ws_upgrade_clients.
func (r *Registry) WSUpgradeClients(n int) { r.limits.upgraders.Set(float64(n)) }

// HTTPConnectionRefused counts relay_http_connections_refused_total.
func (r *Registry) HTTPConnectionRefused() { r.limits.httpRefused.Inc() }

// BodyBytesInFlight moves relay_http_body_bytes_in_flight.
func (r *Registry) BodyBytesInFlight(delta int64) { r.limits.bodyBytes.Add(float64(delta)) }

// LimitHit counts relay_limit_hits_total{reason}.
func (r *Registry) LimitHit(reason string) { lookup(r.limits.hitsBy, r.limits.hits, reason).Inc() }
