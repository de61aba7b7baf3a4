package actors_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

// announcingStore is a memory store shared by "several relays" that
// announces each append the way the Valkey append script does (Prev, Last,
// the epoch, the messages inline), through a feed the test controls: it can
// drop notices (a lost pub/sub message, a wedged subscription) and report
// the link down and up.
type announcingStore struct {
	*persistence.MemoryStore

	mu    sync.Mutex
	last  map[string]messages.ID
	h     persistence.FeedHandler
	subs  map[string]int
	drop  atomic.Bool  // notices are lost
	noTip atomic.Bool  // Tips fails (the store cannot be read)
	tips  atomic.Int64 // Tips calls answered
	down  atomic.Bool  // the link is down: notices are lost, Up is false
}

// epochOf is the memory store's epoch of topic (what its Range reports).
func (s *announcingStore) epochOf(topic string) string {
	page, _ := s.MemoryStore.Range(context.Background(), topic, messages.ID{}, 1)
	return page.Epoch
}

func newAnnouncingStore() *announcingStore {
	return &announcingStore{MemoryStore: persistence.NewMemoryStore(persistence.Limits{}),
		last: make(map[string]messages.ID), subs: make(map[string]int)}
}

func (s *announcingStore) Append(ctx context.Context, topic string, batch []messages.Message) (int, error) {
	s.mu.Lock() // one append at a time, as the script runs atomically
	defer s.mu.Unlock()
	n, err := s.MemoryStore.Append(ctx, topic, batch)
	if n == 0 {
		return n, err
	}
	notice := persistence.Notice{Topic: topic, Epoch: s.epochOf(topic), Prev: s.last[topic], Last: batch[n-1].ID,
		Messages: append([]messages.Message(nil), batch[:n]...)}
	s.last[topic] = notice.Last
	if s.h != nil && s.subs[topic] > 0 && !s.drop.Load() && !s.down.Load() {
		s.h.OnNotice(notice)
	}
	return n, err
}

func (s *announcingStore) Tips(ctx context.Context, topics []string) (map[string]persistence.Tip, error) {
	if s.noTip.Load() {
		return nil, messages.ErrUnavailable
	}
	defer s.tips.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]persistence.Tip, len(topics))
	for _, t := range topics {
		if last, ok := s.last[t]; ok {
			out[t] = persistence.Tip{Last: last, Epoch: s.epochOf(t)}
		}
	}
	return out, nil
}

func (s *announcingStore) NewFeed(h persistence.FeedHandler) (persistence.Feed, error) {
	s.mu.Lock()
	s.h = h
	s.mu.Unlock()
	return testFeed{s}, nil
}

// link reports the link down or up to the handler.
func (s *announcingStore) link(up bool) {
	s.down.Store(!up)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.h.OnLink(up, nil)
}

type testFeed struct{ s *announcingStore }

func (f testFeed) Subscribe(topic string) error {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	f.s.subs[topic]++
	return nil
}

func (f testFeed) Unsubscribe(topic string) error {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	f.s.subs[topic]--
	return nil
}

func (f testFeed) Up() bool     { return !f.s.down.Load() }
func (f testFeed) Close() error { return nil }

func (f testFeed) watched(topic string) bool {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	return f.s.subs[topic] > 0
}

// repairCounter counts GapRepaired by reason.
type repairCounter struct {
	actors.Observer
	mu      sync.Mutex
	repairs map[string]int
}

func newRepairCounter() *repairCounter {
	return &repairCounter{Observer: nopObs{}, repairs: make(map[string]int)}
}

func (c *repairCounter) GapRepaired(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.repairs[reason]++
}
func (c *repairCounter) FeedLink(bool)  {}
func (c *repairCounter) NoticeDropped() {}
func (c *repairCounter) FeedTopics(int) {}

func (c *repairCounter) count(reason string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.repairs[reason]
}

type nopObs struct{}

func (nopObs) Topic(string) actors.TopicObserver { return nopObs{} }
func (nopObs) TopicsActive(int)                  {}
func (nopObs) Subscriptions(int)                 {}
func (nopObs) ActorRestarted(string)             {}
func (nopObs) ActorStopped(string)               {}
func (nopObs) Delivered(string, int)             {}
func (nopObs) Dropped(string, int)               {}
func (nopObs) SlowConsumerDisconnected()         {}
func (nopObs) Stored(int)                        {}
func (nopObs) DeliveryLatency(time.Duration)     {}

// TestFeedDeliversOtherInstancesAppends: a live subscriber gets the appends
// of "another relay" (straight into the shared store) and of its own relay,
// each once, in stream order; its relay's own appends come back through the
// feed and are not delivered twice.
func TestFeedDeliversOtherInstancesAppends(t *testing.T) {
	store := newAnnouncingStore()
	obs := newRepairCounter()
	m := newManager(t, store, actors.Config{SharedStore: true, Observer: obs})
	s := newSink()
	subscribe(t, connect(t, m, s), s, `{"type":"subscribe","topics":["t"]}`)
	for i := range 30 {
		if i%3 == 0 {
			fill(t, store, "t", 2) // another relay
		} else {
			publish(t, m, "t", i)
		}
	}
	want := storedIDs(t, store, "t", messages.ID{})
	sameIDs(t, "live", waitIDs(t, s, "t", len(want), 5*time.Second), want)
	if n := obs.count(actors.RepairGap) + obs.count(actors.RepairPosition); n != 0 {
		t.Fatalf("%d repairs without a lost notice", n)
	}
}

// TestFeedRepairsLostNotices: a lost notice is found by the next one (gap)
// or, when nothing follows, by the position check; both are counted.
func TestFeedRepairsLostNotices(t *testing.T) {
	store := newAnnouncingStore()
	obs := newRepairCounter()
	m := newManager(t, store, actors.Config{SharedStore: true, Observer: obs, PositionCheckInterval: 200 * time.Millisecond})
	s := newSink()
	subscribe(t, connect(t, m, s), s, `{"type":"subscribe","topics":["t"]}`)
	publish(t, m, "t", 0)
	store.drop.Store(true)
	publish(t, m, "t", 1) // lost
	store.drop.Store(false)
	publish(t, m, "t", 2) // its notice shows the gap
	want := storedIDs(t, store, "t", messages.ID{})
	sameIDs(t, "after a gap", waitIDs(t, s, "t", 3, 5*time.Second), want)
	if obs.count(actors.RepairGap) == 0 {
		t.Fatal("gap repair not counted")
	}

	store.drop.Store(true) // a wedged subscription: nothing is heard
	publish(t, m, "t", 3)
	fill(t, store, "t", 2)
	want = storedIDs(t, store, "t", messages.ID{})
	sameIDs(t, "after the position check", waitIDs(t, s, "t", len(want), 5*time.Second), want)
	if obs.count(actors.RepairPosition) == 0 {
		t.Fatal("position repair not counted")
	}
}

// TestFeedLinkLossCatchesUp: appends while the link is down reach the
// subscriber when it is back, counted as a link repair; /ready's FeedUp
// follows the link.
func TestFeedLinkLossCatchesUp(t *testing.T) {
	store := newAnnouncingStore()
	obs := newRepairCounter()
	m := newManager(t, store, actors.Config{SharedStore: true, Observer: obs, PositionCheckInterval: time.Hour})
	s := newSink()
	subscribe(t, connect(t, m, s), s, `{"type":"subscribe","topics":["t"]}`)
	publish(t, m, "t", 0)
	waitIDs(t, s, "t", 1, 5*time.Second)
	store.link(false)
	if m.FeedUp() {
		t.Fatal("FeedUp with the link down")
	}
	fill(t, store, "t", 3)
	publish(t, m, "t", 1)
	store.link(true)
	want := storedIDs(t, store, "t", messages.ID{})
	sameIDs(t, "after the link is back", waitIDs(t, s, "t", len(want), 5*time.Second), want)
	if obs.count(actors.RepairLink) != 1 || !m.FeedUp() {
		t.Fatalf("link repairs %d, up %v", obs.count(actors.RepairLink), m.FeedUp())
	}
}

// TestFeedWatchFollowsLocalSubscribers: the topic's channel is watched
// while it has a local subscriber and left after the last one goes; a
// resume from a point the watched ring covers gets every message, also
// those of other relays.
func TestFeedWatchFollowsLocalSubscribers(t *testing.T) {
	store := newAnnouncingStore()
	m := newManager(t, store, actors.Config{SharedStore: true})
	feed := testFeed{store}
	s := newSink()
	c := connect(t, m, s)
	subscribe(t, c, s, `{"type":"subscribe","topics":["w"]}`)
	if !feed.watched("w") {
		t.Fatal("not watched with a subscriber")
	}
	from := publish(t, m, "w", 0)
	fill(t, store, "w", 5)
	publish(t, m, "w", 1)
	want := storedIDs(t, store, "w", mustParse(t, from))
	waitIDs(t, s, "w", len(want)+1, 5*time.Second)

	s2 := newSink()
	c2 := connect(t, m, s2)
	subscribe(t, c2, s2, `{"type":"subscribe","topics":["w"],"since":{"w":"`+from+`"}}`)
	sameIDs(t, "resume", waitIDs(t, s2, "w", len(want), 5*time.Second), want)

	c.Unsubscribe([]string{"w"})
	c2.Unsubscribe([]string{"w"})
	relaytest.Eventually(t, 10*time.Second, "the channel left after the last subscriber", func() bool { return !feed.watched("w") })
}

// TestFeedLiveSubscribeWhileStoreUnreadable: while the stream's tip cannot
// be read, a live subscribe is answered at once and a replay waits; once
// it can, both get what follows, and the replay what it asked for.
func TestFeedLiveSubscribeWhileStoreUnreadable(t *testing.T) {
	store := newAnnouncingStore()
	m := newManager(t, store, actors.Config{SharedStore: true})
	from := publish(t, m, "u", 0)
	fill(t, store, "u", 2)
	store.noTip.Store(true)
	live := newSink()
	subscribe(t, connect(t, m, live), live, `{"type":"subscribe","topics":["u"]}`)
	replay := newSink()
	rc := connect(t, m, replay)
	f, _ := messages.DecodeClientFrame([]byte(`{"type":"subscribe","topics":["u"],"since":{"u":"` + from + `"}}`))
	rc.Subscribe(f)
	time.Sleep(300 * time.Millisecond) // the replay is held while tips fail
	if n := len(replay.ofType("subscribed")); n != 0 {
		t.Fatalf("replay answered while the tip cannot be read")
	}
	store.noTip.Store(false)
	relaytest.Eventually(t, 5*time.Second, "the replay answered", func() bool { return len(replay.ofType("subscribed")) == 1 })
	last := publish(t, m, "u", 1)
	sameIDs(t, "live", waitIDs(t, live, "u", 1, 5*time.Second), []string{last})
	want := storedIDs(t, store, "u", mustParse(t, from))
	sameIDs(t, "replay", waitIDs(t, replay, "u", len(want), 5*time.Second), want)
}

// TestFeedResumeAheadOfTheActor: a subscriber resuming from a point this
// relay's topic actor has not yet heard of (the link was down while
// another relay appended; the client read those appends there) gets only
// what follows its point, when the actor catches up. Before, it went live
// with nothing written, and the catch-up delivered it everything between
// the actor's last delivery and its point: duplicates, older than "since".
func TestFeedResumeAheadOfTheActor(t *testing.T) {
	store := newAnnouncingStore()
	m := newManager(t, store, actors.Config{SharedStore: true, PositionCheckInterval: time.Hour})
	watcher := newSink()
	subscribe(t, connect(t, m, watcher), watcher, `{"type":"subscribe","topics":["t"]}`)
	publish(t, m, "t", 0)
	waitIDs(t, watcher, "t", 1, 5*time.Second)
	store.link(false)
	fill(t, store, "t", 3) // another relay; this one hears nothing
	stored := storedIDs(t, store, "t", messages.ID{})
	point := stored[len(stored)-1]
	for _, form := range []string{
		`{"type":"subscribe","topics":["t"],"since":{"t":"%s"}}`,
		`{"type":"subscribe","topics":["t"],"offset":"%s"}`,
	} {
		frame := fmt.Sprintf(form, point)
		s := newSink()
		subscribe(t, connect(t, m, s), s, frame)
		store.link(true) // the actor catches up: every subscriber live by then is offered the three
		next := publish(t, m, "t", 9)
		sameIDs(t, "after the resume point "+frame, waitIDs(t, s, "t", 1, 5*time.Second), []string{next})
		time.Sleep(50 * time.Millisecond) // nothing else follows
		sameIDs(t, "after the resume point "+frame, s.ids("t"), []string{next})
		store.link(false)
		fill(t, store, "t", 3)
		stored = storedIDs(t, store, "t", messages.ID{})
		point = stored[len(stored)-1]
	}
	heard := stored[:len(stored)-3] // the last three came with the link down
	sameIDs(t, "the live subscriber", waitIDs(t, watcher, "t", len(heard), 5*time.Second), heard)
}
