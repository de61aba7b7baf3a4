package actors_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

// countQuota is a SubscriptionQuota of max topics shared by connections.
type countQuota struct {
	mu        sync.Mutex
	max, held int
}

func (q *countQuota) Take(n int) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.held+n > q.max {
		return false
	}
	q.held += n
	return true
}

func (q *countQuota) Give(n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.held -= n
}

func (q *countQuota) now() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.held
}

// TestSubscriptionQuota: connections sharing a quota subscribe at most its
// topics between them. A subscribe that would pass it is refused whole
// (RATE_LIMIT_EXCEEDED, nothing subscribed); a topic named twice counts
// once; what is unsubscribed, and all of a connection when it ends, is
// given back.
func TestSubscriptionQuota(t *testing.T) {
	m := newManager(t, nil, actors.Config{})
	q := &countQuota{max: 3}
	open := func() (*actors.Connection, *fakeSink) {
		s := newSink()
		c, err := m.Connect(s, "ws", q)
		if err != nil {
			t.Fatal(err)
		}
		return c, s
	}
	a, as := open()
	b, bs := open()
	subscribe(t, a, as, `{"type":"subscribe","topics":["q1","q2","q2"]}`)
	if got := q.now(); got != 2 {
		t.Fatalf("after subscribing q1 and q2 (q2 named twice): %d held, want 2", got)
	}
	// Two more would make four: refused whole, nothing subscribed.
	f, err := messages.DecodeClientFrame([]byte(`{"type":"subscribe","topics":["q3","q4"]}`))
	if err != nil {
		t.Fatal(err)
	}
	b.Subscribe(f)
	relaytest.Eventually(t, 5*time.Second, "the refusal", func() bool { return len(bs.ofType("error")) == 1 })
	if e := bs.ofType("error")[0]; e.Code != messages.CodeRateLimitExceeded {
		t.Fatalf("refusal %+v, want %s", e, messages.CodeRateLimitExceeded)
	}
	if got := q.now(); got != 2 {
		t.Fatalf("after the refused subscribe: %d held, want 2", got)
	}
	subscribe(t, b, bs, `{"type":"subscribe","topics":["q3"]}`)
	publish(t, m, "q3", 0)
	waitIDs(t, bs, "q3", 1, 5*time.Second)
	a.Unsubscribe([]string{"q1"})
	relaytest.Eventually(t, 5*time.Second, "q1 given back", func() bool { return q.now() == 2 })
	subscribe(t, b, bs, `{"type":"subscribe","topics":["q4"]}`)
	if got := q.now(); got != 3 {
		t.Fatalf("after b subscribed q4: %d held, want 3", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b.Stop(ctx)
	a.Stop(ctx)
	if got := q.now(); got != 0 {
		t.Fatalf("after both connections ended: %d held, want 0", got)
	}
}

// TestSubscriptionQuotaGivenBackOnEveryPath: a topic the registry refuses
// (RELAY_MAX_TOPICS reached), a topic actor that stops for good, and a
// connection stopped while its subscribe waits for a store probe each give
// their share back.
func TestSubscriptionQuotaGivenBackOnEveryPath(t *testing.T) {
	t.Run("registry full", func(t *testing.T) {
		m := newManager(t, nil, actors.Config{MaxTopics: 2})
		q := &countQuota{max: 10}
		s := newSink()
		c, err := m.Connect(s, "ws", q)
		if err != nil {
			t.Fatal(err)
		}
		subscribe(t, c, s, `{"type":"subscribe","topics":["r1","r2","r3"]}`)
		if got := q.now(); got != 2 {
			t.Fatalf("%d held after a subscribe of 3 topics with room for 2 actors, want 2", got)
		}
	})
	t.Run("topic stops for good", func(t *testing.T) {
		faults := &actors.Faults{}
		m := newManager(t, nil, actors.Config{Faults: faults,
			Policies: mustSet(t, `{"topics":{"fragile":{"supervisor_max_restarts":1,"supervisor_window":"1m","supervisor_backoff":"1ms"}}}`)})
		q := &countQuota{max: 10}
		s := newSink()
		c, err := m.Connect(s, "ws", q)
		if err != nil {
			t.Fatal(err)
		}
		subscribe(t, c, s, `{"type":"subscribe","topics":["fragile","calm"]}`)
		faults.PanicTopic("fragile", 2)
		for i := range 2 {
			_, _ = m.Publish(context.Background(), message("fragile", i))
		}
		relaytest.Eventually(t, 5*time.Second, "the stopped topic's share given back", func() bool { return q.now() == 1 })
	})
	t.Run("stopped while its subscribe reads", func(t *testing.T) {
		store := newGatedRangeStore(persistence.NewMemoryStore(persistence.Limits{}), func(string, int) bool { return true })
		t.Cleanup(func() { close(store.open) })
		m := newManager(t, store, actors.Config{})
		publish(t, m, "p1", 0)
		q := &countQuota{max: 10}
		c, err := m.Connect(newSink(), "ws", q)
		if err != nil {
			t.Fatal(err)
		}
		f, err := messages.DecodeClientFrame([]byte(`{"type":"subscribe","topics":["p1","p2"],"offset":"earliest"}`))
		if err != nil {
			t.Fatal(err)
		}
		c.Subscribe(f)
		relaytest.Eventually(t, 5*time.Second, "a read for the subscribe to wait", func() bool { return store.waiting.Load() > 0 })
		if got := q.now(); got != 2 {
			t.Fatalf("%d held while the subscribe reads, want 2", got)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.Stop(ctx)
		if got := q.now(); got != 0 {
			t.Fatalf("%d held after the connection stopped, want 0", got)
		}
	})
}
