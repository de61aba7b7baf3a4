package actors_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pulsar-relay/relay/actors"
	"github.com/pulsar-relay/relay/internal/relaytest"
	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

// TestSubscribeWhilePublishing: subscribers joining a topic while it is
// published to get, from their starting point, every message once and in
// id order: replays from "earliest" the whole stream, live ones a
// contiguous suffix of it.
func TestSubscribeWhilePublishing(t *testing.T) {
	store := persistence.NewMemoryStore(persistence.Limits{})
	t.Cleanup(func() { _ = store.Close() })
	m := newManager(t, store, actors.Config{ReplayPageBytes: 4 << 10})
	const topic, nPub, perPub = "busy", 4, 250
	var published atomic.Int64
	wait := relaytest.Publishers(nPub, perPub, nil, func(p, i int) bool {
		publish(t, m, topic, p*perPub+i)
		published.Add(1)
		return true
	})
	var replayers, lives []*fakeSink
	for k := range 6 {
		relaytest.Eventually(t, 10*time.Second, "more publishes", func() bool { return published.Load() >= int64(k*150) })
		s := newSink()
		c := connect(t, m, s)
		if k%2 == 0 {
			subscribe(t, c, s, `{"type":"subscribe","topics":["busy"],"offset":"earliest"}`)
			replayers = append(replayers, s)
		} else {
			subscribe(t, c, s, `{"type":"subscribe","topics":["busy"]}`)
			lives = append(lives, s)
		}
	}
	if n := wait(); n != nPub*perPub {
		t.Fatalf("%d publishes succeeded", n)
	}
	all := storedIDs(t, store, topic, messages.ID{})
	for i, s := range replayers {
		sameIDs(t, "replaying subscriber "+string(rune('0'+i)), waitIDs(t, s, topic, len(all), 10*time.Second), all)
	}
	for _, s := range lives {
		got := s.ids(topic)
		if len(got) == 0 {
			continue
		}
		start := slicesIndex(all, got[0])
		if start < 0 {
			t.Fatalf("live subscriber got unknown id %s", got[0])
		}
		sameIDs(t, "live subscriber", waitIDs(t, s, topic, len(all)-start, 10*time.Second), all[start:])
	}
}

func slicesIndex(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// idemStore is a Store that honours Message.IdempotencyKey as the
// persistence contract says (the real stores do it in persistence/).
type idemStore struct {
	persistence.Store
	mu   sync.Mutex
	seen map[string]messages.Message
}

func (s *idemStore) Append(ctx context.Context, topic string, batch []messages.Message) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range batch {
		m := &batch[i]
		if m.IdempotencyKey == "" {
			continue
		}
		if first, ok := s.seen[m.IdempotencyKey]; ok {
			if first.RequestHash != m.RequestHash {
				m.Conflict = true
			} else {
				m.ID, m.Timestamp, m.Duplicate = first.ID, first.Timestamp, true
			}
		}
	}
	// Store the rest one by one, so the duplicates keep their place.
	for i := range batch {
		m := &batch[i]
		if m.Duplicate || m.Conflict {
			continue
		}
		one := []messages.Message{*m}
		if n, err := s.Store.Append(ctx, topic, one); n != 1 {
			return i, err
		}
		*m = one[0]
		if m.IdempotencyKey != "" {
			s.seen[m.IdempotencyKey] = *m
		}
	}
	return len(batch), nil
}

// TestIdempotentRepeatIsAnsweredNotDelivered: a repeat the store reports as
// a duplicate is answered with the first message and not delivered again;
// a key reused with another request is answered ErrIdempotencyKeyReused.
func TestIdempotentRepeatIsAnsweredNotDelivered(t *testing.T) {
	store := &idemStore{Store: persistence.NewMemoryStore(persistence.Limits{}), seen: map[string]messages.Message{}}
	t.Cleanup(func() { _ = store.Close() })
	m := newManager(t, store, actors.Config{})
	s := newSink()
	c := connect(t, m, s)
	subscribe(t, c, s, `{"type":"subscribe","topics":["idem"]}`)
	ctx := context.Background()
	keyed := func(i int, key, hash string) messages.Message {
		msg := message("idem", i)
		msg.IdempotencyKey, msg.RequestHash = key, hash
		return msg
	}
	first, err := m.Publish(ctx, keyed(1, "k1", "h1"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := m.Publish(ctx, keyed(1, "k1", "h1"))
	if err != nil || again.ID != first.ID || !again.Timestamp.Equal(first.Timestamp) || !again.Duplicate {
		t.Fatalf("repeat: %+v %v, want the first message %v", again, err, first.ID)
	}
	if _, err := m.Publish(ctx, keyed(2, "k1", "other")); !errors.Is(err, messages.ErrIdempotencyKeyReused) {
		t.Fatalf("key reused with another request: %v, want ErrIdempotencyKeyReused", err)
	}
	// In one batch too: PublishAll sends them together.
	res := m.PublishAll(ctx, []messages.Message{keyed(3, "k2", "h2"), keyed(3, "k2", "h2"), keyed(4, "k2", "x"), message("idem", 5)})
	if res[0].Err != nil || res[1].Err != nil || res[1].Msg.ID != res[0].Msg.ID ||
		!errors.Is(res[2].Err, messages.ErrIdempotencyKeyReused) || res[3].Err != nil {
		t.Fatalf("batch results %+v", res)
	}
	want := []string{first.ID.String(), res[0].Msg.ID.String(), res[3].Msg.ID.String()}
	sameIDs(t, "delivered", waitIDs(t, s, "idem", 3, 5*time.Second), want)
	// Nothing more arrives: a marker published last is the next frame.
	marker := publish(t, m, "idem", 6)
	sameIDs(t, "delivered", waitIDs(t, s, "idem", 4, 5*time.Second), append(want, marker))
}

// TestPublishAllReportsCancellation: a client that goes away gets
// context.Canceled, not DeadlineExceeded.
func TestPublishAllReportsCancellation(t *testing.T) {
	store := relaytest.NewFaultyStore(nil)
	store.Stall(time.Second)
	m := newManager(t, store, actors.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	res := m.PublishAll(ctx, []messages.Message{message("a", 1), message("b", 2)})
	for i, r := range res {
		if !errors.Is(r.Err, context.Canceled) || !errors.Is(r.Err, messages.ErrUnavailable) || errors.Is(r.Err, context.DeadlineExceeded) {
			t.Fatalf("result %d: %v, want ErrUnavailable wrapping context.Canceled", i, r.Err)
		}
	}
}

// TestRestartMidBatch: a topic actor that fails while a group-commit write
// is in flight comes back with its subscribers; every publish is answered
// (201 or 503), everything acknowledged is stored, and the subscriber gets
// exactly what is stored, once, in order.
func TestRestartMidBatch(t *testing.T) {
	store := relaytest.NewFaultyStore(nil)
	store.Stall(5 * time.Millisecond) // writes take a while, so batches form
	m, faults, counters, s := subscribedWithFaults(t, store, "crash")
	var mu sync.Mutex
	acked := map[string]bool{}
	var refused atomic.Int64
	relaytest.Publishers(8, 60, nil, func(p, i int) bool {
		if p == 0 && i%20 == 10 {
			faults.PanicTopic("crash", 1) // the next message the actor takes panics, mid-batch
		}
		got, err := m.Publish(context.Background(), message("crash", p*1000+i))
		switch {
		case err == nil:
			mu.Lock()
			acked[got.ID.String()] = true
			mu.Unlock()
		case errors.Is(err, messages.ErrUnavailable):
			refused.Add(1)
		default:
			t.Errorf("publish: %v", err)
		}
		return true
	})()
	if counters.Restarts.Load() == 0 {
		t.Fatal("no restart happened; the test did not test a restart")
	}
	stored := storedIDs(t, store, "crash", messages.ID{})
	for _, id := range stored {
		if !acked[id] {
			t.Fatalf("%s stored but not acknowledged", id)
		}
	}
	if len(acked) != len(stored) || len(acked)+int(refused.Load()) != 480 {
		t.Fatalf("acked %d stored %d refused %d", len(acked), len(stored), refused.Load())
	}
	sameIDs(t, "subscriber", waitIDs(t, s, "crash", len(stored), 10*time.Second), stored)
}

// countingObserver counts topic actor spawns.
type countingObserver struct {
	*relaytest.Counters
	spawns atomic.Int64
}

func (o *countingObserver) TopicsActive(d int) {
	if d > 0 {
		o.spawns.Add(int64(d))
	}
	o.Counters.TopicsActive(d)
}

// TestIdleStopRacesPublish: a topic actor stopping when idle while
// publishes arrive never loses one: each publish is answered and stored, by
// the stopping actor or its successor.
func TestIdleStopRacesPublish(t *testing.T) {
	store := persistence.NewMemoryStore(persistence.Limits{})
	t.Cleanup(func() { _ = store.Close() })
	obs := &countingObserver{Counters: &relaytest.Counters{}}
	m := newManager(t, store, actors.Config{TopicIdleTimeout: 2 * time.Millisecond, Observer: obs})
	total := 0
	// Rounds of publishes with pauses around the idle timeout (within a
	// round and between rounds: 0-3 ms, so a stop often lands just as the
	// next publish arrives), until the actor has idled out and been
	// replaced several times. Every fourth round waits for the stop, so the
	// actor is replaced whatever the machine's load does to the timings.
	for round := 0; round < 40 && obs.spawns.Load() < 8; round++ {
		relaytest.Publishers(4, 25, nil, func(p, i int) bool {
			time.Sleep(time.Duration((p*7+i*3)%4) * time.Millisecond)
			publish(t, m, "idle", round*1000+p*100+i)
			return true
		})()
		total += 100
		if round%4 == 3 {
			relaytest.Eventually(t, 5*time.Second, "the idle topic actor stops", func() bool { return m.ActiveTopics() == 0 })
		} else {
			time.Sleep(time.Duration(round%4) * time.Millisecond)
		}
	}
	if n := len(storedIDs(t, store, "idle", messages.ID{})); n != total {
		t.Fatalf("stored %d, want %d", n, total)
	}
	if obs.spawns.Load() < 2 {
		t.Fatalf("the topic actor never idled out (%d spawns); the race was not exercised", obs.spawns.Load())
	}
}

// TestIdleLifecycle (virtual time): a topic actor stops after the idle
// timeout and the next publish starts a fresh one; a topic only subscribed
// to, never published, stops as soon as its subscriber leaves.
func TestIdleLifecycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := persistence.NewMemoryStore(persistence.Limits{})
		defer store.Close() // its sweeper goroutine lives in the bubble
		log := relaytest.Logger()
		system := actors.NewActorSystem(log)
		m := actors.NewTopicManager(system, store, actors.Config{TopicIdleTimeout: time.Minute}, log)
		defer system.Shutdown()
		defer m.Shutdown(context.Background())

		publish(t, m, "quiet", 1)
		if m.ActiveTopics() != 1 {
			t.Fatalf("%d topics active", m.ActiveTopics())
		}
		time.Sleep(59 * time.Second)
		synctest.Wait()
		if m.ActiveTopics() != 1 {
			t.Fatal("stopped before the idle timeout")
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if m.ActiveTopics() != 0 {
			t.Fatal("not stopped after the idle timeout")
		}
		publish(t, m, "quiet", 2)
		if got := len(storedIDs(t, store, "quiet", messages.ID{})); got != 2 || m.ActiveTopics() != 1 {
			t.Fatalf("after revival: %d stored, %d active", got, m.ActiveTopics())
		}

		s := newSink()
		c, err := m.Connect(s, "ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		f, _ := messages.DecodeClientFrame([]byte(`{"type":"subscribe","topics":["never"]}`))
		c.Subscribe(f)
		synctest.Wait()
		if m.ActiveTopics() != 2 {
			t.Fatalf("%d topics active, want 2", m.ActiveTopics())
		}
		c.Unsubscribe([]string{"never"})
		synctest.Wait()
		if m.ActiveTopics() != 1 {
			t.Fatalf("a never-published topic outlived its last subscriber: %d active", m.ActiveTopics())
		}
		c.Stop(context.Background())
	})
}

// TestRestartBeforeWake: a topic actor that fails after it queued a
// batch's frames but before it woke the subscribers they belong to wakes
// them when it comes back: the stored message reaches the subscriber
// without waiting for another publish.
func TestRestartBeforeWake(t *testing.T) {
	store := persistence.NewMemoryStore(persistence.Limits{})
	t.Cleanup(func() { _ = store.Close() })
	m, faults, counters, s := subscribedWithFaults(t, store, "wake")
	faults.PanicTopicFlush("wake", 1)
	id := publish(t, m, "wake", 1)
	sameIDs(t, "subscriber", waitIDs(t, s, "wake", 1, 5*time.Second), []string{id})
	if counters.Restarts.Load() == 0 {
		t.Fatal("no restart happened; the test did not test a restart")
	}
}

// subscribedWithFaults starts a manager on store with fault injection, a
// restart counter and a 1 ms restart backoff, and one connection (on sink)
// subscribed to topic.
func subscribedWithFaults(t *testing.T, store persistence.Store, topic string) (*actors.TopicManager, *actors.Faults, *relaytest.Counters, *fakeSink) {
	t.Helper()
	faults, counters := &actors.Faults{}, &relaytest.Counters{}
	m := newManager(t, store, actors.Config{Faults: faults, Observer: counters,
		Supervisor: actors.SupervisorConfig{Backoff: time.Millisecond}})
	s := newSink()
	subscribe(t, connect(t, m, s), s, `{"type":"subscribe","topics":["`+topic+`"]}`)
	return m, faults, counters, s
}

// slowStoredObserver counts stored messages, slowly: Stored sleeps before
// it counts, so a publisher answered before Stored returns would see the
// old count.
type slowStoredObserver struct {
	*relaytest.Counters
	stored atomic.Int64
}

func (o *slowStoredObserver) Topic(string) actors.TopicObserver { return o }
func (o *slowStoredObserver) Stored(n int) {
	time.Sleep(20 * time.Millisecond)
	o.stored.Add(int64(n))
}
func (o *slowStoredObserver) DeliveryLatency(time.Duration) {}

// TestStoredCountedBeforeAnswer: a message is counted as stored before its
// publisher is answered, so a metrics scrape after a 201 includes it.
func TestStoredCountedBeforeAnswer(t *testing.T) {
	obs := &slowStoredObserver{Counters: &relaytest.Counters{}}
	m := newManager(t, nil, actors.Config{Observer: obs})
	for i := range 5 {
		publish(t, m, "counted", i)
		if got := obs.stored.Load(); got != int64(i+1) {
			t.Fatalf("after publish %d answered: %d counted as stored, want %d", i+1, got, i+1)
		}
	}
}
