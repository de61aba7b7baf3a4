package actors_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

// waitFor waits until sink has a message frame of topic with id, and
// returns every message id of topic it has then.
func waitFor(t *testing.T, sink *fakeSink, topic, id string, d time.Duration) []string {
	t.Helper()
	var got []string
	relaytest.Eventually(t, d, "message "+id+" on "+topic, func() bool {
		got = sink.ids(topic)
		return slices.Contains(got, id)
	})
	return got
}

// TestFeedLiveSubscribeWhileTipUnreadableGetsLaterAppends: a live
// subscriber answered while the stream's tip cannot be read (shared store)
// gets every append made after its "subscribed" frame, by another relay
// while the tip read still fails and by its own relay after, each once and
// in id order, and nothing from before it.
func TestFeedLiveSubscribeWhileTipUnreadableGetsLaterAppends(t *testing.T) {
	store := newAnnouncingStore()
	m := newManager(t, store, actors.Config{SharedStore: true})
	before := publish(t, m, "u", 0)
	store.noTip.Store(true)
	live := newSink()
	subscribe(t, connect(t, m, live), live, `{"type":"subscribe","topics":["u"]}`)
	fill(t, store, "u", 3) // another relay, after "subscribed"; the tip read still fails
	store.noTip.Store(false)
	want := storedIDs(t, store, "u", mustParse(t, before))
	sameIDs(t, "appends after subscribed", waitIDs(t, live, "u", len(want), 10*time.Second), want)
	publish(t, m, "u", 9)
	fill(t, store, "u", 2)
	last := publish(t, m, "u", 10) // delivery is in order: everything before it is in once it is
	want = storedIDs(t, store, "u", mustParse(t, before))
	sameIDs(t, "live after subscribed", waitFor(t, live, "u", last, 5*time.Second), want)
}

// TestFeedLiveSubscribeWhileTipUnreadableAndLinkDown: the same while the
// pub/sub link is down too, so the appends' notices are lost and nothing
// heard tells where the stream was: the subscriber still gets every append
// after its "subscribed" frame, once and in id order (and at most what was
// appended just before it). Either may come back first: the link, or the
// tip (Valkey back, the link still in its backoff), when the repair must
// start where the subscriber was answered, not at the tip, which already
// holds the appends whose notices were lost.
func TestFeedLiveSubscribeWhileTipUnreadableAndLinkDown(t *testing.T) {
	for _, tipFirst := range []bool{false, true} {
		name := "link back first"
		if tipFirst {
			name = "tip back first"
		}
		t.Run(name, func(t *testing.T) {
			store := newAnnouncingStore()
			m := newManager(t, store, actors.Config{SharedStore: true, PositionCheckInterval: time.Hour})
			before := publish(t, m, "u", 0)
			store.noTip.Store(true)
			store.link(false)
			live := newSink()
			subscribe(t, connect(t, m, live), live, `{"type":"subscribe","topics":["u"]}`)
			fill(t, store, "u", 3) // notices lost
			if tipFirst {
				served := store.tips.Load()
				store.noTip.Store(false)
				relaytest.Eventually(t, 10*time.Second, "the sync retry to read the tip, the link still down", func() bool { return store.tips.Load() > served })
				store.link(true)
			} else {
				store.link(true)
				store.noTip.Store(false)
				fill(t, store, "u", 1)
			}
			last := publish(t, m, "u", 9)
			want := storedIDs(t, store, "u", mustParse(t, before))
			got := waitFor(t, live, "u", last, 10*time.Second)
			if len(got) > 0 && got[0] == before {
				got = got[1:] // appended just before the subscribe: within the margin of an unknown position
			}
			sameIDs(t, "live after subscribed", got, want)
		})
	}
}

// TestFeedLiveSubscribersWhileTipUnreadableThenReplay: live subscribers
// answered at successive failed tip reads and a replay waiting for the
// tip all end with the same stream: the live ones from the first's
// "subscribed" frame on, the replay from its point; no id twice.
func TestFeedLiveSubscribersWhileTipUnreadableThenReplay(t *testing.T) {
	store := newAnnouncingStore()
	m := newManager(t, store, actors.Config{SharedStore: true})
	from := publish(t, m, "u", 0)
	store.noTip.Store(true)
	a := newSink()
	subscribe(t, connect(t, m, a), a, `{"type":"subscribe","topics":["u"]}`)
	fill(t, store, "u", 2)
	b := newSink()
	subscribe(t, connect(t, m, b), b, `{"type":"subscribe","topics":["u"]}`) // at the next failed read
	fill(t, store, "u", 2)
	replay := newSink()
	rc := connect(t, m, replay)
	f, err := messages.DecodeClientFrame([]byte(`{"type":"subscribe","topics":["u"],"since":{"u":"` + from + `"}}`))
	if err != nil {
		t.Fatal(err)
	}
	rc.Subscribe(f)
	store.noTip.Store(false)
	relaytest.Eventually(t, 10*time.Second, "the replay answered", func() bool { return len(replay.ofType("subscribed")) == 1 })
	last := publish(t, m, "u", 9)
	want := storedIDs(t, store, "u", mustParse(t, from))
	sameIDs(t, "first live", waitFor(t, a, "u", last, 5*time.Second), want)
	sameIDs(t, "replay", waitFor(t, replay, "u", last, 5*time.Second), want)
	gotB := waitFor(t, b, "u", last, 5*time.Second)
	// b was answered after the first two appends; they may reach it (they
	// were delivered after its answer), but then in order and once.
	if len(gotB) < len(want)-2 || !slices.Equal(gotB, want[len(want)-len(gotB):]) {
		t.Fatalf("second live: %v, want a suffix of %v from %v on", gotB, want, want[2])
	}
}

// lateNoticeStore is an announcingStore whose notices can be held back (a
// pub/sub connection lagging the command connection) and that counts the
// Tips reads that succeed.
type lateNoticeStore struct {
	*announcingStore
	tipsOK atomic.Int64

	mu   sync.Mutex
	h    persistence.FeedHandler
	hold bool
	held []persistence.Notice
}

func (s *lateNoticeStore) NewFeed(h persistence.FeedHandler) (persistence.Feed, error) {
	s.mu.Lock()
	s.h = h
	s.mu.Unlock()
	return s.announcingStore.NewFeed(lateHandler{s})
}

func (s *lateNoticeStore) Tips(ctx context.Context, topics []string) (map[string]persistence.Tip, error) {
	tips, err := s.announcingStore.Tips(ctx, topics)
	if err == nil {
		s.tipsOK.Add(1)
	}
	return tips, err
}

// holdNotices holds notices back, or hands on the held ones, in order.
func (s *lateNoticeStore) holdNotices(hold bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold = hold
	if !hold {
		for _, n := range s.held {
			s.h.OnNotice(n)
		}
		s.held = nil
	}
}

type lateHandler struct{ s *lateNoticeStore }

func (l lateHandler) OnNotice(n persistence.Notice) {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if l.s.hold {
		l.s.held = append(l.s.held, n)
		return
	}
	l.s.h.OnNotice(n)
}

func (l lateHandler) OnLink(up bool, err error) { l.s.h.OnLink(up, err) }

// TestFeedLiveSubscribeWhileTipUnreadableLateNotices: appends after a live
// subscriber's "subscribed" frame (answered while the tip could not be
// read) whose notices arrive only after the tip read that includes them
// still reach it, once and in id order.
func TestFeedLiveSubscribeWhileTipUnreadableLateNotices(t *testing.T) {
	store := &lateNoticeStore{announcingStore: newAnnouncingStore()}
	m := newManager(t, store, actors.Config{SharedStore: true, PositionCheckInterval: time.Hour})
	before := publish(t, m, "u", 0)
	store.noTip.Store(true)
	live := newSink()
	subscribe(t, connect(t, m, live), live, `{"type":"subscribe","topics":["u"]}`)
	store.holdNotices(true)
	fill(t, store, "u", 3) // another relay; its notice lags
	store.noTip.Store(false)
	relaytest.Eventually(t, 10*time.Second, "a tip read", func() bool { return store.tipsOK.Load() > 0 })
	publish(t, m, "u", 8) // through the topic actor: after it has the tip (almost always)
	store.holdNotices(false)
	last := publish(t, m, "u", 9)
	want := storedIDs(t, store, "u", mustParse(t, before))
	sameIDs(t, "live after subscribed", waitFor(t, live, "u", last, 5*time.Second), want)
}
