package actors

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/pulsar-relay/relay/messages"
)

// TestOutboxTopicBoundDropsThatTopicsOldest: a topic's queueLimits under
// drop-oldest drop that subscription's oldest frame, leave the other
// topic's frames alone, keep the order, and count the drop.
func TestOutboxTopicBoundDropsThatTopicsOldest(t *testing.T) {
	o := newOutbox(100, 1<<20, PolicyDisconnect, func() {}, func() { t.Fatal("overflow") })
	a, b := &subscription{topic: "a"}, &subscription{topic: "b"}
	lim := &queueLimits{maxMsgs: 2, maxBytes: 1 << 20, policy: PolicyDropOldest}
	push := func(s *subscription, seq uint64) {
		if !o.push(delivery{frame: make([]byte, 10), id: messages.ID{Ms: 1, Seq: seq}, sub: s, lim: lim}) {
			t.Fatal("push refused")
		}
	}
	push(a, 1)
	push(b, 2)
	push(a, 3)
	push(b, 4)
	push(a, 5) // drops a's 1
	push(a, 6) // drops a's 3
	got, dropped, _ := o.drain(nil, 100, 1<<30)
	var seqs []uint64
	for _, d := range got {
		seqs = append(seqs, d.id.Seq)
	}
	if want := []uint64{2, 4, 5, 6}; len(seqs) != len(want) || seqs[0] != 2 || seqs[1] != 4 || seqs[2] != 5 || seqs[3] != 6 {
		t.Fatalf("drained %v, want %v", seqs, want)
	}
	if dropped != 2 || a.outQueued != 0 || b.outQueued != 0 || a.outBytes != 0 || o.bytes != 0 {
		t.Fatalf("dropped %d, counters a=%d/%d b=%d, bytes %d", dropped, a.outQueued, a.outBytes, b.outQueued, o.bytes)
	}
}

// TestOutboxTopicBoundBytesAndDisconnect: the byte bound applies too, and
// under disconnect a topic's overflow closes the connection's queue.
func TestOutboxTopicBoundBytesAndDisconnect(t *testing.T) {
	overflows := 0
	o := newOutbox(100, 1<<20, PolicyDropOldest, func() {}, func() { overflows++ })
	s := &subscription{topic: "a"}
	lim := &queueLimits{maxMsgs: 100, maxBytes: 25, policy: PolicyDisconnect}
	for i := range 2 {
		if !o.push(delivery{frame: make([]byte, 10), id: messages.ID{Ms: 1, Seq: uint64(i + 1)}, sub: s, lim: lim}) {
			t.Fatalf("push %d refused under the bound", i)
		}
	}
	if o.push(delivery{frame: make([]byte, 10), id: messages.ID{Ms: 1, Seq: 3}, sub: s, lim: lim}) || overflows != 1 || !o.closed() {
		t.Fatalf("a third frame over 25 bytes: overflows %d, closed %v", overflows, o.closed())
	}
	// Control frames (no subscription) are bounded only by the whole queue.
	o2 := newOutbox(100, 1<<20, PolicyDisconnect, func() {}, func() { t.Fatal("overflow") })
	for range 10 {
		if !o2.push(delivery{frame: make([]byte, 10)}) {
			t.Fatal("control frame refused")
		}
	}
}

// ringSlot is what a test sees of one slot of an outbox's ring.
type ringSlot struct {
	sub *subscription
	seq uint64
}

// ringWrites is the number of slots of o's ring that differ from before
// (every slot of a ring of another size), and o's ring now.
func ringWrites(o *outbox, before []ringSlot) (int, []ringSlot) {
	now := make([]ringSlot, len(o.ring))
	for i, d := range o.ring {
		now[i] = ringSlot{d.sub, d.id.Seq}
	}
	if len(now) != len(before) {
		return len(now), now
	}
	n := 0
	for i := range now {
		if now[i] != before[i] {
			n++
		}
	}
	return n, now
}

// TestOutboxTopicDropCostIndependentOfFramesAhead: a frame of a topic at
// its own bound under drop-oldest (512 of a 4,096 queue, docs/policies.md's
// jobs.* example), pushed behind ahead frames of another topic, drops the
// topic's oldest frame without moving the frames in front of it: the ring
// slots a run of pushes writes are O(1) a push, whatever ahead is. Before
// the fix each push shifted every frame in front of the dropped one (3,584
// writes a push behind 3,584 frames). The drained queue is the other
// topic's frames, then the topic's newest 512, in order.
func TestOutboxTopicDropCostIndependentOfFramesAhead(t *testing.T) {
	for _, ahead := range []int{0, 512, 3584} {
		o := newOutbox(4096, 1<<30, PolicyDropOldest, func() {}, func() { t.Fatal("overflow") })
		busy, jobs := &subscription{topic: "busy"}, &subscription{topic: "jobs.a"}
		def := &queueLimits{maxMsgs: 4096, maxBytes: 1 << 30, policy: PolicyDropOldest}
		lim := &queueLimits{maxMsgs: 512, maxBytes: 1 << 30, policy: PolicyDropOldest}
		seq := uint64(0)
		push := func(s *subscription, l *queueLimits) {
			seq++
			if !o.push(delivery{frame: make([]byte, 8), id: messages.ID{Ms: 1, Seq: seq}, sub: s, lim: l}) {
				t.Fatal("push refused")
			}
		}
		for range ahead {
			push(busy, def)
		}
		for range 512 {
			push(jobs, lim)
		}
		const pushes = 8192
		_, snap := ringWrites(o, nil)
		writes := 0
		for range pushes {
			push(jobs, lim)
			w, now := ringWrites(o, snap)
			writes, snap = writes+w, now
		}
		t.Logf("ahead %d: %d pushes wrote %d ring slots", ahead, pushes, writes)
		if writes > 6*pushes {
			t.Errorf("ahead %d: %d pushes at the topic's bound wrote %d ring slots (%.1f a push), want O(1) a push",
				ahead, pushes, writes, float64(writes)/pushes)
		}
		if n, b := o.depth(); n != ahead+512 || b != 8*(ahead+512) || jobs.outQueued != 512 || busy.outQueued != ahead {
			t.Fatalf("ahead %d: depth %d/%d B, jobs %d, busy %d", ahead, n, b, jobs.outQueued, busy.outQueued)
		}
		got, dropped, taken := o.drain(nil, 1<<20, 1<<30)
		if dropped != pushes || taken != 8*(ahead+512) || len(got) != ahead+512 {
			t.Fatalf("ahead %d: drained %d (%d B), dropped %d; want %d, %d", ahead, len(got), taken, dropped, ahead+512, pushes)
		}
		for i, d := range got {
			want := uint64(i + 1) // the busy frames, then the topic's newest 512
			if i >= ahead {
				want = uint64(ahead+pushes) + uint64(i-ahead) + 1
			}
			if d.id.Seq != want {
				t.Fatalf("ahead %d: frame %d is seq %d, want %d", ahead, i, d.id.Seq, want)
			}
		}
		if jobs.outQueued != 0 || jobs.outBytes != 0 || busy.outQueued != 0 || busy.outBytes != 0 || o.bytes != 0 || o.n != 0 {
			t.Fatalf("ahead %d: counters left: jobs %d/%d busy %d/%d queue %d/%d", ahead,
				jobs.outQueued, jobs.outBytes, busy.outQueued, busy.outBytes, o.n, o.bytes)
		}
	}
}

// TestOutboxTopicBoundsMatchModel drives outboxes with random pushes of
// several topics (tight and loose bounds, drop-oldest; control frames) and
// random drains, and checks each against a plain list doing what the
// contract says: a topic at its bound loses its own oldest frame, a full
// queue its oldest frame of any topic, frames leave in order, and the
// queue's and each subscription's frame and byte counts, and the drops
// reported, are exact.
func TestOutboxTopicBoundsMatchModel(t *testing.T) {
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 7))
		maxMsgs := []int{1, 3, 16, 64, 300}[seed%5]
		maxBytes := 1 << 30
		if seed%3 == 0 {
			maxBytes = maxMsgs * 20
		}
		o := newOutbox(maxMsgs, maxBytes, PolicyDropOldest, func() {}, func() { t.Fatal("overflow") })
		type topic struct {
			sub *subscription
			lim *queueLimits
		}
		var topics []topic
		for i := range 1 + rng.IntN(12) {
			l := &queueLimits{maxMsgs: 1 + rng.IntN(maxMsgs+2), maxBytes: 1 << 30, policy: PolicyDropOldest}
			if rng.IntN(4) == 0 {
				l.maxBytes = 10 + rng.IntN(100)
			}
			topics = append(topics, topic{&subscription{topic: fmt.Sprint(i)}, l})
		}
		var model []delivery
		modelDropped, seq := 0, uint64(0)
		count := func(s *subscription) (n, b int) {
			for _, d := range model {
				if d.sub == s {
					n, b = n+1, b+len(d.frame)
				}
			}
			return n, b
		}
		for op := range 4000 {
			if rng.IntN(5) > 0 { // push
				seq++
				d := delivery{frame: make([]byte, 1+rng.IntN(16)), id: messages.ID{Ms: 1, Seq: seq}}
				if rng.IntN(10) > 0 {
					tp := topics[rng.IntN(len(topics))]
					d.sub, d.lim = tp.sub, tp.lim
					for {
						n, b := count(d.sub)
						if n == 0 || (n < d.lim.maxMsgs && b+len(d.frame) <= d.lim.maxBytes) {
							break
						}
						i := slices.IndexFunc(model, func(m delivery) bool { return m.sub == d.sub })
						model = slices.Delete(model, i, i+1)
						modelDropped++
					}
				}
				for len(model) > 0 {
					b := 0
					for _, m := range model {
						b += len(m.frame)
					}
					if len(model) < maxMsgs && b+len(d.frame) <= maxBytes {
						break
					}
					model = model[1:]
					modelDropped++
				}
				model = append(model, d)
				if !o.push(d) {
					t.Fatalf("seed %d op %d: push refused", seed, op)
				}
			} else { // drain
				max, budget := 1+rng.IntN(2*maxMsgs), 1+rng.IntN(200)
				got, dropped, taken := o.drain(nil, max, budget)
				var want []delivery
				wantTaken := 0
				for len(model) > 0 && max > 0 && wantTaken < budget {
					want, wantTaken = append(want, model[0]), wantTaken+len(model[0].frame)
					model, max = model[1:], max-1
				}
				if len(got) != len(want) || dropped != modelDropped || taken != wantTaken {
					t.Fatalf("seed %d op %d: drained %d frames (%d B), %d dropped; want %d (%d B), %d",
						seed, op, len(got), taken, dropped, len(want), wantTaken, modelDropped)
				}
				for i := range got {
					if got[i].id != want[i].id || got[i].sub != want[i].sub {
						t.Fatalf("seed %d op %d: frame %d is %v, want %v", seed, op, i, got[i].id, want[i].id)
					}
				}
				modelDropped = 0
			}
			wantB := 0
			for _, m := range model {
				wantB += len(m.frame)
			}
			if n, b := o.depth(); n != len(model) || b != wantB {
				t.Fatalf("seed %d op %d: depth %d frames %d B, want %d, %d", seed, op, n, b, len(model), wantB)
			}
			for _, tp := range topics {
				if n, b := count(tp.sub); tp.sub.outQueued != n || tp.sub.outBytes != b {
					t.Fatalf("seed %d op %d: topic %s counts %d/%d B, want %d/%d B",
						seed, op, tp.sub.topic, tp.sub.outQueued, tp.sub.outBytes, n, b)
				}
			}
		}
	}
}

// TestOutboxTopicBoundManyTopics: a queue holding frames of many topics,
// each bounded to one frame, pushed to in a new order each round: every
// push replaces that topic's frame wherever it is, the others stay in
// order and in place (O(1) ring writes a push).
func TestOutboxTopicBoundManyTopics(t *testing.T) {
	const topics, rounds = 1000, 8
	o := newOutbox(4096, 1<<30, PolicyDisconnect, func() {}, func() { t.Fatal("overflow") })
	lim := &queueLimits{maxMsgs: 1, maxBytes: 1 << 30, policy: PolicyDropOldest}
	subs := make([]subscription, topics)
	rng := rand.New(rand.NewPCG(1, 2))
	order := make([]int, topics)
	for i := range order {
		order[i] = i
	}
	seq := uint64(0)
	var snap []ringSlot
	writes := 0
	for r := range rounds {
		rng.Shuffle(topics, func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, i := range order {
			seq++
			if !o.push(delivery{frame: make([]byte, 4), id: messages.ID{Ms: 1, Seq: seq}, sub: &subs[i], lim: lim}) {
				t.Fatal("push refused")
			}
			w, now := ringWrites(o, snap)
			if r > 0 {
				writes += w
			}
			snap = now
		}
	}
	if pushes := (rounds - 1) * topics; writes > 6*pushes {
		t.Errorf("%d pushes that each replaced one topic's frame wrote %d ring slots (%.1f a push), want O(1) a push",
			pushes, writes, float64(writes)/float64(pushes))
	}
	got, dropped, _ := o.drain(nil, 1<<20, 1<<30)
	if len(got) != topics || dropped != (rounds-1)*topics {
		t.Fatalf("drained %d, dropped %d; want %d, %d", len(got), dropped, topics, (rounds-1)*topics)
	}
	for k, d := range got { // the last round's frames, in its order
		if d.sub != &subs[order[k]] || d.id.Seq != uint64((rounds-1)*topics+k+1) {
			t.Fatalf("frame %d: seq %d, want %d of topic %d", k, d.id.Seq, (rounds-1)*topics+k+1, order[k])
		}
	}
	if o.n != 0 || o.bytes != 0 {
		t.Fatalf("counts left: %d, %d B", o.n, o.bytes)
	}
	for i := range subs {
		if subs[i].outQueued != 0 || subs[i].outBytes != 0 {
			t.Fatalf("topic %d counts left: %d, %d B", i, subs[i].outQueued, subs[i].outBytes)
		}
	}
}
