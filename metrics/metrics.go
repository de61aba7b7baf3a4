package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pulsar-relay/relay/actors"
)

// DefaultMaxTopics is the default of RELAY_METRICS_MAX_TOPICS.
const DefaultMaxTopics = 100

// OtherTopic is the topic label value of every topic beyond MaxTopics.
const OtherTopic = "_other"

var (
	// Buckets of relay_storage_latency_seconds: those of the delivery
	// latency, from 50 µs (memory store) to 10 s (a stalled Valkey).
	latencyBuckets = func() []float64 {
		b := make([]float64, len(latencyBounds))
		for i, d := range latencyBounds {
			b[i] = d.Seconds()
		}
		return b
	}()
	// Long polls wait up to 60 s.
	httpBuckets = []float64{
		0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
		0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
	}
)

// Label values resolved when the Registry is made, so the series exist (at
// 0) from the first scrape and the hot path finds them without a lookup.
var (
	knownTransports = []string{"ws", "poll", "sse"}
	knownKinds      = []string{"topic", "connection"}
	knownReasons    = []string{"slow_consumer"}
)

// Registry holds the relay's metrics. It implements actors.Observer and
// gateway.Observer.
//
// Concurrency: every method is safe for concurrent use.
type Registry struct {
	reg       *prometheus.Registry
	maxTopics int

	sent            *prometheus.CounterVec
	latency         *latencyHistogram
	received        prometheus.Counter
	delivered       *prometheus.CounterVec
	connections     *prometheus.GaugeVec
	subscriptions   prometheus.Gauge
	topicsActive    prometheus.Gauge
	restarts        *prometheus.CounterVec
	stops           *prometheus.CounterVec
	dropped         *prometheus.CounterVec
	slowDisconnects prometheus.Counter
	replayBytes     prometheus.Gauge
	replayWaits     prometheus.Counter
	storageOps      *prometheus.CounterVec
	storageLatency  *prometheus.HistogramVec
	httpRequests    *prometheus.CounterVec
	httpDuration    *prometheus.HistogramVec
	httpSeries      sync.Map               // httpKey -> *httpSeries: resolved once per route and status
	limits          *limitMetrics          // limits.go
	rateLimited     *prometheus.CounterVec // ratelimit.go
	authSizes       *authSizes             // ratelimit.go
	feed            *feedMetrics           // feed.go

	// Children of the known label values; read-only after New.
	deliveredBy   map[string]prometheus.Counter
	connectionsBy map[string]prometheus.Gauge
	restartsBy    map[string]prometheus.Counter
	stopsBy       map[string]prometheus.Counter
	droppedBy     map[string]prometheus.Counter

	mu     sync.Mutex
	topics map[string]*topicSeries // at most maxTopics entries
	other  *topicSeries            // made on the first topic over the cap
}

var _ actors.Observer = (*Registry)(nil)

// New returns a Registry whose topic label takes at most maxTopics distinct
// values (DefaultMaxTopics is the relay's default; 0 puts every topic under
// "_other"; a negative value counts as 0).
func New(maxTopics int) *Registry {
	if maxTopics < 0 {
		maxTopics = 0
	}
	r := &Registry{
		reg:       prometheus.NewRegistry(),
		maxTopics: maxTopics,
		topics:    make(map[string]*topicSeries),
	}
	r.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	f := factory{r.reg}
	r.sent = f.counterVec("relay_messages_sent_total",
		"Messages published and stored, by topic (beyond the topic cap under \"_other\").", "topic")
	r.latency = newLatencyHistogram("relay_message_latency_seconds",
		"Time from a publish's arrival until its frame was written to one subscriber's socket.", "topic")
	r.reg.MustRegister(r.latency)
	r.rateLimited = f.counterVec("relay_rate_limited_total",
		"Requests and WebSocket frames refused by a rate or concurrency limit, by route.", "route")
	r.authSizes = newAuthSizes()
	r.reg.MustRegister(r.authSizes)
	r.received = f.counter("relay_messages_received_total",
		"Publish requests received and valid, before they are stored.")
	r.delivered = f.counterVec("relay_messages_delivered_total",
		"Message frames written to subscribers' sockets, by transport.", "transport")
	r.connections = f.gaugeVec("relay_connections",
		"Open subscriber connections, by transport.", "transport")
	r.subscriptions = f.gauge("relay_subscriptions",
		"Active subscriptions (one per connection and topic).")
	r.topicsActive = f.gauge("relay_topics_active",
		"Topic actors running.")
	r.restarts = f.counterVec("relay_actor_restarts_total",
		"Supervised restarts of actors, by kind (topic, connection).", "kind")
	r.stops = f.counterVec("relay_actor_stops_total",
		"Actors stopped by their supervisor after failures (restart budget spent), by kind.", "kind")
	r.dropped = f.counterVec("relay_messages_dropped_total",
		"Messages not delivered to a subscriber, by reason (slow_consumer: dropped by the drop-oldest policy).", "reason")
	r.slowDisconnects = f.counter("relay_slow_consumer_disconnects_total",
		"Connections closed with 4008 because their outgoing queue overflowed.")
	r.replayBytes = f.gauge("relay_replay_bytes",
		"Replay-page bytes reserved in memory by all connections (bounded by RELAY_REPLAY_BYTES).")
	r.replayWaits = f.counter("relay_replay_waits_total",
		"Replay pages that waited because the process's replay budget was spent.")
	r.storageOps = f.counterVec("relay_storage_operations_total",
		"Store calls, by op (append, range, rev_range, tips, ping) and result (ok, error).", "op", "result")
	r.storageLatency = f.histogramVec("relay_storage_latency_seconds",
		"Duration of store calls, by op.", latencyBuckets, "op")
	r.httpRequests = f.counterVec("relay_http_requests_total",
		"HTTP requests, by chi route pattern and status code, counted when they end (a WebSocket at its upgrade).",
		"route", "code")
	r.httpDuration = f.histogramVec("relay_http_request_duration_seconds",
		"Duration of HTTP requests, by chi route pattern; WebSocket upgrades (101) are not observed.",
		httpBuckets, "route")

	r.limits = newLimitMetrics(f)
	r.feed = newFeedMetrics(f)

	r.deliveredBy = counters(r.delivered, knownTransports)
	r.restartsBy = counters(r.restarts, knownKinds)
	r.stopsBy = counters(r.stops, knownKinds)
	r.droppedBy = counters(r.dropped, knownReasons)
	r.connectionsBy = make(map[string]prometheus.Gauge, len(knownTransports))
	for _, t := range knownTransports {
		r.connectionsBy[t] = r.connections.WithLabelValues(t)
	}
	return r
}

// Handler serves the registry in the Prometheus text (or protobuf) format.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{})
}

// Gatherer is the underlying registry, for tests and extra collectors.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// MaxTopics is the cap on distinct topic label values.
func (r *Registry) MaxTopics() int { return r.maxTopics }

// topicSeries is one topic label value: its counter and latency shards,
// with a handle per shard.
type topicSeries struct {
	handles []topicHandle
	next    int // the handle Topic hands out next; under Registry.mu
}

// topicHandle is a per-topic handle: its series, resolved once.
type topicHandle struct {
	sent    prometheus.Counter
	latency *latencyShard
}

var _ actors.TopicObserver = (*topicHandle)(nil)

func (h *topicHandle) Stored(n int) {
	if n > 0 {
		h.sent.Add(float64(n))
	}
}

func (h *topicHandle) DeliveryLatency(d time.Duration) { h.latency.observe(d) }

// Topic returns a handle on topic's series. The first MaxTopics distinct
// topics get their own label value, for the life of the process (a counter
// that vanished would look like a reset); any later topic, and a topic
// literally named "_other", counts under "_other". Successive calls for one
// series hand out its latency shards in turn.
func (r *Registry) Topic(topic string) actors.TopicObserver {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.topics[topic]
	switch {
	case s != nil:
	case topic == OtherTopic || len(r.topics) >= r.maxTopics:
		if r.other == nil {
			r.other = r.newSeries(OtherTopic)
		}
		s = r.other
	default:
		s = r.newSeries(topic)
		r.topics[topic] = s
	}
	h := &s.handles[s.next]
	s.next = (s.next + 1) % len(s.handles)
	return h
}

func (r *Registry) newSeries(label string) *topicSeries {
	sent := r.sent.WithLabelValues(label)
	lat := r.latency.newSeries(label)
	s := &topicSeries{handles: make([]topicHandle, len(lat.shards))}
	for i, sh := range lat.shards {
		s.handles[i] = topicHandle{sent: sent, latency: sh}
	}
	return s
}

// TopicsActive moves relay_topics_active.
func (r *Registry) TopicsActive(delta int) { r.topicsActive.Add(float64(delta)) }

// Subscriptions moves relay_subscriptions.
func (r *Registry) Subscriptions(delta int) { r.subscriptions.Add(float64(delta)) }

// ActorRestarted counts relay_actor_restarts_total{kind}.
func (r *Registry) ActorRestarted(kind string) { lookup(r.restartsBy, r.restarts, kind).Inc() }

// ActorStopped counts relay_actor_stops_total{kind}.
func (r *Registry) ActorStopped(kind string) { lookup(r.stopsBy, r.stops, kind).Inc() }

// Delivered counts relay_messages_delivered_total{transport}; for the known
// transports it does not allocate.
func (r *Registry) Delivered(transport string, n int) {
	if n > 0 {
		lookup(r.deliveredBy, r.delivered, transport).Add(float64(n))
	}
}

// Dropped counts relay_messages_dropped_total{reason}.
func (r *Registry) Dropped(reason string, n int) {
	if n > 0 {
		lookup(r.droppedBy, r.dropped, reason).Add(float64(n))
	}
}

// SlowConsumerDisconnected counts relay_slow_consumer_disconnects_total.
func (r *Registry) SlowConsumerDisconnected() { r.slowDisconnects.Inc() }

// Received counts relay_messages_received_total.
func (r *Registry) Received(n int) {
	if n > 0 {
		r.received.Add(float64(n))
	}
}

// Connections moves relay_connections{transport}.
func (r *Registry) Connections(transport string, delta int) {
	g, ok := r.connectionsBy[transport]
	if !ok {
		g = r.connections.WithLabelValues(transport)
	}
	g.Add(float64(delta))
}

// HTTPRequest counts relay_http_requests_total{route,code} and observes
// relay_http_request_duration_seconds{route}, except for a WebSocket (101),
// whose duration is the connection's lifetime. route must be a pattern.
func (r *Registry) HTTPRequest(route string, status int, d time.Duration) {
	k := httpKey{route, status}
	s, ok := r.httpSeries.Load(k)
	if !ok { // route is a pattern and status a code: a few dozen series in all
		hs := &httpSeries{count: r.httpRequests.WithLabelValues(route, strconv.Itoa(status))}
		if status != http.StatusSwitchingProtocols { // an upgrade's duration is the connection's life
			hs.duration = r.httpDuration.WithLabelValues(route)
		}
		s, _ = r.httpSeries.LoadOrStore(k, hs)
	}
	hs := s.(*httpSeries)
	hs.count.Inc()
	if hs.duration != nil {
		hs.duration.Observe(d.Seconds())
	}
}

type httpKey struct {
	route  string
	status int
}

// httpSeries are one route and status's series, resolved once (a label
// lookup hashes the labels and takes the vector's lock on every request).
type httpSeries struct {
	count    prometheus.Counter
	duration prometheus.Observer // nil for 101
}

func lookup(known map[string]prometheus.Counter, vec *prometheus.CounterVec, label string) prometheus.Counter {
	if c, ok := known[label]; ok {
		return c
	}
	return vec.WithLabelValues(label)
}

func counters(vec *prometheus.CounterVec, labels []string) map[string]prometheus.Counter {
	m := make(map[string]prometheus.Counter, len(labels))
	for _, l := range labels {
		m[l] = vec.WithLabelValues(l)
	}
	return m
}

// factory makes and registers metrics.
type factory struct{ reg prometheus.Registerer }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(g)
	return g
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}
