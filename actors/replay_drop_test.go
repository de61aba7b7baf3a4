package actors_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

// TestReplayGoesOnAfterADroppedPage: a replay waiting for the connection's
// page budget goes on when the subscription whose page was in flight is
// dropped (unsubscribed): that page is never answered, and its answer was
// what asked for the next one, so the other topic stayed replaying, with
// neither replay nor live messages.
func TestReplayGoesOnAfterADroppedPage(t *testing.T) {
	inner := persistence.NewMemoryStore(persistence.Limits{})
	t.Cleanup(func() { _ = inner.Close() })
	fill(t, inner, "a1", 5)
	fill(t, inner, "b", 5)
	// Page reads (limit > 1) of a1 wait; probes (limit 1) pass.
	store := newGatedRangeStore(inner, func(topic string, limit int) bool { return strings.HasPrefix(topic, "a") && limit > 1 })
	t.Cleanup(func() { close(store.open) })
	// One page in flight per connection: b waits for a1's.
	m := newManager(t, store, actors.Config{ReplayPageBytes: 64 << 10, ConnectionReplayBytes: 64 << 10})
	sink := newSink()
	c := connect(t, m, sink)
	subscribe(t, c, sink, `{"type":"subscribe","topics":["a1","b"],"offset":"earliest"}`)
	relaytest.Eventually(t, 5*time.Second, "a1's page read waits", func() bool { return store.waiting.Load() > 0 })
	c.Unsubscribe([]string{"a1"})
	relaytest.Eventually(t, 5*time.Second, "unsubscribed", func() bool { return len(sink.ofType("unsubscribed")) == 1 })
	want := append(storedIDs(t, inner, "b", messages.ID{}), publish(t, m, "b", 9))
	sameIDs(t, "b after a1 was dropped mid-page", waitIDs(t, sink, "b", len(want), 5*time.Second), want)
}
