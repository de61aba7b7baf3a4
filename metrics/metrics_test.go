package metrics

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

// gathered returns the registry's families by name.
func gathered(t *testing.T, r *Registry) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := r.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]*dto.MetricFamily, len(fams))
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// sample returns the counter, gauge or histogram count of name whose labels
// include want (label=value pairs), or -1 when there is none.
func sample(t *testing.T, r *Registry, name string, want ...string) float64 {
	t.Helper()
	f := gathered(t, r)[name]
	if f == nil {
		return -1
	}
metric:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(want); i += 2 {
			if labels[want[i]] != want[i+1] {
				continue metric
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

func TestTopicCapFirstComeFirstServed(t *testing.T) {
	r := New(3)
	// Each call is one subscription (or topic actor) start; "a" comes
	// back after the cap is reached and keeps its own series.
	for _, tp := range []string{"a", "a", "b", "c", "d", "e", "_other", "a"} {
		r.Topic(tp).Stored(1)
		r.Topic(tp).DeliveryLatency(time.Millisecond)
	}
	for tp, want := range map[string]float64{"a": 3, "b": 1, "c": 1, "_other": 3, "d": -1, "e": -1} {
		if got := sample(t, r, "relay_messages_sent_total", "topic", tp); got != want {
			t.Errorf("sent{topic=%q} = %v, want %v", tp, got, want)
		}
		if got := sample(t, r, "relay_message_latency_seconds", "topic", tp); got != want {
			t.Errorf("latency{topic=%q} count = %v, want %v", tp, got, want)
		}
	}
	if n := len(gathered(t, r)["relay_message_latency_seconds"].GetMetric()); n != 4 {
		t.Errorf("latency has %d topic series, want 4 (3 + _other)", n)
	}
}

func TestTopicCapZeroPutsAllUnderOther(t *testing.T) {
	for _, max := range []int{0, -5} {
		r := New(max)
		r.Topic("x").Stored(1)
		r.Topic("y").Stored(2)
		if got := sample(t, r, "relay_messages_sent_total", "topic", OtherTopic); got != 3 {
			t.Errorf("New(%d): sent{topic=_other} = %v, want 3", max, got)
		}
	}
}

// TestLatencyHistogram: the sharded histogram puts each observation in the
// right bucket (upper bounds inclusive, as Prometheus's le), sums them, and
// adds its shards up.
func TestLatencyHistogram(t *testing.T) {
	r := New(DefaultMaxTopics)
	obs := []time.Duration{0, 50 * time.Microsecond, 51 * time.Microsecond, 3 * time.Millisecond, time.Minute}
	for _, d := range obs {
		r.Topic("t").DeliveryLatency(d) // a new handle, the next shard, each time
	}
	m := gathered(t, r)["relay_message_latency_seconds"].GetMetric()
	if len(m) != 1 {
		t.Fatalf("%d series, want 1", len(m))
	}
	h := m[0].GetHistogram()
	if h.GetSampleCount() != uint64(len(obs)) {
		t.Errorf("count %d, want %d", h.GetSampleCount(), len(obs))
	}
	wantSum := (50*time.Microsecond + 51*time.Microsecond + 3*time.Millisecond + time.Minute).Seconds()
	if diff := h.GetSampleSum() - wantSum; diff > 1e-9 || diff < -1e-9 {
		t.Errorf("sum %v, want %v", h.GetSampleSum(), wantSum)
	}
	want := map[float64]uint64{0.00005: 2, 0.0001: 3, 0.0025: 3, 0.005: 4, 10: 4}
	for _, b := range h.GetBucket() {
		if w, ok := want[b.GetUpperBound()]; ok && b.GetCumulativeCount() != w {
			t.Errorf("bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), w)
		}
	}
	if len(h.GetBucket()) != len(latencyBounds) {
		t.Errorf("%d buckets, want %d", len(h.GetBucket()), len(latencyBounds))
	}
}

// TestHotPathDoesNotAllocate: the calls made per delivery (and per batch of
// deliveries) allocate nothing.
func TestHotPathDoesNotAllocate(t *testing.T) {
	r := New(DefaultMaxTopics)
	h := r.Topic("hot")
	cases := map[string]func(){
		"DeliveryLatency": func() { h.DeliveryLatency(137 * time.Microsecond) },
		"Stored":          func() { h.Stored(3) },
		"Delivered":       func() { r.Delivered("ws", 256) },
		"Dropped":         func() { r.Dropped("slow_consumer", 1) },
		"Subscriptions":   func() { r.Subscriptions(1) },
		"Connections":     func() { r.Connections("ws", 1) },
	}
	for name, fn := range cases {
		if n := testing.AllocsPerRun(1000, fn); n != 0 {
			t.Errorf("%s allocates %v times per call", name, n)
		}
	}
}

func TestObserverCounts(t *testing.T) {
	r := New(DefaultMaxTopics)
	r.TopicsActive(1)
	r.TopicsActive(1)
	r.TopicsActive(-1)
	r.Subscriptions(3)
	r.ActorRestarted("topic")
	r.ActorRestarted("topic")
	r.ActorStopped("connection")
	r.Delivered("ws", 5)
	r.Delivered("poll", 2)
	r.Delivered("ws", 0)
	r.Dropped("slow_consumer", 4)
	r.SlowConsumerDisconnected()
	r.Received(7)
	r.Connections("ws", 2)
	r.Connections("ws", -1)
	r.HTTPRequest("/api/v1/messages", 201, time.Millisecond)
	r.HTTPRequest("/api/v1/messages", 201, time.Millisecond)
	r.HTTPRequest("/ws", 101, time.Hour)
	h := r.Topic("t")
	h.DeliveryLatency(time.Millisecond)
	h.DeliveryLatency(2 * time.Millisecond)

	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"relay_topics_active", nil, 1},
		{"relay_subscriptions", nil, 3},
		{"relay_actor_restarts_total", []string{"kind", "topic"}, 2},
		{"relay_actor_restarts_total", []string{"kind", "connection"}, 0},
		{"relay_actor_stops_total", []string{"kind", "connection"}, 1},
		{"relay_messages_delivered_total", []string{"transport", "ws"}, 5},
		{"relay_messages_delivered_total", []string{"transport", "poll"}, 2},
		{"relay_messages_dropped_total", []string{"reason", "slow_consumer"}, 4},
		{"relay_slow_consumer_disconnects_total", nil, 1},
		{"relay_messages_received_total", nil, 7},
		{"relay_connections", []string{"transport", "ws"}, 1},
		{"relay_http_requests_total", []string{"route", "/api/v1/messages", "code", "201"}, 2},
		{"relay_http_requests_total", []string{"route", "/ws", "code", "101"}, 1},
		{"relay_http_request_duration_seconds", []string{"route", "/api/v1/messages"}, 2},
		{"relay_http_request_duration_seconds", []string{"route", "/ws"}, -1}, // upgrades not observed
		{"relay_message_latency_seconds", []string{"topic", "t"}, 2},
	} {
		if got := sample(t, r, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	fams := gathered(t, r)
	want := []string{"go_goroutines"}
	if runtime.GOOS == "linux" { // the process collector reads procfs
		want = append(want, "process_cpu_seconds_total")
	}
	for _, name := range want {
		if fams[name] == nil {
			t.Errorf("%s missing: the Go and process collectors must be registered", name)
		}
	}
}

// failingStore fails every call.
type failingStore struct{ persistence.Store }

var errDown = fmt.Errorf("down: %w", messages.ErrUnavailable)

func (failingStore) Append(context.Context, string, []messages.Message) (int, error) {
	return 0, errDown
}
func (failingStore) Range(context.Context, string, messages.ID, int) (persistence.Page, error) {
	return persistence.Page{}, errDown
}
func (failingStore) RevRange(context.Context, string, messages.ID, int) (persistence.Page, error) {
	return persistence.Page{}, errDown
}
func (failingStore) Tips(context.Context, []string) (map[string]persistence.Tip, error) {
	return nil, errDown
}
func (failingStore) Ping(context.Context) error { return errDown }
func (failingStore) Close() error               { return nil }

func TestInstrumentStore(t *testing.T) {
	ctx := context.Background()
	r := New(DefaultMaxTopics)
	mem := persistence.NewMemoryStore(persistence.Limits{})
	s := InstrumentStore(mem, r)
	defer s.Close() // stops the memory store's sweeper
	if s.(interface{ Unwrap() persistence.Store }).Unwrap() != mem {
		t.Fatal("Unwrap must return the measured store")
	}
	batch := []messages.Message{{Payload: []byte(`{}`), Timestamp: time.Now()}, {Payload: []byte(`{}`), Timestamp: time.Now()}}
	if n, err := s.Append(ctx, "t", batch); n != 2 || err != nil {
		t.Fatalf("append: %d %v", n, err)
	}
	if p, err := s.Range(ctx, "t", messages.ID{}, 10); err != nil || len(p.Messages) != 2 {
		t.Fatalf("range: %v %v", p, err)
	}
	if p, err := s.RevRange(ctx, "t", messages.ID{}, 10); err != nil || len(p.Messages) != 2 {
		t.Fatalf("rev range: %v %v", p, err)
	}
	if tips, err := s.Tips(ctx, []string{"t"}); err != nil || tips["t"].Last != batch[1].ID {
		t.Fatalf("tips: %v %v", tips, err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if got := sample(t, r, "relay_store_topics"); got != 1 {
		t.Errorf("relay_store_topics = %v, want 1", got)
	}
	if got := sample(t, r, "relay_store_idempotency_keys"); got != 0 {
		t.Errorf("relay_store_idempotency_keys = %v, want 0", got)
	}

	f := InstrumentStore(failingStore{}, r)
	_, err := f.Append(ctx, "t", batch)
	if !errors.Is(err, messages.ErrUnavailable) {
		t.Fatalf("the decorator must return the store's error unchanged, got %v", err)
	}
	_, _ = f.Range(ctx, "t", messages.ID{}, 1)
	_, _ = f.RevRange(ctx, "t", messages.ID{}, 1)
	_, _ = f.Tips(ctx, []string{"t"})
	_ = f.Ping(ctx)
	_ = f.Ping(ctx)

	for _, op := range []string{"append", "range", "rev_range", "tips", "ping"} {
		wantErr := 1.0
		if op == "ping" {
			wantErr = 2
		}
		if got := sample(t, r, "relay_storage_operations_total", "op", op, "result", "ok"); got != 1 {
			t.Errorf("ops{op=%s,result=ok} = %v, want 1", op, got)
		}
		if got := sample(t, r, "relay_storage_operations_total", "op", op, "result", "error"); got != wantErr {
			t.Errorf("ops{op=%s,result=error} = %v, want %v", op, got, wantErr)
		}
		if got := sample(t, r, "relay_storage_latency_seconds", "op", op); got != 1+wantErr {
			t.Errorf("latency{op=%s} count = %v, want %v", op, got, 1+wantErr)
		}
	}
	if InstrumentStore(mem, nil) != persistence.Store(mem) {
		t.Error("InstrumentStore with a nil registry must return the store itself")
	}
}
