package actors

import (
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
