package metrics_test

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/metrics"
)

// TestMain fails the package if a relay started by a test leaves a
// goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// protoactor's dead-letter log throttle: a timer goroutine that
		// ends by itself one throttle interval after a dead letter.
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"))
}

// scrape is one parsed GET /metrics.
type scrape map[string]*dto.MetricFamily

func scrapeRelay(t *testing.T, r *relaytest.Relay) scrape {
	t.Helper()
	resp, err := relaytest.HTTPClient.Get(r.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET /metrics: Content-Type %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// get returns the value of name's series whose labels include want
// (label=value pairs): a counter's or gauge's value, a histogram's count;
// -1 when there is no such series.
func (s scrape) get(name string, want ...string) float64 {
	f := s[name]
	if f == nil {
		return -1
	}
metric:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(want); i += 2 {
			if labelOf(m, want[i]) != want[i+1] {
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
		case m.Untyped != nil:
			return m.Untyped.GetValue()
		}
	}
	return -1
}

// sum adds up every series of name (histograms: their counts).
func (s scrape) sum(name string) float64 {
	var total float64
	for _, m := range s[name].GetMetric() {
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Histogram != nil:
			total += float64(m.Histogram.GetSampleCount())
		}
	}
	return total
}

// labelValues returns the distinct values of label across name's series.
func (s scrape) labelValues(name, label string) []string {
	seen := map[string]bool{}
	for _, m := range s[name].GetMetric() {
		seen[labelOf(m, label)] = true
	}
	out := make([]string, 0, len(seen))
	for v := range seen {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// TestMetricsAfterKnownWorkload: after a known workload over real sockets
// (perTopic[i] publishes to topic i, every subscriber on every topic, one
// extra subscriber on the first topic only) /metrics shows exactly that
// workload: messages sent per topic, received, delivered over ws, the
// latency histogram's count equal to the deliveries, the gauges, and the
// HTTP counts by route pattern.
func TestMetricsAfterKnownWorkload(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{Metrics: metrics.New(metrics.DefaultMaxTopics)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	topics := []string{"orders", "alerts", "chat.room-1"}
	perTopic := map[string]int{"orders": 5, "alerts": 8, "chat.room-1": 13}
	const subscribers = 4

	type sub struct {
		c      *relaytest.Client
		topics []string
	}
	var subs []sub
	for range subscribers {
		c := r.Dial(ctx)
		c.Subscribe(ctx, map[string]any{"topics": topics})
		subs = append(subs, sub{c, topics})
	}
	extra := r.Dial(ctx)
	extra.Subscribe(ctx, map[string]any{"topics": []string{"orders"}})
	subs = append(subs, sub{extra, []string{"orders"}})

	// What the workload must show.
	published, deliveries, subscriptions := 0, 0, 0
	deliveriesPer := map[string]int{}
	for _, tp := range topics {
		published += perTopic[tp]
	}
	for _, s := range subs {
		subscriptions += len(s.topics)
		for _, tp := range s.topics {
			deliveries += perTopic[tp]
			deliveriesPer[tp] += perTopic[tp]
		}
	}

	// Publish concurrently, topics interleaved.
	var wg sync.WaitGroup
	for _, tp := range topics {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perTopic[tp] {
				if status, body := r.Publish(tp, map[string]any{"i": i}); status != http.StatusCreated {
					t.Errorf("publish %s: %d %v", tp, status, body)
				}
			}
		}()
	}
	wg.Wait()
	// Every subscriber reads all of its messages: they reached the sockets.
	for i, s := range subs {
		want := 0
		for _, tp := range s.topics {
			want += perTopic[tp]
		}
		for range want {
			if f := s.c.MustRead(ctx); f.Type != "message" {
				t.Fatalf("subscriber %d: got %+v", i, f)
			}
		}
	}
	// A history read, to see a route pattern rather than a path.
	if resp, err := relaytest.HTTPClient.Get(r.URL + "/api/v1/topics/orders/messages?limit=2"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}

	// The delivered counter moves after the socket write returns, so it may
	// trail the client's read by a moment.
	var m scrape
	relaytest.Eventually(t, 10*time.Second, "deliveries to be counted", func() bool {
		m = scrapeRelay(t, r)
		return m.get("relay_messages_delivered_total", "transport", "ws") >= float64(deliveries) &&
			m.sum("relay_message_latency_seconds") >= float64(deliveries)
	})

	check := func(what string, got, want float64) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	for _, tp := range topics {
		check(fmt.Sprintf("relay_messages_sent_total{topic=%q}", tp),
			m.get("relay_messages_sent_total", "topic", tp), float64(perTopic[tp]))
		check(fmt.Sprintf("relay_message_latency_seconds_count{topic=%q}", tp),
			m.get("relay_message_latency_seconds", "topic", tp), float64(deliveriesPer[tp]))
	}
	check("relay_messages_received_total", m.get("relay_messages_received_total"), float64(published))
	check(`relay_messages_delivered_total{transport="ws"}`, m.get("relay_messages_delivered_total", "transport", "ws"), float64(deliveries))
	check("sum(relay_message_latency_seconds_count)", m.sum("relay_message_latency_seconds"), float64(deliveries))
	check("relay_subscriptions", m.get("relay_subscriptions"), float64(subscriptions))
	check(`relay_connections{transport="ws"}`, m.get("relay_connections", "transport", "ws"), float64(len(subs)))
	check("relay_topics_active", m.get("relay_topics_active"), float64(len(topics)))
	check(`relay_http_requests_total{route="/api/v1/messages",code="201"}`,
		m.get("relay_http_requests_total", "route", "/api/v1/messages", "code", "201"), float64(published))
	check(`relay_http_request_duration_seconds_count{route="/api/v1/messages"}`,
		m.get("relay_http_request_duration_seconds", "route", "/api/v1/messages"), float64(published))
	check(`relay_http_requests_total{route="/api/v1/topics/{topic}/messages",code="200"}`,
		m.get("relay_http_requests_total", "route", "/api/v1/topics/{topic}/messages", "code", "200"), 1)
	check(`relay_messages_dropped_total{reason="slow_consumer"}`, m.get("relay_messages_dropped_total", "reason", "slow_consumer"), 0)
	check("relay_slow_consumer_disconnects_total", m.get("relay_slow_consumer_disconnects_total"), 0)
	check(`relay_actor_restarts_total{kind="topic"}`, m.get("relay_actor_restarts_total", "kind", "topic"), 0)
	check(`relay_storage_operations_total{op="append",result="error"}`,
		m.get("relay_storage_operations_total", "op", "append", "result", "error"), 0)
	// Group commit: one append per batch, so between 1 and one per message.
	if n := m.get("relay_storage_operations_total", "op", "append", "result", "ok"); n < 1 || n > float64(published) {
		t.Errorf(`relay_storage_operations_total{op="append",result="ok"} = %v, want 1..%d`, n, published)
	}
	if n := m.get("relay_storage_latency_seconds", "op", "append"); n != m.get("relay_storage_operations_total", "op", "append", "result", "ok") {
		t.Errorf("relay_storage_latency_seconds_count{op=append} = %v, want the append count", n)
	}
	if m.get("go_goroutines") <= 0 {
		t.Error("go_goroutines missing: the Go collector must be registered")
	}

	// Closing the subscribers brings the gauges back to 0, and each
	// upgrade is counted under the /ws pattern once its connection ends.
	for _, s := range subs {
		s.c.Conn.Close(1000, "bye")
	}
	relaytest.Eventually(t, 10*time.Second, "connection gauges to return to 0", func() bool {
		m = scrapeRelay(t, r)
		return m.get("relay_connections", "transport", "ws") == 0 && m.get("relay_subscriptions") == 0 &&
			m.get("relay_http_requests_total", "route", "/ws", "code", "101") == float64(len(subs))
	})
}

// TestMetricsTopicLabelCapped: publishing to MaxTopics+50 topics gives the
// topic label exactly MaxTopics+1 values ("_other" the last), in both the
// counter and the histogram, and no message goes uncounted.
func TestMetricsTopicLabelCapped(t *testing.T) {
	const maxTopics = metrics.DefaultMaxTopics
	r := relaytest.Start(t, relaytest.Options{Metrics: metrics.New(maxTopics)})
	const n = maxTopics + 50
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				r.MustPublish(fmt.Sprintf("topic-%03d", i), map[string]any{"i": i})
			}
		}()
	}
	wg.Wait()

	m := scrapeRelay(t, r)
	for _, name := range []string{"relay_messages_sent_total", "relay_message_latency_seconds"} {
		values := m.labelValues(name, "topic")
		if len(values) != maxTopics+1 {
			t.Errorf("%s has %d distinct topic values, want %d (the cap + _other)", name, len(values), maxTopics+1)
		}
		if !contains(values, metrics.OtherTopic) {
			t.Errorf("%s has no %q series", name, metrics.OtherTopic)
		}
	}
	if got := m.sum("relay_messages_sent_total"); got != n {
		t.Errorf("sum(relay_messages_sent_total) = %v, want %d", got, n)
	}
	if got := m.get("relay_messages_sent_total", "topic", metrics.OtherTopic); got != n-maxTopics {
		t.Errorf(`relay_messages_sent_total{topic="_other"} = %v, want %d`, got, n-maxTopics)
	}
	if got := m.get("relay_topics_active"); got != n {
		t.Errorf("relay_topics_active = %v, want %d (the gauge is not capped)", got, n)
	}
}

func contains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}
