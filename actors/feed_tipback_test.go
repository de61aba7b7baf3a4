package actors_test

import (
	"testing"
	"time"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/internal/relaytest"
)

// TestEarlyLiveTipBackBeforeLink: Valkey comes back and the stream's tip is
// read again before this relay's pub/sub link reconnects (each has its own
// backoff). A live subscriber answered while the tip could not be read gets
// every message appended since its answer, those whose notices the link
// lost included: the repair when the link is back starts where it was
// answered, not at the tip.
func TestEarlyLiveTipBackBeforeLink(t *testing.T) {
	store := newAnnouncingStore()
	m := newManager(t, store, actors.Config{SharedStore: true, PositionCheckInterval: time.Hour})
	before := publish(t, m, "u", 0)
	store.noTip.Store(true)
	store.link(false)
	live := newSink()
	subscribe(t, connect(t, m, live), live, `{"type":"subscribe","topics":["u"]}`)
	fill(t, store, "u", 3) // after "subscribed"; notices lost (link down)
	served := store.tips.Load()
	store.noTip.Store(false)
	relaytest.Eventually(t, 10*time.Second, "the sync retry to read the tip, the link still down", func() bool { return store.tips.Load() > served })
	store.link(true)
	last := publish(t, m, "u", 9)
	want := storedIDs(t, store, "u", mustParse(t, before))
	got := waitFor(t, live, "u", last, 10*time.Second)
	if len(got) > 0 && got[0] == before {
		got = got[1:]
	}
	sameIDs(t, "live after subscribed", got, want)
}
