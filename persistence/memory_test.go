package persistence

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/messages"
)

func TestMemoryStoreConformance(t *testing.T) {
	runConformance(t, func(t *testing.T, limits Limits) Store {
		s := NewMemoryStore(limits)
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
