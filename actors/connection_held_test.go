package actors_test

import (
	"testing"
	"time"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

// TestSubscribeInProgressDoesNotStallLiveTopics: while a subscribe waits
// for its store probe, the connection's live topics keep flowing (they
// stalled, and a busy one overflowed the queue and had the connection
// closed 4008); the new topic's frames still come after its "subscribed",
// replay first.
func TestSubscribeInProgressDoesNotStallLiveTopics(t *testing.T) {
	inner := persistence.NewMemoryStore(persistence.Limits{})
	t.Cleanup(func() { _ = inner.Close() })
	fill(t, inner, "b", 3)
	store := newGatedRangeStore(inner, func(topic string, _ int) bool { return topic == "b" })
	// The queue holds all 20 (a loaded machine may run the connection
	// late): what is asserted is that they are written while b waits.
	m := newManager(t, store, actors.Config{ConnectionQueueSize: 64, StoreTimeout: 10 * time.Second})
	sink := newSink()
	c := connect(t, m, sink)
	subscribe(t, c, sink, `{"type":"subscribe","topics":["a"]}`)

	f, err := messages.DecodeClientFrame([]byte(`{"type":"subscribe","topics":["b"],"offset":"earliest"}`))
	if err != nil {
		t.Fatal(err)
	}
	c.Subscribe(f)
	relaytest.Eventually(t, 5*time.Second, "the probe of b waits", func() bool { return store.waiting.Load() > 0 })
	var live []string
	for i := range 20 {
		live = append(live, publish(t, m, "a", i))
	}
	sameIDs(t, "a while b's subscribe waits", waitIDs(t, sink, "a", 20, 5*time.Second), live)
	if code := sink.code(); code != 0 {
		t.Fatalf("connection closed %d while its subscribe waited", code)
	}
	if n := len(sink.ofType("subscribed")); n != 1 {
		t.Fatalf("%d subscribed frames before b's probe answered, want 1", n)
	}

	close(store.open)
	want := append(storedIDs(t, inner, "b", messages.ID{}), publish(t, m, "b", 9))
	sameIDs(t, "b after its subscribe", waitIDs(t, sink, "b", len(want), 5*time.Second), want)
	frames := sink.all()
	subscribedB, firstB := -1, -1
	for i, fr := range frames {
		if fr.Type == "subscribed" && len(fr.Topics) == 1 && fr.Topics[0] == "b" {
			subscribedB = i
		}
		if fr.Type == "message" && fr.Topic == "b" && firstB < 0 {
			firstB = i
		}
	}
	if subscribedB < 0 || firstB < subscribedB {
		t.Fatalf("b's first message at frame %d, its subscribed at %d", firstB, subscribedB)
	}
}
