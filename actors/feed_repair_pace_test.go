package actors_test

import (
	"testing"
	"time"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/internal/relaytest"
)

type perFrameSink struct {
	*fakeSink
	per time.Duration
}

func (s perFrameSink) Write(frame []byte) error {
	time.Sleep(s.per)
	return s.fakeSink.Write(frame)
}

// TestRepairAfterLinkOutagePacedToSubscribers: a live subscriber that
// keeps up with the live rate with ease (20 µs a frame: 50,000 frames/s)
// stays connected across a pub/sub link outage during which other relays
// stored more than its queue holds (6,000 messages against 4,096 frames):
// the repair reads a page only when the subscriber has room for it, and
// the subscriber gets every message.
func TestRepairAfterLinkOutagePacedToSubscribers(t *testing.T) {
	store := newAnnouncingStore()
	m := newManager(t, store, actors.Config{SharedStore: true, PositionCheckInterval: time.Hour})
	first := publish(t, m, "b", 0)
	fs := newSink()
	live := perFrameSink{fs, 20 * time.Microsecond}
	c := connect(t, m, live)
	subscribe(t, c, fs, `{"type":"subscribe","topics":["b"]}`)
	store.link(false)
	fill(t, store, "b", 6000)
	store.link(true)
	relaytest.Eventually(t, 20*time.Second, "all delivered or closed", func() bool {
		return len(fs.ids("b")) >= 6000 || fs.code() != 0
	})
	if fs.code() != 0 {
		t.Fatalf("live subscriber closed with %d after a link outage (got %d of 6000)", fs.code(), len(fs.ids("b")))
	}
	sameIDs(t, "after the outage", fs.ids("b"), storedIDs(t, store, "b", mustParse(t, first)))
}
