package actors_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

// TestOverflowPolicies: a subscriber that stops reading overflows its
// outbox: under "disconnect" it is closed with 4008; under "drop-oldest" it
// stays, loses the oldest frames (counted), and gets the newest, in order.
func TestOverflowPolicies(t *testing.T) {
	for _, policy := range []actors.SlowConsumerPolicy{actors.PolicyDisconnect, actors.PolicyDropOldest} {
		t.Run(string(policy), func(t *testing.T) {
			counters := &relaytest.Counters{}
			m := newManager(t, nil, actors.Config{ConnectionQueueSize: 8, SlowConsumerPolicy: policy, Observer: counters})
			slow, fast := newSink(), newSink()
			cs, cf := connect(t, m, slow), connect(t, m, fast)
			subscribe(t, cs, slow, `{"type":"subscribe","topics":["flood"]}`)
			subscribe(t, cf, fast, `{"type":"subscribe","topics":["flood"]}`)
			slow.block()
			var last string
			for i := range 100 {
				last = publish(t, m, "flood", i)
				waitIDs(t, fast, "flood", i+1, 5*time.Second) // the others are not slowed
			}
			fastIDs := fast.ids("flood")
			if policy == actors.PolicyDisconnect {
				relaytest.Eventually(t, 5*time.Second, "the overflow", func() bool { return counters.SlowDisconnects.Load() == 1 })
				// The close goes out once the stuck write returns (in the
				// gateway: the peer reads a little, or the write timeout).
				slow.unblock()
				relaytest.Eventually(t, 5*time.Second, "4008", func() bool { return slow.code() == actors.CloseSlowConsumer })
				if n := len(slow.ids("flood")); n > 8+1 {
					t.Fatalf("a disconnected slow consumer still got %d messages", n)
				}
				return
			}
			slow.unblock()
			relaytest.Eventually(t, 5*time.Second, "the newest message", func() bool {
				ids := slow.ids("flood")
				return len(ids) > 0 && ids[len(ids)-1] == last
			})
			got := slow.ids("flood")
			if counters.Drops.Load() == 0 || len(got)+int(counters.Drops.Load()) != 100 || slow.code() != 0 {
				t.Fatalf("got %d, dropped %d, closed %d", len(got), counters.Drops.Load(), slow.code())
			}
			at := 0
			for _, id := range got { // a subsequence of the stream, in order
				for at < len(fastIDs) && fastIDs[at] != id {
					at++
				}
				if at == len(fastIDs) {
					t.Fatalf("drop-oldest delivered %v, not a subsequence of %v", got, fastIDs)
				}
			}
		})
	}
}

// TestControlFramesCountAgainstTheOutbox: pongs a client never reads fill
// its outbox like messages, and it is disconnected as a slow consumer
// instead of growing the relay's memory.
func TestControlFramesCountAgainstTheOutbox(t *testing.T) {
	counters := &relaytest.Counters{}
	m := newManager(t, nil, actors.Config{ConnectionQueueSize: 64, Observer: counters})
	s := newSink()
	c := connect(t, m, s)
	subscribe(t, c, s, `{"type":"subscribe","topics":["t"]}`)
	s.block()
	pong := messages.NewPongFrame(time.Now())
	for range 10_000 {
		c.Send(pong)
	}
	// The pong drain is stuck in its first write; the overflow is counted at
	// once, and the close follows when that write returns.
	relaytest.Eventually(t, 5*time.Second, "the overflow", func() bool { return counters.SlowDisconnects.Load() == 1 })
	s.unblock()
	relaytest.Eventually(t, 5*time.Second, "4008", func() bool { return s.code() == actors.CloseSlowConsumer })
}

// TestCommandsAreBounded: subscribe commands a stuck connection has not
// handled make the sender wait instead of queueing without bound; they
// resume when the connection moves again.
func TestCommandsAreBounded(t *testing.T) {
	m := newManager(t, nil, actors.Config{})
	s := newSink()
	c := connect(t, m, s)
	s.block()
	f, _ := messages.DecodeClientFrame([]byte(`{"type":"subscribe","topics":["a"]}`))
	sent := make(chan int, 100)
	go func() {
		for i := range 100 {
			c.Subscribe(f)
			sent <- i
		}
		close(sent)
	}()
	relaytest.Eventually(t, 5*time.Second, "the sender to stall", func() bool {
		n := len(sent)
		time.Sleep(20 * time.Millisecond)
		return n == len(sent) && n > 0
	})
	if n := len(sent); n > 20 {
		t.Fatalf("%d commands queued while the connection was stuck", n)
	}
	s.unblock()
	relaytest.Eventually(t, 5*time.Second, "all subscribes", func() bool { return len(s.ofType("subscribed")) == 100 })
}

// TestTopicCap: over MaxTopics live topic actors, a publish to a new topic
// fails with ErrUnavailable and a subscribe gets a SUBSCRIPTION_ERROR frame;
// a topic only subscribed to stops with its subscriber and frees its place.
func TestTopicCap(t *testing.T) {
	m := newManager(t, nil, actors.Config{MaxTopics: 2})
	publish(t, m, "a", 1)
	s := newSink()
	c := connect(t, m, s)
	subscribe(t, c, s, `{"type":"subscribe","topics":["b"]}`)
	if _, err := m.Publish(context.Background(), message("c", 1)); !errors.Is(err, messages.ErrUnavailable) || !errors.Is(err, messages.ErrTooManyTopics) {
		t.Fatalf("publish over the cap: %v", err)
	}
	// The "subscribed" frame lists what the connection holds of the frame's
	// topics: "b" (already held), not "c", which has its error frame.
	got := subscribe(t, c, s, `{"type":"subscribe","topics":["c","b"]}`)
	if !slices.Equal(got.Topics, []string{"b"}) {
		t.Fatalf("subscribed frame lists %v, want [b]: c was refused", got.Topics)
	}
	relaytest.Eventually(t, 5*time.Second, "an error frame", func() bool {
		e := s.ofType("error")
		return len(e) == 1 && e[0].Code == messages.CodeSubscriptionError
	})
	c.Unsubscribe([]string{"b"})
	relaytest.Eventually(t, 5*time.Second, "b to stop", func() bool { return m.ActiveTopics() == 1 })
	publish(t, m, "c", 1)
}

// TestSubscribeRateLimit: new subscriptions beyond the per-connection rate
// get RATE_LIMIT_EXCEEDED and subscribe nothing.
func TestSubscribeRateLimit(t *testing.T) {
	m := newManager(t, nil, actors.Config{SubscribeRate: 1, SubscribeBurst: 3})
	s := newSink()
	c := connect(t, m, s)
	subscribe(t, c, s, `{"type":"subscribe","topics":["a","b","c"]}`)
	f, _ := messages.DecodeClientFrame([]byte(`{"type":"subscribe","topics":["d","e"]}`))
	c.Subscribe(f)
	relaytest.Eventually(t, 5*time.Second, "an error frame", func() bool {
		e := s.ofType("error")
		return len(e) == 1 && e[0].Code == messages.CodeRateLimitExceeded
	})
	if n := len(s.ofType("subscribed")); n != 1 {
		t.Fatalf("%d subscribed frames", n)
	}
	// Topics already subscribed cost nothing.
	subscribe(t, c, s, `{"type":"subscribe","topics":["a","b","c"]}`)
}

// TestReplayIsNotALiveQueue: a replay far larger than the live queue
// (10,000 messages through a 32-frame outbox) while the topic is published
// to arrives whole, once, in order, without a slow-consumer close: it is
// pulled page by page as the sink takes it, and live frames wait in the
// store until it has caught up.
func TestReplayIsNotALiveQueue(t *testing.T) {
	for _, tc := range []struct {
		name   string
		shared bool // the ring never serves
	}{{"ring and store", false}, {"store only", true}} {
		t.Run(tc.name, func(t *testing.T) {
			store := persistence.NewMemoryStore(persistence.Limits{})
			t.Cleanup(func() { _ = store.Close() })
			fill(t, store, "big", 10_000)
			counters := &relaytest.Counters{}
			m := newManager(t, store, actors.Config{ConnectionQueueSize: 32, ReplayPageBytes: 8 << 10,
				SharedStore: tc.shared, Observer: counters})
			stop := make(chan struct{})
			wait := relaytest.Publishers(2, 1000, stop, func(p, i int) bool {
				publish(t, m, "big", p*1000+i)
				time.Sleep(200 * time.Microsecond)
				return true
			})
			s := newSink()
			c := connect(t, m, s)
			subscribe(t, c, s, `{"type":"subscribe","topics":["big"],"offset":"earliest"}`)
			relaytest.Eventually(t, 10*time.Second, "the replay", func() bool { return len(s.ids("big")) >= 10_000 || s.code() != 0 })
			close(stop)
			wait()
			if s.code() != 0 {
				t.Fatalf("closed with %d after %d messages", s.code(), len(s.ids("big")))
			}
			all := storedIDs(t, store, "big", messages.ID{})
			sameIDs(t, "replay then live", waitIDs(t, s, "big", len(all), 10*time.Second), all)
			if s.code() != 0 || counters.SlowDisconnects.Load() != 0 {
				t.Fatalf("closed with %d", s.code())
			}
			// A page's bytes are given back after its frames are written
			// (and the page that finds the end may be in flight): soon
			// after the last frame, not before it.
			relaytest.Eventually(t, 5*time.Second, "the replay bytes to be given back", func() bool {
				return counters.ReplayBytesNow.Load() == 0
			})
		})
	}
}

// fill appends n messages to topic directly, as a previous relay would have.
func fill(t testing.TB, store persistence.Store, topic string, n int) {
	t.Helper()
	for i := 0; i < n; i += 500 {
		batch := make([]messages.Message, min(500, n-i))
		for j := range batch {
			batch[j] = message(topic, i+j)
		}
		if k, err := store.Append(context.Background(), topic, batch); err != nil || k != len(batch) {
			t.Fatal(k, err)
		}
	}
}

// TestReplayBudgets: connections replaying many topics at once hold at most
// the process's replay budget in pages (one page when it is spent, never
// one per topic), and still get everything.
func TestReplayBudgets(t *testing.T) {
	store := persistence.NewMemoryStore(persistence.Limits{})
	t.Cleanup(func() { _ = store.Close() })
	topics := make([]string, 20)
	for i := range topics {
		topics[i] = fmt.Sprintf("t%d", i)
		fill(t, store, topics[i], 300)
	}
	const page, perConn, process = 2 << 10, 4 << 10, 6 << 10
	counters := &relaytest.Counters{}
	m := newManager(t, store, actors.Config{ReplayPageBytes: page, ConnectionReplayBytes: perConn, ReplayBytes: process, Observer: counters})
	frame := `{"type":"subscribe","topics":["t0"`
	for _, tp := range topics[1:] {
		frame += `,"` + tp + `"`
	}
	frame += `],"offset":"earliest"}`
	var sinks []*fakeSink
	for range 4 {
		s := newSink()
		subscribe(t, connect(t, m, s), s, frame)
		sinks = append(sinks, s)
	}
	for _, s := range sinks {
		for _, tp := range topics {
			sameIDs(t, tp, waitIDs(t, s, tp, 300, 10*time.Second), storedIDs(t, store, tp, messages.ID{}))
		}
	}
	if max := counters.ReplayBytesMax.Load(); max > process || max == 0 {
		t.Fatalf("replay bytes peaked at %d, budget %d", max, process)
	}
	if counters.ReplayWaits.Load() == 0 {
		t.Fatal("no replay waited for the process budget; the bound was not exercised")
	}
}

// TestResumeReportsTruncation: a point older than what the store retains
// is reported in "subscribed" and delivery starts at the oldest retained.
func TestResumeReportsTruncation(t *testing.T) {
	store := persistence.NewMemoryStore(persistence.Limits{MaxMessages: 10})
	t.Cleanup(func() { _ = store.Close() })
	m := newManager(t, store, actors.Config{StoreLimits: persistence.Limits{MaxMessages: 10}})
	first := publish(t, m, "trim", 0)
	for i := 1; i < 30; i++ {
		publish(t, m, "trim", i)
	}
	s := newSink()
	f := subscribe(t, connect(t, m, s), s, `{"type":"subscribe","topics":["trim"],"since":{"trim":"`+first+`"}}`)
	if len(f.Truncated) != 1 || f.Truncated[0] != "trim" {
		t.Fatalf("subscribed %+v, want trim truncated", f)
	}
	sameIDs(t, "replay", waitIDs(t, s, "trim", 10, 5*time.Second), storedIDs(t, store, "trim", messages.ID{}))
}

// TestRingServesOnlyWhatItHolds (issue 15 item 11): the hot ring serves a
// replay only after the first id this actor delivered (messages stored
// before it started come from the store), and never when the store is
// shared, where another instance's messages are not in the ring.
func TestRingServesOnlyWhatItHolds(t *testing.T) {
	t.Run("older than the actor", func(t *testing.T) {
		store := persistence.NewMemoryStore(persistence.Limits{})
		t.Cleanup(func() { _ = store.Close() })
		fill(t, store, "t", 20)
		m := newManager(t, store, actors.Config{})
		publish(t, m, "t", 100)
		all := storedIDs(t, store, "t", messages.ID{})
		s := newSink()
		subscribe(t, connect(t, m, s), s, `{"type":"subscribe","topics":["t"],"since":{"t":"`+all[4]+`"}}`)
		sameIDs(t, "replay", waitIDs(t, s, "t", len(all)-5, 5*time.Second), all[5:])
	})
	t.Run("shared store", func(t *testing.T) {
		store := persistence.NewMemoryStore(persistence.Limits{})
		t.Cleanup(func() { _ = store.Close() })
		m := newManager(t, store, actors.Config{SharedStore: true})
		from := publish(t, m, "t", 1)
		publish(t, m, "t", 2)
		fill(t, store, "t", 3) // another instance's messages
		publish(t, m, "t", 3)
		want := storedIDs(t, store, "t", mustParse(t, from))
		s := newSink()
		subscribe(t, connect(t, m, s), s, `{"type":"subscribe","topics":["t"],"since":{"t":"`+from+`"}}`)
		sameIDs(t, "replay", waitIDs(t, s, "t", len(want), 5*time.Second), want)
	})
}

func mustParse(t testing.TB, s string) messages.ID {
	id, err := messages.ParseID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// shortPageStore returns at most 2 messages per Range and sets Page.Next,
// as a store does when its scan stops early over expired entries: a short
// page that is not the end.
type shortPageStore struct{ persistence.Store }

func (s shortPageStore) Range(ctx context.Context, topic string, after messages.ID, limit int) (persistence.Page, error) {
	page, err := s.Store.Range(ctx, topic, after, limit)
	if err != nil || len(page.Messages) <= 2 {
		return page, err
	}
	page.Messages = page.Messages[:2]
	page.Next = page.Messages[1].ID
	return page, nil
}

// TestReplayFollowsPageNext: a replay continues from Page.Next after a
// short page instead of taking it for the end of the stream.
func TestReplayFollowsPageNext(t *testing.T) {
	inner := persistence.NewMemoryStore(persistence.Limits{})
	t.Cleanup(func() { _ = inner.Close() })
	fill(t, inner, "sparse", 25)
	m := newManager(t, shortPageStore{inner}, actors.Config{SharedStore: true})
	s := newSink()
	subscribe(t, connect(t, m, s), s, `{"type":"subscribe","topics":["sparse"],"offset":"earliest"}`)
	want := append(storedIDs(t, inner, "sparse", messages.ID{}), "")
	want[len(want)-1] = publish(t, m, "sparse", 99)
	sameIDs(t, "replay then live", waitIDs(t, s, "sparse", len(want), 5*time.Second), want)
}

// hotTierWatch is an Observer that keeps the hot tier's gauge function.
type hotTierWatch struct {
	nopObs
	mu    sync.Mutex
	bytes func() int64
}

func (w *hotTierWatch) ObserveHotTier(f func() int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.bytes = f
}

func (w *hotTierWatch) held() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bytes()
}

// TestHotTierBudget: past RELAY_HOT_TIER_BYTES a topic's ring gives up its
// oldest messages, a resume from before them reads the store (every
// message, in order), and a stopped topic actor gives its ring's bytes
// back.
func TestHotTierBudget(t *testing.T) {
	const limit = 64 << 10
	watch := &hotTierWatch{}
	store := persistence.NewMemoryStore(persistence.Limits{})
	t.Cleanup(func() { _ = store.Close() })
	m := newManager(t, store, actors.Config{HotTierBytes: limit, TopicIdleTimeout: 200 * time.Millisecond, Observer: watch})
	pad := strings.Repeat("x", 1000)
	var first string
	for i := range 200 { // about 215 KB
		msg := message("t", i)
		msg.Payload = []byte(fmt.Sprintf(`{"i":%d,"pad":%q}`, i, pad))
		got, err := m.Publish(context.Background(), msg)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = got.ID.String()
		}
		if held := watch.held(); held > limit+2<<10 {
			t.Fatalf("after publish %d the rings hold %d bytes, over the budget %d by more than a message", i, held, limit)
		}
	}
	want := storedIDs(t, store, "t", mustParse(t, first))
	if len(want) != 199 {
		t.Fatalf("the store holds %d messages after the first, want 199", len(want))
	}
	s := newSink()
	c := connect(t, m, s)
	subscribe(t, c, s, `{"type":"subscribe","topics":["t"],"since":{"t":"`+first+`"}}`)
	sameIDs(t, "resume from the first message", waitIDs(t, s, "t", len(want), 5*time.Second), want)
	stop, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.Stop(stop) // unsubscribed, the topic actor goes idle and stops
	relaytest.Eventually(t, 10*time.Second, "the idle topic actor's ring bytes back in the budget", func() bool { return watch.held() == 0 })
}
