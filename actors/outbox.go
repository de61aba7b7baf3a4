package actors

import (
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/pulsar-relay/relay/messages"
)

// delivery is one queued frame: a message for one subscription, or a
// control frame (pong, error; sub nil). frame is shared by every subscriber
// of the message and must not be modified.
type delivery struct {
	frame    []byte
	id       messages.ID
	sub      *subscription
	received int64        // monotonic nanoseconds (see monoNow) when the publish arrived
	lim      *queueLimits // the topic's bound on its frames in this queue; nil: none
}

// outbox is a connection's bounded outgoing queue of live and control
// frames: topic actors and the gateway's reader push into it, the connection
// actor drains it and writes to the socket. push never blocks on the socket,
// so a slow subscriber never slows its topic actor or the other subscribers;
// on overflow the connection's SlowConsumerPolicy applies. Replays do not
// pass through it (they are pulled page by page; see protocol.go).
//
// Concurrency: push is safe from many goroutines; drain is called only by the
// owning connection actor.
type outbox struct {
	maxMsgs, maxBytes int
	wake              func() // asks the connection actor to drain; never blocks
	wakeHere          func() // wake, running the drain on the caller's goroutine if it can; nil: wake
	overflow          func() // called once, outside the lock, on overflow under PolicyDisconnect

	mu sync.Mutex
	// ring[head] is the oldest queued frame; the ring's occupied slots,
	// from head on, are n frames and idx.dead tombstones (slots of frames a
	// topic bound dropped, see bury), never one at head.
	ring       []delivery
	head, n    int
	bytes      int           // of the n frames
	idx        *subIndex     // where each subscription's frames are; nil until a topic bound needs it, and while the queue is empty (policy_outbox.go)
	dropOldest bool          // the SlowConsumerPolicy is PolicyDropOldest (else PolicyDisconnect)
	scheduled  bool          // a drain is requested or running
	flags      atomic.Uint32 // outboxClosed (set under mu) and outboxStopping; read without mu
	dropped    int           // drop-oldest drops not yet reported
}

// Bits of outbox.flags, one word so an idle connection's outbox stays in
// its 128-byte size class (the policy is a bool for the same reason: idx
// took the room a string held).
const (
	// outboxClosed: overflowed under PolicyDisconnect, or closed; read by
	// the drainer without the lock.
	outboxClosed = 1 << iota
	// outboxStopping: the connection is stopping (Connection.Stop); no
	// replay page is requested or read for it any more.
	outboxStopping
)

// markStopping records that the connection owning o is stopping.
func (o *outbox) markStopping() { o.flags.Or(outboxStopping) }

// isStopping reports whether the connection owning o is stopping (false
// for a nil outbox).
func (o *outbox) isStopping() bool { return o != nil && o.flags.Load()&outboxStopping != 0 }

// newOutbox returns an empty queue bounded by maxMsgs and maxBytes.
func newOutbox(maxMsgs, maxBytes int, policy SlowConsumerPolicy, wake, overflow func()) *outbox {
	// The ring is allocated on first use and grows by doubling: an idle
	// connection (most of them, at 10k+) holds none.
	return &outbox{maxMsgs: maxMsgs, maxBytes: maxBytes, dropOldest: policy == PolicyDropOldest, wake: wake, overflow: overflow}
}

// newConnOutbox returns the outbox of connection actor pid, whose mailbox
// is mb. The first push into an empty outbox wakes the actor with one
// flushCmd (the hop from a topic actor to a connection actor); an overflow
// under PolicyDisconnect calls onOverflow once and sends the actor
// overflowCmd.
func newConnOutbox(cfg *Config, post poster, pid *actor.PID, mb *mailbox, onOverflow func()) *outbox {
	return newOutbox(cfg.ConnectionQueueSize, cfg.ConnectionQueueBytes, cfg.SlowConsumerPolicy,
		mb.wake,
		func() {
			onOverflow()
			post.Send(pid, theOverflow)
		})
}

// push queues d and wakes the connection actor when d is the first frame
// since its last drain. It reports false when the queue has overflowed
// under PolicyDisconnect (d is not queued, and the connection is being
// closed). Allocation-free except when the ring grows toward maxMsgs.
func (o *outbox) push(d delivery) bool {
	ok, wake := o.queue(d)
	if wake {
		o.wake()
	}
	return ok
}

// queue queues d like push but wakes no one: wake reports that no drain
// was requested since the connection actor last emptied the queue, so the
// caller owes it a wake-up (wake or runWake), without which what is queued
// waits for the next one.
func (o *outbox) queue(d delivery) (ok, wake bool) {
	o.mu.Lock()
	if o.closed() {
		o.mu.Unlock()
		return false, false
	}
	if d.lim != nil && !o.fitTopic(d) { // the topic's own bound (policy.go)
		return false, false
	}
	for o.n > 0 && (o.n >= o.maxMsgs || o.bytes+len(d.frame) > o.maxBytes) {
		if !o.dropOldest {
			o.overflowLocked()
			return false, false
		}
		o.popHead()
		o.dropped++
	}
	if o.idx == nil {
		if o.n == len(o.ring) {
			o.makeRoom()
		}
		o.ring[(o.head+o.n)%len(o.ring)] = d
	} else {
		if o.n+o.idx.dead == len(o.ring) {
			o.makeRoom()
		}
		slot := (o.head + o.n + o.idx.dead) % len(o.ring)
		o.ring[slot] = d
		o.idx.link(slot, d.sub)
	}
	o.n++
	o.bytes += len(d.frame)
	if d.sub != nil {
		d.sub.outQueued++
		d.sub.outBytes += len(d.frame)
	}
	wake = !o.scheduled
	o.scheduled = true
	o.mu.Unlock()
	return true, wake
}

// runWake is the wake-up queue owed: the connection actor's drain runs on
// the caller's goroutine when its sink allows it (wakeHere), else on the
// dispatcher. Never blocks.
func (o *outbox) runWake() {
	if o.wakeHere != nil {
		o.wakeHere()
		return
	}
	o.wake()
}

// overflowLocked marks the queue overflowed under PolicyDisconnect and
// unlocks it. The connection is being closed: what is queued will not be
// sent, so the close frame goes out right after the write in progress.
func (o *outbox) overflowLocked() {
	o.flags.Or(outboxClosed)
	clear(o.ring)
	o.n, o.bytes = 0, 0
	o.emptied()
	o.mu.Unlock()
	o.overflow()
}

// popHead takes the oldest queued frame out of the queue (o.n > 0), with
// the tombstones behind it. Called with mu held; O(1) amortised (each
// tombstone is passed once).
func (o *outbox) popHead() {
	d := &o.ring[o.head]
	o.bytes -= len(d.frame)
	if d.sub != nil {
		d.sub.outQueued--
		d.sub.outBytes -= len(d.frame)
	}
	if o.idx != nil {
		o.idx.pop(o.head, d.sub)
	}
	*d = delivery{}
	o.head = (o.head + 1) % len(o.ring)
	o.n--
	if o.idx != nil {
		o.skipDead()
	}
}

// emptied lets go of what only a queue with tombstones needs, once the
// queue is empty (mu held, nothing queued, hence no tombstone: none is ever
// at head): the index, and the ring's slots past maxMsgs (the ring goes;
// it grows again from the next push). An empty queue holds no more than
// without topic bounds.
func (o *outbox) emptied() {
	o.idx = nil
	if len(o.ring) > o.maxMsgs {
		o.ring, o.head = nil, 0
	}
}

// makeRoom frees a slot in a full ring (mu held). Once tombstones are a
// third of its slots it squeezes them out in place; otherwise it doubles
// the ring up to maxMsgs slots, and past that (then it holds tombstones:
// fewer than maxMsgs frames are queued when a frame is added) grows it
// once more, to maxMsgs and a half, which holds a third of tombstones when
// full. A squeeze moves O(slots) entries for at least slots/3 tombstones,
// each made by one push: O(1) amortised.
func (o *outbox) makeRoom() {
	L, dead := len(o.ring), o.deadSlots()
	switch slack := o.maxMsgs + max(o.maxMsgs/2, 1); {
	case dead > 0 && (3*dead >= L || L >= slack):
		o.squeeze()
	case L < o.maxMsgs:
		o.relayout(min(max(2*L, 8), o.maxMsgs))
	case L < slack:
		o.relayout(slack)
	default: // not reached: L >= slack and no tombstone is more than maxMsgs frames
		o.relayout(2 * L)
	}
}

// relayout moves the queued frames, oldest first, to the start of a new
// ring of size slots (at least o.n), leaving the tombstones behind.
func (o *outbox) relayout(size int) {
	next := make([]delivery, size)
	L, used := len(o.ring), o.n+o.deadSlots()
	j := 0
	for i := range used {
		k := (o.head + i) % L
		if o.idx == nil || o.idx.next[k] != deadSlot {
			next[j] = o.ring[k]
			j++
		}
	}
	o.ring, o.head = next, 0
	if o.idx != nil {
		o.idx.next = make([]int32, size)
		o.idx.rebuild(o)
	}
}

// squeeze removes the tombstones in place, keeping the frames' order and
// head, and moves their index entries with them (mu held, idx set): O(slots)
// moves, and map work only per subscription with frames queued.
func (o *outbox) squeeze() {
	x, L, used := o.idx, len(o.ring), o.n+o.deadSlots()
	if len(x.pos) != L {
		x.pos = make([]int32, L)
	}
	w := 0
	for r := range used { // each frame's slot after the squeeze
		if k := (o.head + r) % L; x.next[k] != deadSlot {
			x.pos[k] = int32((o.head + w) % L)
			w++
		}
	}
	for r := range used {
		// A frame moves to a slot at or before its own, whose frame (or
		// tombstone) was moved or passed already.
		src := (o.head + r) % L
		nx := x.next[src]
		if nx == deadSlot {
			continue
		}
		if nx >= 0 {
			nx = x.pos[nx]
		}
		dst := int(x.pos[src])
		if dst != src {
			o.ring[dst] = o.ring[src]
		}
		x.next[dst] = nx
	}
	for i := w; i < used; i++ {
		k := (o.head + i) % L
		o.ring[k] = delivery{}
		x.next[k] = noSlot
	}
	for s, f := range x.subs {
		x.subs[s] = subFrames{first: x.pos[f.first], last: x.pos[f.last]}
	}
	x.dead = 0
	x.work += used
}

// drain moves up to max queued deliveries, and at most maxBytes of frames
// (but at least one), into dst and returns it, with the number of
// drop-oldest drops since the last Drain and the frames' bytes it took.
// When the queue is empty it clears the drain request, so the next Push
// wakes the connection again.
func (o *outbox) drain(dst []delivery, max, maxBytes int) (_ []delivery, dropped, taken int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for o.idx != nil && o.n > 0 && max > 0 && taken < maxBytes {
		dst = append(dst, o.ring[o.head])
		taken += len(o.ring[o.head].frame)
		o.popHead()
		max--
	}
	for o.n > 0 && max > 0 && taken < maxBytes { // without an index: popHead, inline
		d := &o.ring[o.head]
		dst = append(dst, *d)
		taken += len(d.frame)
		o.bytes -= len(d.frame)
		if d.sub != nil {
			d.sub.outQueued--
			d.sub.outBytes -= len(d.frame)
		}
		*d = delivery{}
		o.head = (o.head + 1) % len(o.ring)
		o.n--
		max--
	}
	if o.n == 0 {
		o.scheduled = false
		o.emptied()
	}
	dropped, o.dropped = o.dropped, 0
	return dst, dropped, taken
}

// close discards what is queued and makes every later Push a no-op that
// reports false; the connection is gone.
func (o *outbox) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.flags.Or(outboxClosed)
	clear(o.ring)
	o.n, o.bytes = 0, 0
	o.emptied()
}

// closed reports whether the queue overflowed under PolicyDisconnect or was
// closed: nothing more should be written to the connection.
func (o *outbox) closed() bool { return o.flags.Load()&outboxClosed != 0 }
