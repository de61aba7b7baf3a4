package actors

import (
	"testing"
	"time"
	"unsafe"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pulsar-relay/relay/messages"
	"github.com/pulsar-relay/relay/persistence"
)

func deliveries(n int, size int) []delivery {
	out := make([]delivery, n)
	for i := range out {
		out[i] = delivery{frame: make([]byte, size), id: messages.ID{Ms: 1, Seq: uint64(i + 1)}}
	}
	return out
}

func TestOutboxWakesOncePerDrain(t *testing.T) {
	wakes := 0
	o := newOutbox(100, 1<<20, PolicyDisconnect, func() { wakes++ }, func() { t.Fatal("overflow") })
	for _, d := range deliveries(10, 10) {
		if !o.push(d) {
			t.Fatal("push refused")
		}
	}
	if wakes != 1 {
		t.Fatalf("wakes = %d, want 1 for a burst into an idle queue", wakes)
	}
	got, _, _ := o.drain(nil, 4, 1<<30)
	if len(got) != 4 || got[0].id.Seq != 1 || got[3].id.Seq != 4 {
		t.Fatalf("first drain %v", got)
	}
	o.push(deliveries(11, 10)[10])
	if wakes != 1 {
		t.Fatal("a push while a drain is pending must not wake again")
	}
	got, _, _ = o.drain(nil, 100, 1<<30)
	if len(got) != 7 || got[6].id.Seq != 11 {
		t.Fatalf("second drain %d items", len(got))
	}
	if got, _, _ = o.drain(nil, 100, 1<<30); len(got) != 0 {
		t.Fatal("queue should be empty")
	}
	o.push(deliveries(1, 10)[0])
	if wakes != 2 {
		t.Fatalf("a push into a drained queue must wake: wakes = %d", wakes)
	}
}

// TestOutboxQueueOwesOneWakePerDrain: queue wakes no one and reports the
// wake-up owed exactly when push would have woken; runWake pays it through
// wakeHere when the sink has one, else through wake.
func TestOutboxQueueOwesOneWakePerDrain(t *testing.T) {
	wakes, here := 0, 0
	o := newOutbox(100, 1<<20, PolicyDisconnect, func() { wakes++ }, func() { t.Fatal("overflow") })
	ds := deliveries(3, 10)
	if ok, wake := o.queue(ds[0]); !ok || !wake {
		t.Fatalf("queue into an idle outbox: ok %v, wake %v; want a wake-up owed", ok, wake)
	}
	if ok, wake := o.queue(ds[1]); !ok || wake {
		t.Fatalf("queue behind an owed wake-up: ok %v, wake %v; want none owed", ok, wake)
	}
	if wakes != 0 {
		t.Fatalf("queue woke the connection %d times", wakes)
	}
	o.runWake()
	if wakes != 1 {
		t.Fatalf("runWake without wakeHere: %d wakes, want 1", wakes)
	}
	if got, _, _ := o.drain(nil, 100, 1<<30); len(got) != 2 {
		t.Fatalf("drained %d, want 2", len(got))
	}
	o.drain(nil, 100, 1<<30) // finds it empty: the next frame owes a wake-up again
	o.wakeHere = func() { here++ }
	if _, wake := o.queue(ds[2]); !wake {
		t.Fatal("queue into a drained outbox owes no wake-up")
	}
	o.runWake()
	if here != 1 || wakes != 1 {
		t.Fatalf("runWake with wakeHere: %d here, %d wakes; want 1 and 1", here, wakes)
	}
}

func TestOutboxOverflowPolicies(t *testing.T) {
	for _, tc := range []struct {
		name            string
		maxMsgs, maxB   int
		size, push      int
		policy          SlowConsumerPolicy
		wantQueued      int
		wantDropped     int
		wantOverflowed  bool
		wantFirstSeqOut uint64
	}{
		{"disconnect on count", 4, 1 << 20, 10, 5, PolicyDisconnect, 0, 0, true, 0},
		{"disconnect on bytes", 100, 35, 10, 4, PolicyDisconnect, 0, 0, true, 0},
		{"drop-oldest on count", 4, 1 << 20, 10, 7, PolicyDropOldest, 4, 3, false, 4},
		{"drop-oldest on bytes", 100, 35, 10, 7, PolicyDropOldest, 3, 4, false, 5},
		{"within bounds", 4, 40, 10, 4, PolicyDisconnect, 4, 0, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			overflowed := false
			o := newOutbox(tc.maxMsgs, tc.maxB, tc.policy, func() {}, func() { overflowed = true })
			for _, d := range deliveries(tc.push, tc.size) {
				o.push(d)
			}
			got, dropped, _ := o.drain(nil, 1000, 1<<30)
			if len(got) != tc.wantQueued || dropped != tc.wantDropped || overflowed != tc.wantOverflowed || o.closed() != tc.wantOverflowed {
				t.Fatalf("queued %d dropped %d overflowed %v, want %d %d %v", len(got), dropped, overflowed, tc.wantQueued, tc.wantDropped, tc.wantOverflowed)
			}
			if len(got) > 0 && got[0].id.Seq != tc.wantFirstSeqOut {
				t.Fatalf("first queued seq %d, want %d", got[0].id.Seq, tc.wantFirstSeqOut)
			}
			if tc.wantOverflowed && o.push(deliveries(1, 1)[0]) {
				t.Fatal("push after overflow must be refused")
			}
		})
	}
}

func TestHotRingCoverage(t *testing.T) {
	r := newHotRing(time.Hour, 3, nil)
	now := time.Now()
	if r.covers(messages.ID{}) {
		t.Fatal("an empty ring knows nothing of the store")
	}
	for i := uint64(1); i <= 5; i++ {
		m := &messages.Message{ID: messages.ID{Ms: 10, Seq: i}, Payload: []byte(`{}`), Timestamp: now}
		r.add(m, now)
	}
	// Holds 3, 4, 5: covers points at or after 2.
	if r.covers(messages.ID{Ms: 10, Seq: 1}) || !r.covers(messages.ID{Ms: 10, Seq: 2}) || !r.covers(messages.ID{Ms: 10, Seq: 5}) {
		t.Fatalf("coverage wrong, base %v", r.base)
	}
	sub := &subscription{topic: "t"}
	got, next, end := r.page(messages.ID{Ms: 10, Seq: 3}, 1<<20, now, sub)
	if len(got) != 2 || got[0].id.Seq != 4 || got[1].id.Seq != 5 || next.Seq != 5 || !end {
		t.Fatalf("page after 3: %v next %v end %v", got, next, end)
	}
	got, next, end = r.page(messages.ID{Ms: 10, Seq: 2}, 1, now, sub)
	if len(got) != 1 || got[0].id.Seq != 3 || next.Seq != 3 || end {
		t.Fatalf("a 1-byte page holds one frame and is not the end: %v next %v end %v", got, next, end)
	}
	expired := &messages.Message{ID: messages.ID{Ms: 10, Seq: 6}, Payload: []byte(`{}`), Timestamp: now, ExpiresAt: now.Add(-time.Second)}
	r.add(expired, now)
	if got, next, end := r.page(messages.ID{Ms: 10, Seq: 5}, 1<<20, now, sub); len(got) != 0 || next.Seq != 6 || !end {
		t.Fatalf("expired message replayed: %v (next %v, end %v)", got, next, end)
	}
	old := newHotRing(time.Minute, 100, nil)
	old.add(&messages.Message{ID: messages.ID{Ms: 1, Seq: 1}, Timestamp: now.Add(-2 * time.Minute)}, now)
	old.add(&messages.Message{ID: messages.ID{Ms: 2, Seq: 1}, Timestamp: now}, now)
	if old.covers(messages.ID{Ms: 1}) || !old.covers(messages.ID{Ms: 1, Seq: 1}) {
		t.Fatal("age eviction should move the base past the evicted message")
	}
}

func TestConfigDefaultsFollowStoreLimits(t *testing.T) {
	c := Config{StoreLimits: persistenceLimits(50, time.Minute)}.withDefaults()
	if c.HotTierMaxMessages != 50 || c.HotTierRetention != time.Minute {
		t.Fatalf("ring %d/%v, want capped by the store's 50/1m", c.HotTierMaxMessages, c.HotTierRetention)
	}
	if _, err := ParseSlowConsumerPolicy("sometimes"); err == nil {
		t.Fatal("bad policy accepted")
	}
}

func persistenceLimits(n int, d time.Duration) persistence.Limits {
	return persistence.Limits{MaxMessages: n, Retention: d}
}

func TestOutboxDrainStopsAtItsByteBudget(t *testing.T) {
	o := newOutbox(100, 1<<20, PolicyDisconnect, func() {}, func() {})
	for range 10 {
		o.push(delivery{frame: make([]byte, 100)})
	}
	if got, _, _ := o.drain(nil, 100, 250); len(got) != 3 { // 100, 200, then 300 >= 250
		t.Fatalf("drained %d frames with a 250-byte budget, want 3", len(got))
	}
	if got, _, _ := o.drain(nil, 100, 1); len(got) != 1 {
		t.Fatalf("drained %d frames with a 1-byte budget, want 1 (at least one)", len(got))
	}
	if got, _, _ := o.drain(nil, 100, 1<<30); len(got) != 6 {
		t.Fatalf("drained %d frames, want the 6 left", len(got))
	}
}

// bytesSink counts what a connection actor writes.
type bytesSink struct{ frames, bytes int }

func (s *bytesSink) Write(f []byte) error { s.frames++; s.bytes += len(f); return nil }
func (s *bytesSink) Flush() error         { return nil }
func (s *bytesSink) Close(int, string)    {}

// sendRecorder is the actor.Context connActor.drain needs when its writes
// succeed: Self and Send (a flush it sends itself).
type sendRecorder struct {
	actor.Context
	sent []any
}

func (r *sendRecorder) Self() *actor.PID           { return nil }
func (r *sendRecorder) Send(_ *actor.PID, msg any) { r.sent = append(r.sent, msg) }

// TestConnDrainOnACallersGoroutineIsBounded: a connection actor run on a
// topic actor's goroutine (mailbox.runHere), where no write blocks and what
// the socket does not take stays held, takes at most hereDrainBytes (and
// one frame) from its outbox and leaves the rest to a run of its own on
// the dispatcher; that run drains everything.
func TestConnDrainOnACallersGoroutineIsBounded(t *testing.T) {
	o := newOutbox(1000, 1<<30, PolicyDisconnect, func() {}, func() {})
	sink := &bytesSink{}
	c := &connActor{connDeps: &connDeps{obs: nopObserver{}}, sink: sink, outbox: o, mb: newMailbox(theFlush)}
	sub := &subscription{active: true, obs: nopObserver{}, outbox: o}
	const frame, n = 4 << 10, 100
	for i := range n {
		o.push(delivery{frame: make([]byte, frame), id: messages.ID{Ms: 1, Seq: uint64(i + 1)}, sub: sub})
	}

	ctx := &sendRecorder{}
	c.mb.here = true
	c.drain(ctx)
	c.mb.here = false
	if sink.bytes > hereDrainBytes+frame {
		t.Fatalf("a run on the caller's goroutine took %d bytes, over %d", sink.bytes, hereDrainBytes+frame)
	}
	if len(ctx.sent) != 1 || ctx.sent[0] != theFlush {
		t.Fatalf("sent %v, want one flush to itself for the rest", ctx.sent)
	}

	ctx.sent = nil
	c.drain(ctx) // the run the flush asked for, on the dispatcher
	if sink.frames != n || len(ctx.sent) != 0 {
		t.Fatalf("%d of %d frames written after the dispatcher's run (sent %v)", sink.frames, n, ctx.sent)
	}
}

// TestOutboxTopicIndexIsAmortisedAndIdleFree: the index behind a topic
// bound's drops (subIndex) exists only while it is needed, and the slots
// its rebuilds and squeezes visit are O(1) a push; an idle connection's
// outbox stays in its 128-byte size class and holds no index.
func TestOutboxTopicIndexIsAmortisedAndIdleFree(t *testing.T) {
	if sz := unsafe.Sizeof(outbox{}); sz > 128 {
		t.Fatalf("outbox is %d bytes, over its 128-byte size class", sz)
	}
	def := &queueLimits{maxMsgs: 4096, maxBytes: 1 << 30, policy: PolicyDropOldest}
	lim := &queueLimits{maxMsgs: 512, maxBytes: 1 << 30, policy: PolicyDropOldest}
	frame := make([]byte, 8)

	// One topic at its bound: every drop is the head's; no index.
	o := newOutbox(4096, 1<<30, PolicyDropOldest, func() {}, func() {})
	jobs := &subscription{topic: "jobs.a"}
	for range 2000 {
		o.push(delivery{frame: frame, sub: jobs, lim: lim})
	}
	if o.idx != nil {
		t.Fatal("drops that all fall on the head built an index")
	}

	// Behind 3,584 frames of another topic: indexed once, then O(1).
	o = newOutbox(4096, 1<<30, PolicyDropOldest, func() {}, func() { t.Fatal("overflow") })
	busy, jobs := &subscription{topic: "busy"}, &subscription{topic: "jobs.a"}
	for range 3584 {
		o.push(delivery{frame: frame, sub: busy, lim: def})
	}
	for range 512 {
		o.push(delivery{frame: frame, sub: jobs, lim: lim})
	}
	const pushes = 20000
	for range pushes {
		o.push(delivery{frame: frame, sub: jobs, lim: lim})
	}
	if o.idx == nil {
		t.Fatal("no index behind frames of another topic")
	}
	t.Logf("%d pushes: the index visited %d slots", pushes, o.idx.work)
	if w := o.idx.work; w > 6*pushes {
		t.Fatalf("%d pushes: the index visited %d slots (%.1f a push), want O(1) a push", pushes, w, float64(w)/pushes)
	}
	if len(o.ring) != 4096+2048 {
		t.Fatalf("ring of %d slots for a 4096-frame queue with tombstones, want 6144 (maxMsgs and a half)", len(o.ring))
	}
	got, dropped, _ := o.drain(nil, 5000, 1<<30)
	if len(got) != 4096 || dropped != pushes {
		t.Fatalf("drained %d, dropped %d", len(got), dropped)
	}
	if o.idx != nil || o.n != 0 || o.bytes != 0 {
		t.Fatalf("an emptied queue holds an index (%v) or counts (%d, %d B)", o.idx != nil, o.n, o.bytes)
	}
	if len(o.ring) > 4096 {
		t.Fatalf("an emptied queue holds a ring of %d slots, over its 4096", len(o.ring))
	}
	for i, d := range o.ring {
		if d.frame != nil || d.sub != nil {
			t.Fatalf("an emptied queue's slot %d still holds a frame", i)
		}
	}

	// Close and overflow let it go too.
	for range 600 {
		o.push(delivery{frame: frame, sub: busy, lim: def})
		o.push(delivery{frame: frame, sub: jobs, lim: lim})
	}
	if o.idx == nil {
		t.Fatal("no index")
	}
	o.close()
	if o.idx != nil {
		t.Fatal("a closed queue holds its index")
	}
}
