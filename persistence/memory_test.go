package persistence

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pulsar-relay/relay/messages"
)

func TestMemoryStoreConformance(t *testing.T) {
	runConformance(t, func(t *testing.T, limits Limits) Store {
		// A fast sweeper where retention is what the test is about; none to
		// speak of elsewhere, so that tests of reads over expired entries
		// (BoundedScan) see them before a sweep removes them.
		sweep := time.Hour
		if limits.Retention > 0 {
			sweep = 20 * time.Millisecond
		}
		s := NewMemoryStore(limits, WithSweepInterval(sweep))
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

// The memory store takes an id's millisecond from the message Timestamp; ids
// must still increase when timestamps step back (a wall clock set back).
func TestMemoryStoreIDsIncreaseWhenTimestampsStepBack(t *testing.T) {
	s := NewMemoryStore(Limits{})
	defer s.Close()
	base := time.Now().UTC()
	stamps := []time.Time{
		base,
		base.Add(-10 * time.Second),
		base.Add(-10 * time.Second),
		base.Add(-time.Hour),
		base.Add(time.Millisecond),
		base.Add(time.Millisecond),
		base.Add(-time.Millisecond),
	}
	var ids []messages.ID
	for i, ts := range stamps {
		batch := []messages.Message{{Payload: []byte(`{}`), Timestamp: ts}}
		if n, err := s.Append(context.Background(), "clock", batch); n != 1 || err != nil {
			t.Fatalf("append %d: %d, %v", i, n, err)
		}
		ids = append(ids, batch[0].ID)
	}
	assertIncreasing(t, ids)
	if ids[0].Ms != uint64(base.UnixMilli()) {
		t.Errorf("first id %s does not take its millisecond from the timestamp %d", ids[0], base.UnixMilli())
	}
	if ids[4].Ms != uint64(base.Add(time.Millisecond).UnixMilli()) || ids[4].Seq != 0 {
		t.Errorf("id %s: once the clock passes the last id it should restart at <ms>-0", ids[4])
	}
	got := idsOf(mustRange(t, s, "clock", messages.ID{}, 100).Messages)
	if len(got) != len(ids) {
		t.Fatalf("Range returned %d messages, want %d", len(got), len(ids))
	}
}

func BenchmarkMemoryAppend(b *testing.B) {
	s := NewMemoryStore(Limits{MaxMessages: 10000})
	defer s.Close()
	ctx := context.Background()
	payload := []byte(`{"event":"job-state","job_id":"a1b2c3","state":"running"}`)
	batch := make([]messages.Message, 1)
	b.ReportAllocs()
	for b.Loop() {
		batch[0] = messages.Message{Payload: payload, Timestamp: time.Now()}
		if _, err := s.Append(ctx, "bench", batch); err != nil {
			b.Fatal(err)
		}
	}
}

// fakeClock is a settable clock for WithClock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now().UTC()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// The default window is the SPEC's 10 minutes, on the store's clock.
func TestMemoryStoreIdempotencyWindowFollowsClock(t *testing.T) {
	clock := newFakeClock()
	s := NewMemoryStore(Limits{}, WithClock(clock.Now))
	defer s.Close()
	at := func(i int) messages.Message {
		m := keyed(i, "k", "h")
		m.Timestamp = clock.Now()
		return m
	}
	first := appendAll(t, s, "clocked", []messages.Message{at(0)})[0]
	clock.Advance(messages.IdempotencyWindow - time.Millisecond)
	if m := appendAll(t, s, "clocked", []messages.Message{at(1)})[0]; !m.Duplicate || m.ID != first.ID {
		t.Fatalf("just inside the window: %+v; want a repeat of %s", m, first.ID)
	}
	clock.Advance(time.Millisecond)
	if m := appendAll(t, s, "clocked", []messages.Message{at(2)})[0]; m.Duplicate || m.ID == first.ID {
		t.Fatalf("at the end of the window: %+v; want stored anew", m)
	}
	if n := s.IdempotencyKeys(); n != 1 {
		t.Errorf("IdempotencyKeys = %d after the first record expired, want 1", n)
	}
}

// The record map is bounded: over the cap the oldest key is forgotten.
func TestMemoryStoreIdempotencyCap(t *testing.T) {
	s := NewMemoryStore(Limits{}, WithIdempotencyCap(3))
	defer s.Close()
	for i := range 5 {
		appendAll(t, s, "capped", []messages.Message{keyed(i, fmt.Sprintf("k%d", i), "h")})
	}
	if n := s.IdempotencyKeys(); n != 3 {
		t.Fatalf("IdempotencyKeys = %d with a cap of 3", n)
	}
	if m := appendAll(t, s, "capped", []messages.Message{keyed(9, "k4", "h")})[0]; !m.Duplicate {
		t.Errorf("the newest key was forgotten")
	}
	if m := appendAll(t, s, "capped", []messages.Message{keyed(9, "k0", "h")})[0]; m.Duplicate {
		t.Errorf("the oldest key over the cap is still remembered")
	}
}

// A memory store is a new incarnation of every topic: a resume point from
// before a restart is Truncated, and the epoch differs.
func TestMemoryStoreRestartIsANewEpoch(t *testing.T) {
	first := NewMemoryStore(Limits{})
	old := appendAll(t, first, "restart", msgs(0, 2))
	oldEpoch := mustTip(t, first, "restart").Epoch
	first.Close()

	clock := newFakeClock()
	clock.Advance(time.Second) // the restart happens later
	second := NewMemoryStore(Limits{}, WithClock(clock.Now))
	defer second.Close()
	if p := mustRange(t, second, "restart", old[0].ID, 10); !p.Truncated {
		t.Errorf("Range after a pre-restart id, nothing published since: Truncated not set")
	}
	m := msg(5)
	m.Timestamp = clock.Now()
	fresh := appendAll(t, second, "restart", []messages.Message{m})
	p := mustRange(t, second, "restart", old[0].ID, 10)
	if !p.Truncated || p.Epoch == oldEpoch || p.Epoch == "" {
		t.Errorf("Range after a pre-restart id = Truncated %v, epoch %q (old %q); want Truncated and a new epoch", p.Truncated, p.Epoch, oldEpoch)
	}
	assertIDs(t, "Range after a pre-restart id", p.Messages, idsOf(fresh))
}

// The sweeper trims quiet topics on the store's clock: expired and
// out-of-retention messages go, emptied topics leave the map, and Close
// stops the goroutine.
func TestMemoryStoreSweeper(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	clock := newFakeClock()
	s := NewMemoryStore(Limits{Retention: time.Hour}, WithClock(clock.Now), WithSweepInterval(5*time.Millisecond))
	at := func(i int, ttl time.Duration) messages.Message {
		m := msg(i)
		m.Timestamp = clock.Now()
		if ttl > 0 {
			m.ExpiresAt = m.Timestamp.Add(ttl)
		}
		return m
	}
	appendAll(t, s, "old", []messages.Message{at(0, 0), at(1, 0)})
	appendAll(t, s, "ttl", []messages.Message{at(2, time.Minute)})
	mixed := appendAll(t, s, "mixed", []messages.Message{at(3, time.Minute), at(4, 0), at(5, time.Minute)})
	if n := s.Topics(); n != 3 {
		t.Fatalf("Topics = %d, want 3", n)
	}

	clock.Advance(2 * time.Minute) // past the ttls, within the retention
	eventually(t, 5*time.Second, func() string {
		if n := s.Topics(); n != 2 {
			return fmt.Sprintf("Topics = %d; want 2 once the ttl-only topic is swept", n)
		}
		return ""
	})
	if n := heldMessages(s, "mixed"); n != 1 {
		t.Errorf("the mixed topic holds %d messages after its ttls passed, want 1", n)
	}
	if p := mustRange(t, s, "mixed", mixed[0].ID, 10); p.Truncated {
		t.Errorf("expiry reported as Truncated")
	}
	if got, want := s.Bytes(), 2*topicOverhead+msgBytes(&mixed[1])+2*msgBytes(&mixed[1]); got != want { // "old" holds two of the same size
		t.Errorf("Bytes after the ttl sweep = %d, want %d (three messages left)", got, want)
	}

	clock.Advance(time.Hour) // past the retention
	eventually(t, 5*time.Second, func() string {
		if n := s.Topics(); n != 0 {
			return fmt.Sprintf("Topics = %d; want 0 once everything is past the retention", n)
		}
		return ""
	})
	if b := s.Bytes(); b != 0 {
		t.Errorf("Bytes = %d with nothing held", b)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func heldMessages(s *MemoryStore, topic string) int {
	t, _ := s.topic(topic, false)
	if t == nil {
		return 0
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.msgs.Len()
}

// An append racing the sweeper's removal of its (empty) topic is never
// lost to the removed entry.
func TestMemoryStoreAppendRacesSweep(t *testing.T) {
	s := NewMemoryStore(Limits{}, WithSweepInterval(time.Millisecond))
	defer s.Close()
	for i := range 300 {
		gone := msg(i)
		gone.ExpiresAt = time.Now().Add(-time.Second) // the sweeper empties the topic
		appendAll(t, s, "racy", []messages.Message{gone})
		if i%2 == 0 {
			s.sweep() // and sometimes it runs right here
		}
		live := appendAll(t, s, "racy", []messages.Message{msg(i)})[0]
		p := mustRange(t, s, "racy", messages.ID{}, 10)
		if len(p.Messages) == 0 || p.Messages[len(p.Messages)-1].ID != live.ID {
			t.Fatalf("round %d: message %s was acknowledged but Range returns %v", i, live.ID, idsOf(p.Messages))
		}
		// Expire it, so the topic empties again.
		s.mu.RLock()
		tp := s.topics["racy"]
		s.mu.RUnlock()
		tp.mu.Lock()
		for j := range tp.msgs.Len() {
			tp.msgs.At(j).expires = time.Now().Add(-time.Second).UnixNano()
		}
		tp.mu.Unlock()
	}
}

// TestMemoryStoreByteBudget: a topic flooded with large messages past
// WithByteBudget loses its oldest messages (a read from the start is
// Truncated) and the store stays within the budget, while a small topic
// written before the flood keeps every message. Bytes follows appends,
// trims and the sweeper.
func TestMemoryStoreByteBudget(t *testing.T) {
	const budget = 256 << 10
	s := NewMemoryStore(Limits{}, WithByteBudget(budget))
	defer s.Close()
	ctx := context.Background()
	small := appendAll(t, s, "small", msgs(0, 5))
	if got, want := s.Bytes(), topicOverhead+sumBytes(small); got != want {
		t.Fatalf("Bytes after 5 small messages = %d, want %d", got, want)
	}
	pad := strings.Repeat("x", 4<<10)
	for i := range 200 { // about 850 KB: over three times the budget
		m := messages.Message{Payload: []byte(fmt.Sprintf(`{"i":%d,"pad":%q}`, i, pad)), Timestamp: time.Now()}
		if n, err := s.Append(ctx, "flood", []messages.Message{m}); n != 1 || err != nil {
			t.Fatalf("flood append %d = %d, %v", i, n, err)
		}
		if b := s.Bytes(); b > budget+5<<10 {
			t.Fatalf("after flood append %d the store holds %d bytes, over the budget %d by more than one message", i, b, budget)
		}
	}
	page := mustRange(t, s, "flood", messages.ID{}, 1000)
	if !page.Truncated || len(page.Messages) == 0 || len(page.Messages) >= 200 {
		t.Fatalf("flood after the budget: %d messages, truncated %v; want the newest only, truncated", len(page.Messages), page.Truncated)
	}
	if last := page.Messages[len(page.Messages)-1]; !strings.Contains(string(last.Payload), `"i":199`) {
		t.Fatalf("the newest flood message is gone: %s", last.Payload)
	}
	kept := mustRange(t, s, "small", messages.ID{}, 100)
	assertIDs(t, "small topic after the flood", kept.Messages, idsOf(small))
	if kept.Truncated {
		t.Errorf("the small topic reports Truncated")
	}
	if got, want := s.Bytes(), 2*topicOverhead+sumBytes(kept.Messages)+sumBytes(page.Messages); got != want {
		t.Errorf("Bytes = %d, want the sum of what is held, %d", got, want)
	}
}

func sumBytes(ms []messages.Message) int64 {
	var n int64
	for i := range ms {
		n += msgBytes(&ms[i])
	}
	return n
}

// Deleting an owned topic takes its bytes out of the budget: left counted,
// they would make every later append evict other topics' messages.
func TestMemoryDeleteTopicFreesBudget(t *testing.T) {
	ctx := context.Background()
	s := NewMemoryStore(Limits{}, WithByteBudget(100_000))
	defer s.Close()
	as := NewMemoryAuthStore(s)
	big := []byte(`{"x":"` + strings.Repeat("a", 1000) + `"}`)
	if err := as.CreateTopic(ctx, TopicRecord{Name: "gone"}, CreateRules{}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 70; i++ {
		if _, err := s.Append(ctx, "gone", []messages.Message{{Payload: big, Timestamp: time.Now()}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := as.DeleteTopic(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if b := s.Bytes(); b != 0 {
		t.Fatalf("after the only topic was deleted the store counts %d bytes", b)
	}
	for i := 0; i < 10; i++ {
		if _, err := s.Append(ctx, "fresh", []messages.Message{{Payload: big, Timestamp: time.Now()}}); err != nil {
			t.Fatal(err)
		}
	}
	if p, err := s.Range(ctx, "fresh", messages.ID{}, 100); err != nil || len(p.Messages) != 10 || p.Truncated {
		t.Fatalf("a topic far under the budget holds %d of 10 (truncated %v, %v)", len(p.Messages), p.Truncated, err)
	}
}

// fillOneMessageTopics appends one small message to each of n new topics
// and returns what one such topic is counted for.
func fillOneMessageTopics(tb testing.TB, s *MemoryStore, prefix string, n int) int64 {
	tb.Helper()
	ctx := context.Background()
	batch := make([]messages.Message, 1)
	for i := range n {
		batch[0] = messages.Message{Payload: []byte(`{"k":1}`), Timestamp: time.Now()}
		if _, err := s.Append(ctx, fmt.Sprintf("%s-%07d", prefix, i), batch); err != nil {
			tb.Fatal(err)
		}
	}
	return topicOverhead + entryBytes(len(`{"k":1}`), nil)
}

// Past the byte budget, topics of one message lose it and leave the map at
// once: left in it until the sweeper came, each kept about 600 bytes of
// state nothing counted, and every later evict looked at it again.
func TestMemoryStoreEvictRemovesEmptiedTopics(t *testing.T) {
	const n = 2000
	per := topicOverhead + entryBytes(len(`{"k":1}`), nil)
	s := NewMemoryStore(Limits{}, WithByteBudget(n*per), WithSweepInterval(time.Hour))
	defer s.Close()
	fillOneMessageTopics(t, s, "one", n)
	if got := s.Topics(); got != n {
		t.Fatalf("%d topics held under the budget, want %d", got, n)
	}
	ctx := context.Background()
	if _, err := s.Append(ctx, "over", []messages.Message{{Payload: []byte(`{"k":1}`), Timestamp: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	target := n*per - n*per/8
	if b := s.Bytes(); b > target {
		t.Fatalf("after the evict the store counts %d bytes, over seven eighths of the budget (%d)", b, target)
	}
	if got, want := int64(s.Topics()), s.Bytes()/per; got != want {
		t.Fatalf("after the evict %d topics are held, want the %d that still hold a message (the sweeper has not run)", got, want)
	}
	// Every topic holds the same, so any of them (the newest too) may be
	// the one trimmed: count over all of them.
	emptied := 0
	for i := range n + 1 {
		name := fmt.Sprintf("one-%07d", i)
		if i == n {
			name = "over"
		}
		p, err := s.Range(ctx, name, messages.ID{}, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Messages) == 0 {
			emptied++
		}
	}
	if int64(emptied) != n+1-s.Bytes()/per {
		t.Errorf("%d topics read empty, want %d", emptied, n+1-s.Bytes()/per)
	}
}

// BenchmarkMemoryEvictManyTopics: one evict over n topics of one message
// each (an append just over the budget trims an eighth of it).
func BenchmarkMemoryEvictManyTopics(b *testing.B) {
	for _, n := range []int{10_000, 40_000} {
		b.Run(fmt.Sprintf("topics=%d", n), func(b *testing.B) {
			per := topicOverhead + entryBytes(len(`{"k":1}`), nil)
			over := []messages.Message{{Payload: []byte(`{"k":1}`)}}
			for b.Loop() {
				b.StopTimer()
				s := NewMemoryStore(Limits{}, WithByteBudget(int64(n)*per), WithSweepInterval(time.Hour))
				fillOneMessageTopics(b, s, "one", n)
				over[0].Timestamp = time.Now()
				b.StartTimer()
				if _, err := s.Append(context.Background(), "over", over); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				s.Close()
				b.StartTimer()
			}
		})
	}
}

// The idempotency records are shared among publishers: one sending fresh
// keys fast pushes out only its own once it holds the most, never another's
// within their window (they were first in, first out over everyone).
func TestMemoryStoreIdempotencySharedAmongPublishers(t *testing.T) {
	s := NewMemoryStore(Limits{}, WithIdempotencyCap(100))
	defer s.Close()
	from := func(who string, i int, key string) messages.Message {
		m := keyed(i, key, "h")
		m.Publisher = who
		return m
	}
	for i := range 10 {
		appendAll(t, s, "quiet", []messages.Message{from("quiet", i, fmt.Sprintf("q%d", i))})
	}
	for i := range 1000 {
		appendAll(t, s, "flood", []messages.Message{from("flood", i, fmt.Sprintf("f%d", i))})
	}
	if n := s.IdempotencyKeys(); n != 100 {
		t.Fatalf("IdempotencyKeys = %d with a cap of 100", n)
	}
	for i := range 10 {
		if m := appendAll(t, s, "quiet", []messages.Message{from("quiet", i, fmt.Sprintf("q%d", i))})[0]; !m.Duplicate {
			t.Fatalf("the quiet publisher's key q%d was pushed out by the flood", i)
		}
	}
	if m := appendAll(t, s, "flood", []messages.Message{from("flood", 9, "f999")})[0]; !m.Duplicate {
		t.Errorf("the flood's newest key was forgotten")
	}
	if m := appendAll(t, s, "flood", []messages.Message{from("flood", 9, "f0")})[0]; m.Duplicate {
		t.Errorf("the flood's oldest key over its share is still remembered")
	}
}

// idemTable's books stay consistent under any mix of publishers, repeats,
// expiry and eviction: at most cap records, each publisher's count is what
// the map holds of it, the heap and the owners are those holding any, and
// no queue grows past what its records need.
func TestIdemTableBooks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const cap = 50
	it := newIdemTable(time.Second, cap)
	now := time.Unix(1000, 0)
	for step := range 20_000 {
		now = now.Add(time.Duration(rng.IntN(20)) * time.Millisecond)
		m := messages.Message{
			IdempotencyKey: fmt.Sprintf("k%d", rng.IntN(200)),
			Publisher:      fmt.Sprintf("p%d", min(rng.IntN(8), rng.IntN(8))),
		}
		topic := fmt.Sprintf("t%d", rng.IntN(3))
		if it.get(topic, m.IdempotencyKey, now) == nil {
			it.put(topic, &m, now)
		}
		if rng.IntN(100) == 0 {
			it.expire(now)
		}
		it.mu.Lock()
		held := map[*idemOwner]int{}
		for _, rec := range it.m {
			held[rec.owner]++
		}
		if len(it.m) > cap {
			t.Fatalf("step %d: %d records, cap %d", step, len(it.m), cap)
		}
		if len(it.owners) != len(held) || len(it.most) != len(held) {
			t.Fatalf("step %d: %d owners, %d in the heap, %d holding records", step, len(it.owners), len(it.most), len(held))
		}
		for i, o := range it.most {
			if o.index != i || held[o] != o.held || it.owners[o.name] != o {
				t.Fatalf("step %d: owner %s at %d (index %d) holds %d, counted %d", step, o.name, i, o.index, held[o], o.held)
			}
			if i > 0 && o.held > it.most[(i-1)/2].held {
				t.Fatalf("step %d: the heap is out of order at %d", step, i)
			}
			if o.queue.len() > 2*cap {
				t.Fatalf("step %d: owner %s's queue holds %d refs for %d records", step, o.name, o.queue.len(), o.held)
			}
		}
		if it.all.len() > 2*cap {
			t.Fatalf("step %d: the expiry queue holds %d refs for %d records", step, it.all.len(), len(it.m))
		}
		it.mu.Unlock()
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 10 s", what)
		}
	}
}

// evictPausedOn appends enough to topic over to start an evict, holds it
// on its first (largest) topic first by read-locking first, runs during
// while it waits there, then lets it go and waits for it to end.
func evictPausedOn(t *testing.T, s *MemoryStore, first string, over []messages.Message, during func()) {
	t.Helper()
	big, _ := s.topic(first, false)
	big.mu.RLock()
	appended := make(chan struct{})
	go func() {
		defer close(appended)
		if _, err := s.Append(context.Background(), "trigger", over); err != nil {
			t.Error(err)
		}
	}()
	waitFor(t, "an evict to start", s.evicting.Load)
	time.Sleep(50 * time.Millisecond) // it ranked and waits for first's lock
	during()
	big.mu.RUnlock()
	select {
	case <-appended:
	case <-time.After(10 * time.Second):
		t.Fatal("the evict did not end")
	}
	waitFor(t, "the evict to end", func() bool { return !s.evicting.Load() })
}

// An evict ranks the topics once per pass: a topic removed after the
// ranking leaves it (it spun forever on a deleted topic, and with it
// stuck no evict ran again), and a topic flooded while it runs is ranked
// in the next pass, so it pays first and small topics keep their history.
func TestMemoryStoreEvictWhileTopicsChange(t *testing.T) {
	pad := func(n int) []messages.Message {
		return []messages.Message{{Payload: []byte(`{"p":"` + strings.Repeat("x", n) + `"}`), Timestamp: time.Now()}}
	}
	fill := func(s *MemoryStore, topic string, msgs, size int) {
		for range msgs {
			if _, err := s.Append(context.Background(), topic, pad(size)); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Run("deleted after the ranking", func(t *testing.T) {
		s := NewMemoryStore(Limits{}, WithByteBudget(100_000), WithSweepInterval(time.Hour))
		defer s.Close()
		fill(s, "b", 5, 9_000) // 47 kB
		fill(s, "d", 3, 9_000) // 28.5 kB: second in the ranking
		// The evict ranks b, d and "trigger" (25 kB), then waits on b.
		// Meanwhile d is deleted and "e" takes 56 kB: after b's step the
		// store is still over, and d tops the ranking.
		evictPausedOn(t, s, "b", pad(24_000), func() {
			s.dropTopic("d")
			fill(s, "e", 6, 9_000)
		})
		if b := s.Bytes(); b > 87_500 {
			t.Fatalf("after the evict the store counts %d bytes, over seven eighths of the budget", b)
		}
	})
	t.Run("flooded during the evict", func(t *testing.T) {
		s := NewMemoryStore(Limits{}, WithByteBudget(100_000), WithSweepInterval(time.Hour))
		defer s.Close()
		fill(s, "b", 8, 9_000) // with the small topics, about 84 kB
		for _, small := range []string{"s1", "s2", "s3"} {
			fill(s, small, 5, 200)
		}
		evictPausedOn(t, s, "b", pad(20_000), func() { fill(s, "flood", 20, 10_000) })
		for _, small := range []string{"s1", "s2", "s3"} {
			if p := mustRange(t, s, small, messages.ID{}, 10); len(p.Messages) != 5 || p.Truncated {
				t.Errorf("small topic %s holds %d of 5 (truncated %v): the flood did not pay first", small, len(p.Messages), p.Truncated)
			}
		}
		if p := mustRange(t, s, "flood", messages.ID{}, 100); len(p.Messages) >= 20 {
			t.Errorf("the flood kept all %d messages", len(p.Messages))
		}
	})
}
