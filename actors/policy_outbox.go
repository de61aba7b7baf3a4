package actors

// fitTopic applies d's topic bound (d.lim, see queueLimits) before d is
// queued: while this subscription's frames in the queue are at the topic's
// connection_queue_size or d would take them over connection_queue_bytes,
// drop-oldest drops the subscription's oldest queued frame (counted like
// any drop-oldest drop) and disconnect overflows the queue. It reports
// false after an overflow, with mu released; otherwise mu stays held.
// d.sub is not nil.
//
// A drop costs O(1) amortised, whatever the queue holds in front of the
// subscription's oldest frame: that frame is found through o.idx and, when
// it is not the head, left in place as a tombstone (bury) instead of
// shifting the frames in front of it.
func (o *outbox) fitTopic(d delivery) bool {
	s, l := d.sub, d.lim
	for s.outQueued > 0 && (s.outQueued >= l.maxMsgs || s.outBytes+len(d.frame) > l.maxBytes) {
		if l.policy != PolicyDropOldest {
			o.overflowLocked()
			return false
		}
		k := o.oldestOf(s)
		if k < 0 { // the counters are out of step with the ring: never drop blindly
			break
		}
		if k == o.head {
			o.popHead()
		} else {
			o.bury(k)
		}
		o.dropped++
	}
	return true
}

// oldestOf is the ring slot of s's oldest queued frame, or -1. Called with
// mu held and o.n > 0. The first time s's oldest is not the head since
// the queue was last empty, it indexes the queue (O(o.n), paid for by the
// pushes that filled it); then O(1).
func (o *outbox) oldestOf(s *subscription) int {
	if o.idx == nil {
		if o.ring[o.head].sub == s {
			return o.head
		}
		o.idx = &subIndex{next: make([]int32, len(o.ring)), subs: make(map[*subscription]subFrames)}
		o.idx.rebuild(o)
	}
	if f, ok := o.idx.subs[s]; ok {
		return int(f.first)
	}
	return -1
}

// bury drops the queued frame at ring slot k, which is not the head and is
// its subscription's oldest (idx set): the slot becomes a tombstone, skipped
// by drain and squeezed out when the ring needs the room (makeRoom). The
// frame leaves the queue's count and bytes now.
func (o *outbox) bury(k int) {
	d := o.ring[k]
	o.ring[k] = delivery{}
	o.bytes -= len(d.frame)
	d.sub.outQueued--
	d.sub.outBytes -= len(d.frame)
	o.idx.pop(k, d.sub)
	o.idx.next[k] = deadSlot
	o.idx.dead++
	o.n--
}

// skipDead passes the tombstones at head (idx set), so that head is a
// frame or the queue is empty.
func (o *outbox) skipDead() {
	for o.idx.dead > 0 && o.idx.next[o.head] == deadSlot {
		o.idx.next[o.head] = noSlot
		o.idx.dead--
		o.head = (o.head + 1) % len(o.ring)
	}
}

// deadSlots is the number of tombstones in the ring (mu held).
func (o *outbox) deadSlots() int {
	if o.idx == nil {
		return 0
	}
	return o.idx.dead
}

// subIndex locates each subscription's queued frames in an outbox's ring:
// a list per subscription, threaded through next, from its oldest frame to
// its newest. The outbox holds one only from the first time a topic bound
// drops a frame that is not the head until the queue is next empty, so an
// idle connection holds none, and a connection whose drops all fall on the
// head (one topic, or no topic bound) never pays for one.
type subIndex struct {
	// next[k], for ring slot k: the slot of the next frame of the same
	// subscription, noSlot (none, or not a subscription's frame, or free),
	// or deadSlot (a tombstone).
	next []int32
	subs map[*subscription]subFrames // subscriptions with frames queued
	dead int                         // tombstones in the ring
	pos  []int32                     // squeeze's scratch: a frame's slot after it; nil until the first
	work int                         // slots visited by rebuilds and squeezes, for the tests
}

// subFrames is one subscription's list in a subIndex: the ring slots of its
// oldest and newest queued frames.
type subFrames struct{ first, last int32 }

const (
	noSlot   = -1
	deadSlot = -2
)

// link appends the frame just queued at slot k to s's list (s may be nil:
// a control frame).
func (x *subIndex) link(k int, s *subscription) {
	x.next[k] = noSlot
	if s == nil {
		return
	}
	f, ok := x.subs[s]
	if ok {
		x.next[f.last] = int32(k)
		f.last = int32(k)
	} else {
		f = subFrames{first: int32(k), last: int32(k)}
	}
	x.subs[s] = f
}

// pop removes slot k, the oldest of s's frames (s may be nil), from s's list.
func (x *subIndex) pop(k int, s *subscription) {
	n := x.next[k]
	x.next[k] = noSlot
	if s == nil {
		return
	}
	if n == noSlot {
		delete(x.subs, s)
		return
	}
	f := x.subs[s]
	f.first = n
	x.subs[s] = f
}

// rebuild indexes o's queued frames afresh, o's ring holding no tombstone
// (a new index, or one whose ring was relaid out or squeezed).
func (x *subIndex) rebuild(o *outbox) {
	for k := range x.next {
		x.next[k] = noSlot
	}
	clear(x.subs)
	x.dead = 0
	for i := range o.n {
		k := (o.head + i) % len(o.ring)
		x.link(k, o.ring[k].sub)
	}
	x.work += len(x.next)
}

// queueRoom is an amount of an outbox's queue: frames and their bytes.
type queueRoom struct{ msgs, bytes int }

// hasRoom reports whether the queue can take room more now. A closed one
// takes anything (it drops it), and so does an empty one: what it cannot
// take even then is its slow-consumer policy's.
func (o *outbox) hasRoom(room queueRoom) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.closed() || o.n == 0 || (o.n+room.msgs <= o.maxMsgs && o.bytes+room.bytes <= o.maxBytes)
}

// depth is what the queue holds now: frames and bytes.
func (o *outbox) depth() (msgs, bytes int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n, o.bytes
}
